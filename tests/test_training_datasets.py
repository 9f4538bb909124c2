"""Training data on real records: pose-pair targets, the identity-disjoint fold split, the CFP-FP pairs."""
from __future__ import annotations

import numpy as np
import pytest

from viewdiff.paths import shared_dir
from viewdiff.training.datasets import PosePairDataset, cfp_fp_pairs, fold_split
from viewdiff.training.listings import list_cfp
from viewdiff.training.records import FaceRecords

DATA = shared_dir() / "data"
needs_data = pytest.mark.skipif(not ((DATA / "cfp").is_dir() and (DATA / "pointing04").is_dir()),
                                reason=f"team data not found at {DATA} (clone beside ../shared)")


@needs_data
def test_pose_pair_targets(tiny_extracted):
    _, cfp, _, p04, _, _ = tiny_extracted
    records = FaceRecords.concatenate([cfp, p04])
    ds = PosePairDataset(records, pose_pairs_per_row=1, seed=0)
    found = records.subset(records.found)
    n_cfp, n_p04 = int(cfp.found.sum()), int(p04.found.sum())
    assert len(ds) == n_cfp + n_p04 + n_p04   # every found row -> frontal, plus one pose pair per P04 row
    np.testing.assert_allclose(np.linalg.norm(ds.target[: n_cfp + n_p04], axis=1), 1, atol=1e-5)
    for ident in sorted(set(cfp.identity)):
        rows = (found.identity == ident)
        mean = found.embedding[rows & (found.view == "frontal")].mean(0)
        mean /= np.linalg.norm(mean)
        k = ds.identities.index(ident)
        profile = [i for i in range(len(ds)) if ds.identity[i] == k and
                   any((ds.src[i] == e).all() for e in found.embedding[rows & (found.view == "profile")])]
        assert profile, f"no profile pair for {ident}"
        for i in profile:
            item = ds[i]
            np.testing.assert_allclose(item["target"], mean, atol=1e-6)
            assert (item["target_pose"] == 0).all()
            src_row = np.flatnonzero((found.embedding == item["src"]).all(1))[0]
            np.testing.assert_array_equal(item["source_pose"], found.source_pose[src_row])
            np.testing.assert_array_equal(item["keypoints_3d"], found.keypoints_3d[src_row])
            assert abs(float(item["source_pose"][0])) > 30   # profiles: a large estimated yaw
    # Pointing'04: frontal target = mean of the (0, 0) rows; pose pairs target a real row at its true pose
    k = ds.identities.index("p04_01")
    p_rows = found.identity == "p04_01"
    front = found.embedding[p_rows & (np.abs(found.true_pose[:, :2]) < 1e-6).all(1)]
    front_mean = front.mean(0) / np.linalg.norm(front.mean(0))
    p_items = [ds[i] for i in range(len(ds)) if ds.identity[i] == k]
    frontal_items = [it for it in p_items if np.allclose(it["target"], front_mean, atol=1e-6) and not it["target_pose"].any()]
    assert len(frontal_items) >= n_p04
    pose_items = [it for it in p_items if it["target_pose"].any()]
    assert pose_items
    for it in pose_items:
        t = np.flatnonzero((found.embedding == it["target"]).all(1) & p_rows)
        assert len(t) == 1 and (found.true_pose[t[0]] == it["target_pose"]).all()
        assert not np.array_equal(it["src"], it["target"])
    again = PosePairDataset(records, pose_pairs_per_row=1, seed=0)
    np.testing.assert_array_equal(ds.target, again.target)   # seeded


