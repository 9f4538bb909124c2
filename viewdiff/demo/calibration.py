"""Where the demo finds what belongs to the loaded embedder: its transformer weights and its
"same person" threshold (in ``weights/thresholds.json``: the cosines at false-accept rates of 1% and 0.1% on
CFP-FP's different-person pairs, and which of them the demo uses, ``demo``).

Both are keyed by the embedder's fingerprint (a hash of its recognition model), so weights or a
threshold computed for one embedder are never used with another.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from viewdiff.paths import REPO_ROOT

THRESHOLDS = REPO_ROOT / "weights" / "thresholds.json"
FARS = {"cosine_far1": "1%", "cosine_far01": "0.1%", "fused_cosine_far1": "1%", "fused_cosine_far01": "0.1%"}


@dataclass(frozen=True)
class Threshold:
    """A same-person cosine threshold and where it comes from (shown on the page)."""

    value: float
    source: str
    far: str = "1%"   # the false-accept rate on CFP-FP's different-person pairs it was set at


def same_person_threshold(fingerprint: str | None, path: Path = THRESHOLDS) -> Threshold | None:
    """The embedder's threshold named by its entry's ``demo`` key (default ``cosine_far1``) from ``path``; None
    when the file, the fingerprint or the value is missing."""
    if not fingerprint:
        return None
    try:
        entry = json.loads(Path(path).read_text()).get(fingerprint) or {}
        key = str(entry.get("demo", "cosine_far1"))
        return Threshold(float(entry[key]), str(entry.get("source", "")), FARS.get(key, key))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def weights_for(fingerprint: str) -> Path:
    """The transformer weights folder of this embedder, ``weights/transformer/<fingerprint>/``
    (`viewdiff.models.checkpoint.find_weights`); it may not exist: the demo then runs without them."""
    from viewdiff.models.checkpoint import WEIGHTS_DIR, find_weights
    found = find_weights(fingerprint)
    return Path(found) if found is not None else REPO_ROOT / WEIGHTS_DIR / fingerprint
