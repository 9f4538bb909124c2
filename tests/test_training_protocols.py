"""Evaluation protocols and metrics on hand-made scores: TAR @ FAR (and its agreement with the published
tables' path), pAUC, the identity bootstrap, held-out rank-1, the paired fold test, probe vs both; with the
full CFP cache in data/cache, raw's and flip_fused's published figures."""
from __future__ import annotations

import json

import numpy as np
import pytest

from viewdiff.embeddings import l2_normalize
from viewdiff.paths import REPO_ROOT
from viewdiff.training.datasets import cfp_fp_pairs
from viewdiff.training.metrics import far_threshold, identity_bootstrap_weights, tar_at_far, verification_rates
from viewdiff.training.protocols import bootstrap_rates, fold_metrics, pair_scores, paired_test, profile_rank1
from viewdiff.training.records import cache_path, load_records


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
    undefined = paired_test([0.9, np.nan], [0.8, 0.8])         # TAR of a fold without different-person pairs
    assert np.isnan(undefined["p"]) and np.isnan(undefined["mean_diff"]) and undefined["wins"] == 0


def test_probe_protocol_keeps_the_gallery_side_raw():
    class Rows:   # the two fields pair_scores reads
        found = np.ones(2, bool)
    raw = np.array([[1.0, 0.0], [0.0, 1.0]])
    moved = np.array([[0.0, 1.0], [0.0, 1.0]])                # T moves row 0 onto row 1
    pairs = {"a": np.array([0]), "b": np.array([1])}
    assert pair_scores(raw, moved, Rows, pairs, "probe")[0] == pytest.approx(0.0)   # raw a . T b
    assert pair_scores(raw, moved, Rows, pairs, "both")[0] == pytest.approx(1.0)    # T a . T b


def old_tar_at_far(scores, same, folds, far):
    """The TAR of the published tables: per fold, the other folds' negatives' `far_threshold`, then a share."""
    return np.array([np.mean(scores[(folds == f) & same] > far_threshold(scores[(folds != f) & ~same], far))
                     for f in np.unique(folds)])