@needs_data
def test_fold_split_is_by_identity(tiny_extracted):
    _, cfp, _, p04, _, _ = tiny_extracted
    records = FaceRecords.concatenate([cfp, p04])
    folds = sorted(set(cfp.fold.tolist()))
    assert len(folds) == 2
    train, val = fold_split(records, folds[0])
    assert not (train & val).any()
    assert (records.fold[val] == folds[0]).all() and val.sum() == (cfp.found & (cfp.fold == folds[0])).sum()
    assert not set(records.identity[train]) & set(records.identity[val])
    assert "p04_01" in set(records.identity[train])   # no CFP-FP fold: always trains
    assert not (train | val)[~records.found].any()     # rows without a face are in neither
    train0, val0 = fold_split(records, 0)
    assert not val0.any() and (train0 == records.found).all()
    inner_train, inner_val = fold_split(records, folds[0], exclude_fold=folds[1])   # nested: the test fold is out
    assert (inner_val == val).all() and not (records.fold[inner_train] == folds[1]).any()
    assert "p04_01" in set(records.identity[inner_train])


@needs_data
def test_cfp_fp_pairs_on_a_partial_cache(tiny_extracted):
    _, cfp, _, _, _, _ = tiny_extracted
    with pytest.raises(ValueError, match="python -m viewdiff.training.extract --datasets cfp"):
        cfp_fp_pairs(cfp, DATA)
    pairs = cfp_fp_pairs(cfp, DATA, allow_missing=True)
    assert len(pairs["a"]) > 0
    assert (cfp.view[pairs["a"]] == "frontal").all() and (cfp.view[pairs["b"]] == "profile").all()
    same_ident = cfp.identity[pairs["a"]] == cfp.identity[pairs["b"]]
    np.testing.assert_array_equal(same_ident, pairs["same"])
    np.testing.assert_array_equal(pairs["fold"], cfp.fold[pairs["a"]])


@needs_data
def test_cfp_fp_pairs_on_the_whole_protocol():
    """All 7000 official pairs against records that hold every CFP image (labels only, no analysis)."""
    items = list_cfp(DATA)
    n = len(items)
    assert n == 7000
    records = FaceRecords(
        embedding=np.zeros((n, 4), np.float32), embedding_mirror=np.zeros((n, 4), np.float32),
        source_pose=np.zeros((n, 3), np.float32), pose_features=np.zeros((n, 7), np.float32),
        true_pose=np.full((n, 3), np.nan, np.float32), keypoints_3d=np.zeros((n, 5, 3), np.float32),
        bbox=np.zeros((n, 4), np.float32), keypoints=np.zeros((n, 5, 2), np.float32), identity=np.array([i.identity for i in items]), view=np.array([i.view for i in items]),
        fold=np.array([i.fold for i in items]), path=np.array([str(i.path.relative_to(DATA)) for i in items]),
        found=np.ones(n, bool))
    pairs = cfp_fp_pairs(records, DATA)
    assert len(pairs["a"]) == 7000 and pairs["same"].sum() == 3500
    for k in range(1, 11):
        in_fold = pairs["fold"] == k
        assert in_fold.sum() == 700 and pairs["same"][in_fold].sum() == 350
    np.testing.assert_array_equal(records.fold[pairs["a"]], pairs["fold"])
    np.testing.assert_array_equal(records.fold[pairs["b"]], pairs["fold"])
    np.testing.assert_array_equal(records.identity[pairs["a"]] == records.identity[pairs["b"]], pairs["same"])
    frontal = cfp_fp_pairs(records, DATA, protocol="FF")   # CFP-FF: frontal-frontal pairs, same folds
    assert len(frontal["a"]) == 7000 and (records.view[frontal["b"]] == "frontal").all()
    np.testing.assert_array_equal(records.identity[frontal["a"]] == records.identity[frontal["b"]], frontal["same"])


