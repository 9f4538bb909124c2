"""Same-person thresholds for the demo: the cosines that a given share of CFP-FP's different-person pairs exceed,
written per embedder fingerprint into ``weights/thresholds.json`` by ``python -m viewdiff.training.evaluate
--thresholds``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from viewdiff.embeddings import l2_normalize
from viewdiff.training.metrics import far_threshold
from viewdiff.training.protocols import pair_scores
from viewdiff.training.records import FaceRecords

THRESHOLD_FARS = {"cosine_far1": 0.01, "cosine_far01": 0.001}
DEMO_THRESHOLD = "cosine_far01"   # a demo gallery holds look-alikes (people of one group photo): the stricter one
FUSED_DEMO_THRESHOLD = "fused_cosine_far01"   # with one trained method evaluated: the demo's flip-fused gallery


def same_person_thresholds(cfp: FaceRecords, pairs: dict[str, np.ndarray]) -> dict[str, float]:
    """{cosine_far1, cosine_far01}: the cosines that 1% / 0.1% of the different-person CFP-FP pairs exceed
    (raw frontal vs raw profile); NaN without such pairs (a small identity subset)."""
    raw = l2_normalize(cfp.embedding)
    negatives = pair_scores(raw, raw, cfp, pairs, "probe")[~pairs["same"]]
    return {key: far_threshold(negatives, far) if len(negatives) else float("nan")
            for key, far in THRESHOLD_FARS.items()}


def fused_thresholds(fp_scores: list[np.ndarray], pairs: dict[str, np.ndarray]) -> dict[str, float]:
    """{fused_cosine_far1, fused_cosine_far01}: the cosines that 1% / 0.1% of the different-person CFP-FP pairs
    exceed in the fused protocol (a method's out-of-fold transformed profile vs the flip-fused frontal photo),
    over every seed's run (`fp_scores`: each run's [P] fused-protocol scores)."""
    negatives = np.concatenate([np.asarray(s)[~pairs["same"]] for s in fp_scores])
    return {f"fused_{key}": far_threshold(negatives, far) if len(negatives) else float("nan")
            for key, far in THRESHOLD_FARS.items()}


def write_threshold(path: Path, fingerprint: str, cosines: dict[str, float], source: str,
                    demo: str = DEMO_THRESHOLD) -> None:
    """Add (or replace) `fingerprint`'s entry of a thresholds file: {fingerprint: {cosine_far1, cosine_far01,
    (fused_cosine_far1, fused_cosine_far01,) demo (the key the demo uses), source}}."""
    table = json.loads(path.read_text()) if path.is_file() else {}
    table[fingerprint] = {**{k: round(v, 4) for k, v in cosines.items()}, "demo": demo, "source": source}
    path.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")