def cfp_like_scores(seed=0, folds=10, pairs_per_fold=700):
    """CFP-FP's shape: 10 folds of 350 same and 350 different-person pairs, scores rounded (ties)."""
    rng = np.random.default_rng(seed)
    fold = np.repeat(np.arange(1, folds + 1), pairs_per_fold)
    same = np.tile(np.r_[np.ones(pairs_per_fold // 2, bool), np.zeros(pairs_per_fold // 2, bool)], folds)
    scores = np.round(np.where(same, rng.normal(0.5, 0.15, len(fold)), rng.normal(0.0, 0.1, len(fold))), 3)
    return scores, same, fold


@pytest.mark.parametrize("far", [0.01, 0.001, 0.05])
def test_new_tar_code_reproduces_the_old_far_threshold_path(far):
    scores, same, folds = cfp_like_scores()
    old = old_tar_at_far(scores, same, folds, far)
    assert np.array_equal(verification_rates(scores, same, folds, (far,))["tar"][0, :, 0], old)
    assert np.array_equal(tar_at_far(scores, same, folds, far), old)
    assert fold_metrics(scores, {"same": same, "fold": folds})["tar_far01" if far == 0.001 else "tar_far1"] == \
        (old.tolist() if far in (0.01, 0.001) else fold_metrics(scores, {"same": same, "fold": folds})["tar_far1"])
    # unit bootstrap weights are the plain figure
    ones = np.ones((2, len(scores)))
    assert np.array_equal(verification_rates(scores, same, folds, (far,), ones)["tar"][1, :, 0], old)


def test_partial_auc_is_the_mean_tar_over_the_far_range():
    scores, same, folds = cfp_like_scores(seed=1)
    pauc = verification_rates(scores, same, folds, (0.01,))["pauc"][0]
    grid = np.linspace(1e-3, 1e-2, 2001)[:-1] + 0.5 * 9e-3 / 2000        # midpoints of a fine grid
    dense = np.mean([old_tar_at_far(scores, same, folds, x) for x in grid], axis=0)
    assert np.allclose(pauc, dense, atol=2e-3)
    perfect = np.where(same, 1.0, 0.0) + 0.01 * np.arange(len(same)) / len(same)
    assert np.allclose(verification_rates(perfect, same, folds, (0.01,))["pauc"], 1.0)
    chance = np.random.default_rng(2).normal(size=len(same))
    assert abs(np.mean(verification_rates(chance, same, folds, (0.01,))["pauc"]) - 0.0055) < 0.004


def test_identity_bootstrap_weights_resample_identities_within_folds():
    ids = np.array(["a", "a", "b", "c", "c", "d"])
    other = np.array(["a", "b", "b", "c", "d", "d"])          # pairs: same a, a-b, same b, same c, c-d, same d
    folds = np.array([1, 1, 1, 2, 2, 2])
    w = identity_bootstrap_weights(ids, other, folds, 500, seed=3)
    assert w.shape == (500, 6) and np.array_equal(w, identity_bootstrap_weights(ids, other, folds, 500, seed=3))
    # two identities drawn per fold: same-person pairs count their identity's draws, different-person pairs the product
    assert np.array_equal(w[:, 0] + w[:, 2], np.full(500, 2.0)) and np.array_equal(w[:, 3] + w[:, 5], np.full(500, 2.0))
    assert np.array_equal(w[:, 1], w[:, 0] * w[:, 2]) and np.array_equal(w[:, 4], w[:, 3] * w[:, 5])
    assert set(np.unique(w[:, 0])) == {0.0, 1.0, 2.0}


def test_bootstrap_interval_holds_the_figure_and_widens_when_identities_differ():
    scores, same, folds = cfp_like_scores(seed=4)
    pairs = {"same": same, "fold": folds}
    identity = folds * 1000 + np.arange(len(folds)) % 50   # 50 per fold, each with 7 same- and 7 different-person pairs
    weights = identity_bootstrap_weights(identity, identity, folds, 300, seed=0)
    boot, point = bootstrap_rates(scores, pairs, weights), fold_metrics(scores, pairs)
    for metric in ("tar_far1", "tar_far01", "pauc"):
        lo, hi = np.percentile(boot[metric], [2.5, 97.5])
        assert lo <= np.mean(point[metric]) <= hi and hi - lo > 0
    # some identities hard (their genuine pairs 0.3 lower): resampling identities now moves the TAR more
    hard = np.where(same & (identity % 50 < 10), scores - 0.3, scores)
    lo, hi = np.percentile(bootstrap_rates(hard, pairs, weights)["tar_far1"], [2.5, 97.5])
    assert hi - lo > 2 * np.ptp(np.percentile(boot["tar_far1"], [2.5, 97.5]))


class FoldRows:
    """The fields `profile_rank1` reads: 2 folds, 2 identities each, one frontal and one profile photo each."""
    identity = np.array(["a", "a", "b", "b", "c", "c", "d", "d"])
    view = np.array(["frontal", "profile"] * 4)
    fold = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    found = np.ones(8, bool)


def test_held_out_rank1_searches_only_the_folds_identities():
    e = np.eye(8)
    raw = e[[0, 0, 2, 2, 4, 4, 6, 6]]                          # frontals: a = e0, b = e2, c = e4, d = e6

    def between(nearest, second):
        return (1.1 * e[nearest] + e[second]) / np.linalg.norm([1.1, 1])
    moved = raw.copy()
    moved[1] = between(4, 0)                                   # a's profile: nearest c (the other fold), then a
    assert profile_rank1(raw, moved, FoldRows, 1, "probe", among="all") == 0.5
    assert profile_rank1(raw, moved, FoldRows, 1, "probe", among="fold") == 1.0   # c is not in fold 1's gallery
    moved[3] = between(0, 2)                                   # b's profile: nearest a (same fold), then b
    assert profile_rank1(raw, moved, FoldRows, 1, "probe", among="fold") == 0.5
    assert profile_rank1(raw, moved, FoldRows, 2, "probe", among="fold") == 1.0
    with pytest.raises(ValueError, match="use 'fold'"):
        profile_rank1(raw, moved, FoldRows, 1, "probe", among="test")


PUBLISHED = REPO_ROOT / "docs" / "results" / "nested" / "results.json"   # measured with the old metric code


def test_raw_and_flip_fused_keep_their_published_figures_on_the_full_cache(data_root):
    """The new metric code on the full CFP cache reproduces the published per-fold accuracy and TARs of raw and
    flip_fused (98.14 / 98.39, TAR @ FAR 0.1% 90.57 / 92.86), and their rank-1 among all 500 the old way."""
    cache = REPO_ROOT / "data" / "cache"
    if not cache_path(cache, "cfp", "insightface").is_file():
        pytest.skip(f"no full CFP cache in {cache}: run `python -m viewdiff.training.extract` first")
    published = json.loads(PUBLISHED.read_text())
    cfp = load_records(cache, "cfp", "insightface")
    try:
        pairs = cfp_fp_pairs(cfp, data_root)
    except ValueError as error:
        pytest.skip(f"the CFP cache is incomplete (extraction still running?): {error}")
    if cfp.fingerprint != published["fingerprint"]:
        pytest.skip(f"the cache's embedder {cfp.fingerprint} is not the published {published['fingerprint']}")
    for name, emb in (("raw", l2_normalize(cfp.embedding)),
                      ("flip_fused", l2_normalize(cfp.embedding + cfp.embedding_mirror))):
        got = fold_metrics(pair_scores(emb, emb, cfp, pairs, "probe"), pairs)
        got["rank1"] = [profile_rank1(emb, emb, cfp, k, "probe", among="all") for k in range(1, 11)]
        for metric in ("accuracy", "tar_far1", "tar_far01", "rank1"):
            old = published["methods"][name][f"cfp_fp/probe/{metric}"]
            assert round(100 * np.mean(got[metric]), 2) == round(100 * old["mean"], 2), (name, metric)
            assert np.allclose(got[metric], old["per_fold"], atol=0.003), (name, metric)   # within one pair
