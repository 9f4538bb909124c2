"""Same-person thresholds: the fused protocol's cosine from a method's out-of-fold scores, and the demo's key."""
from __future__ import annotations

import json

import numpy as np

from viewdiff.demo.calibration import same_person_threshold
from viewdiff.training.metrics import far_threshold
from viewdiff.training.thresholds import FUSED_DEMO_THRESHOLD, fused_thresholds, write_threshold


def test_fused_thresholds_come_from_every_runs_different_person_scores(tmp_path):
    rng = np.random.default_rng(0)
    same = np.r_[np.ones(500, bool), np.zeros(3000, bool)]
    runs = [np.r_[rng.normal(0.6, 0.1, 500), rng.normal(0.0, 0.08, 3000)] for _ in range(2)]
    got = fused_thresholds(runs, {"same": same})
    negatives = np.concatenate([r[~same] for r in runs])
    assert got["fused_cosine_far01"] == far_threshold(negatives, 0.001)
    assert got["fused_cosine_far1"] == far_threshold(negatives, 0.01) < got["fused_cosine_far01"]
    assert (negatives > got["fused_cosine_far01"]).mean() <= 0.001   # 1 in 1000 different-person pairs above it
    path = tmp_path / "thresholds.json"
    write_threshold(path, "abc", {"cosine_far01": 0.25, **got}, "test", FUSED_DEMO_THRESHOLD)
    saved = json.loads(path.read_text())["abc"]
    assert saved["demo"] == "fused_cosine_far01"
    threshold = same_person_threshold("abc", path)   # what the demo reads: the fused protocol's, at FAR 0.1%
    assert threshold.value == round(got["fused_cosine_far01"], 4) and threshold.far == "0.1%"
