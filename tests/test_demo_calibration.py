"""Per-embedder lookups: the same-person threshold file and the transformer weights folder."""
from __future__ import annotations

import json

from viewdiff.demo.calibration import Threshold, same_person_threshold, weights_for
from viewdiff.paths import REPO_ROOT


def test_threshold_by_fingerprint(tmp_path):
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps({"abc": {"cosine_far1": 0.42, "source": "CFP-FP 10 folds"}, "bad": {"x": 1}}))
    assert same_person_threshold("abc", path) == Threshold(0.42, "CFP-FP 10 folds")
    assert same_person_threshold("other", path) is None  # another embedder: no line is drawn
    assert same_person_threshold("bad", path) is None
    assert same_person_threshold(None, path) is None
    path.write_text(json.dumps({"abc": {"cosine_far1": 0.2, "cosine_far01": 0.3, "demo": "cosine_far01", "source": "s"}}))
    assert same_person_threshold("abc", path) == Threshold(0.3, "s", "0.1%")   # the entry says which one the demo uses
    path.write_text(json.dumps({"abc": {"cosine_far1": 0.42, "source": "CFP-FP 10 folds"}, "bad": {"x": 1}}))
    assert same_person_threshold("abc", tmp_path / "missing.json") is None
    path.write_text("{not json")
    assert same_person_threshold("abc", path) is None


def test_weights_folder_follows_the_embedder():
    assert weights_for("0123456789abcdef") == REPO_ROOT / "weights" / "transformer" / "0123456789abcdef"
