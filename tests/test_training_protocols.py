"""Evaluation protocols and metrics on hand-made scores: TAR @ FAR, the paired fold test, probe vs both."""
from __future__ import annotations

import numpy as np
import pytest

from viewdiff.training.metrics import tar_at_far
from viewdiff.training.protocols import paired_test, pair_scores


def test_tar_at_far_sets_the_threshold_on_the_other_folds_negatives():
    rng = np.random.default_rng(0)
    folds = np.repeat([1, 2], 1000)
    same = np.tile(np.r_[np.ones(500, bool), np.zeros(500, bool)], 2)
    scores = np.where(same, rng.normal(0.6, 0.1, 2000), rng.normal(0.0, 0.1, 2000))
    tar = tar_at_far(scores, same, folds, far=0.01)
    assert tar.shape == (2,) and (tar > 0.99).all()          # well separated: nearly every positive accepted
    hard = np.where(same, rng.normal(0.15, 0.1, 2000), rng.normal(0.0, 0.1, 2000))
    tar_hard = tar_at_far(hard, same, folds, far=0.01)
    assert (tar_hard < 0.5).all()                             # threshold ~ +2.3 sigma of the negatives
    assert np.isnan(tar_at_far(scores[same], same[same], folds[same])).all()   # no negatives: undefined


def test_paired_test_counts_folds_and_gives_exact_sign_flip_p():
    better = paired_test([0.9] * 10, [0.8] * 10)
    assert (better["wins"], better["ties"], better["losses"]) == (10, 0, 0)
    assert better["p"] == pytest.approx(2 / 1024)            # only all-plus and all-minus are as extreme
    mixed = paired_test([0.9, 0.7, 0.8, 0.8], [0.8, 0.8, 0.8, 0.7])
    assert (mixed["wins"], mixed["ties"], mixed["losses"]) == (2, 1, 1) and mixed["p"] > 0.3
    assert mixed["mean_diff"] == pytest.approx(0.025)


def test_probe_protocol_keeps_the_gallery_side_raw():
    class Rows:   # the two fields pair_scores reads
        found = np.ones(2, bool)
    raw = np.array([[1.0, 0.0], [0.0, 1.0]])
    moved = np.array([[0.0, 1.0], [0.0, 1.0]])                # T moves row 0 onto row 1
    pairs = {"a": np.array([0]), "b": np.array([1])}
    assert pair_scores(raw, moved, Rows, pairs, "probe")[0] == pytest.approx(0.0)   # raw a . T b
    assert pair_scores(raw, moved, Rows, pairs, "both")[0] == pytest.approx(1.0)    # T a . T b