@needs_data
def test_mirror_augmentation_and_frontal_sources(tiny_extracted):
    _, cfp, _, _, _, _ = tiny_extracted
    plain = PosePairDataset(cfp)
    mirrored = PosePairDataset(cfp, mirror=True)
    n = len(plain)
    assert len(mirrored) == 2 * n
    np.testing.assert_array_equal(mirrored.src[n:], plain.src_mirror)        # the mirrored photo is the source
    np.testing.assert_array_equal(mirrored.src_mirror[n:], plain.src)
    np.testing.assert_allclose(mirrored.source_pose[n:], plain.source_pose * [-1, 1, -1])   # yaw, roll flip
    np.testing.assert_array_equal(mirrored.target[n:], plain.target)          # the same identity target
    assert np.sign(mirrored.keypoints_3d[n:, 2, 0]).tolist() == (-np.sign(plain.keypoints_3d[:, 2, 0])).tolist()
    few = PosePairDataset(cfp, frontal_sources=2)
    found = cfp.subset(cfp.found)
    per_identity = {i: int(((found.identity == i) & (found.view == "profile")).sum()) + 2 for i in set(found.identity)}
    assert len(few) == sum(per_identity.values())
    np.testing.assert_array_equal(np.unique(few.target, axis=0), np.unique(plain.target, axis=0))   # same means


def test_a_folder_dataset_targets_its_estimated_frontal_photos(tiny_extracted):
    """Photos without view labels (a folder dataset, view "photo"): the estimated near-frontal ones make the
    identity's frontal target, every photo is a source; an identity with no near-frontal photo gives no pair."""
    from viewdiff.training.datasets import PHOTO_FRONTAL_MAX
    cfp = tiny_extracted[1]
    photos = cfp.subset(cfp.found)
    photos.view = np.full(len(photos), "photo")
    photos.fold = np.zeros(len(photos), int)
    ds = PosePairDataset(photos)
    near = (np.abs(photos.source_pose[:, :2]) <= PHOTO_FRONTAL_MAX).all(1)
    for ident in sorted(set(photos.identity)):
        rows = photos.identity == ident
        assert (rows & near).any() and (rows & ~near).any()   # CFP: frontals read near 0, profiles far from it
        mean = photos.embedding[rows & near].mean(0)
        k = ds.identities.index(ident)
        np.testing.assert_allclose(ds.target[ds.identity == k], np.tile(mean / np.linalg.norm(mean), ((ds.identity == k).sum(), 1)),
                                   atol=1e-6)
        assert (ds.identity == k).sum() == rows.sum()
    turned = photos.subset(~near)
    assert len(PosePairDataset(turned)) == 0


def test_cross_pose_pairs_are_frontal_against_turned_within_a_fold(tiny_extracted):
    """The folder dataset's second test: every near-frontal x turned photo pair of one person, and ten times as
    many different-person pairs of the same fold (or all there are), drawn with a seed."""
    from viewdiff.training.datasets import CROSS_POSE_TURNED, PHOTO_FRONTAL_MAX, cross_pose_pairs
    cfp = tiny_extracted[1]
    photos = cfp.subset(cfp.found)
    photos.view = np.full(len(photos), "photo")
    photos.fold = np.full(len(photos), 3)
    pairs = cross_pose_pairs(photos, seed=0)
    a, b, same = pairs["a"], pairs["b"], pairs["same"]
    yaw, pitch = np.abs(photos.source_pose[:, 0]), np.abs(photos.source_pose[:, 1])
    assert (yaw[a] <= PHOTO_FRONTAL_MAX).all() and (pitch[a] <= PHOTO_FRONTAL_MAX).all()
    assert (yaw[b] >= CROSS_POSE_TURNED).all() and set(pairs["fold"]) == {3}
    assert (photos.identity[a[same]] == photos.identity[b[same]]).all()
    assert (photos.identity[a[~same]] != photos.identity[b[~same]]).all()
    frontal, turned = (yaw <= PHOTO_FRONTAL_MAX) & (pitch <= PHOTO_FRONTAL_MAX), yaw >= CROSS_POSE_TURNED
    every_same = sum(((photos.identity == i) & frontal).sum() * ((photos.identity == i) & turned).sum()
                     for i in set(photos.identity))
    every_other = frontal.sum() * turned.sum() - every_same
    assert same.sum() == every_same and (~same).sum() == min(every_other, 10 * every_same)
    again = cross_pose_pairs(photos, seed=0)
    assert all(np.array_equal(pairs[k], again[k]) for k in pairs)
