"""Scoring protocols of the held-out evaluation (NumPy): CFP-FP / CFP-FF pairs, rank-1, Pointing'04 bins.

Two protocols for a transformation T (every embedding mapped to the frontal pose):
- ``probe`` (the product's, DREAM's): T(probe) against the RAW gallery. A CFP pair (a = frontal,
  b = profile for FP, both frontal for FF) scores cos(raw a, T b); rank-1 compares T(profile) with each
  identity's mean raw frontal embedding. A user's gallery holds raw embeddings.
- ``both``: T on both sides (the earlier protocol): cos(T a, T b), gallery of T(frontal) means.
- ``fused``: T(probe) against a gallery of flip-fused templates (each raw gallery photo averaged with its
  mirror, `flip_fused`), as ``probe`` otherwise: what a gallery that stores both views gives.
Metrics per fold: verification accuracy (threshold from the other folds' pairs), TAR at FAR 1% and 0.1%
(threshold from the other folds' different-person pairs), rank-1 among all 500 identities.
A method may bring its own gallery side (``flip_fused``: every photo + its mirror); by default the gallery
side of the ``probe`` protocol is the raw embedding.
`paired_test` compares two methods fold by fold (exact sign-flip test of the mean difference).
"""
from __future__ import annotations

import itertools

import numpy as np

from viewdiff.training.metrics import identity_means, rank1_accuracy, tar_at_far, verification_accuracy
from viewdiff.training.pose_scores import YAW_BINS, yaw_bin
from viewdiff.training.records import FaceRecords

PROTOCOLS = ("probe", "both", "fused")   # fused: the probe protocol against a gallery of flip-fused templates


def pair_scores(raw: np.ndarray, transformed: np.ndarray, cfp: FaceRecords, pairs: dict[str, np.ndarray],
                protocol: str) -> np.ndarray:
    """Cosine of every pair [P] (-1 where a photo had no face); raw, transformed: [N, D] unit rows of `cfp`."""
    gallery_side = transformed if protocol == "both" else raw
    valid = cfp.found[pairs["a"]] & cfp.found[pairs["b"]]
    return np.where(valid, np.sum(gallery_side[pairs["a"]] * transformed[pairs["b"]], axis=1), -1.0)


def profile_rank1(raw: np.ndarray, transformed: np.ndarray, cfp: FaceRecords, fold: int, protocol: str) -> float:
    """Rank-1 of `fold`'s profile photos (transformed) against the frontal means of all CFP identities."""
    frontal = cfp.found & (cfp.view == "frontal")
    gallery, gallery_ids = identity_means((transformed if protocol == "both" else raw)[frontal],
                                          cfp.identity[frontal])
    probes = cfp.found & (cfp.view == "profile") & (cfp.fold == fold)
    return rank1_accuracy(transformed[probes], cfp.identity[probes], gallery, gallery_ids)


def fold_metrics(scores: np.ndarray, pairs: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Per-fold accuracy, TAR @ FAR 1% and TAR @ FAR 0.1% of out-of-fold pair `scores`."""
    return {"accuracy": verification_accuracy(scores, pairs["same"], pairs["fold"]).tolist(),
            "tar_far1": tar_at_far(scores, pairs["same"], pairs["fold"], far=0.01).tolist(),
            "tar_far01": tar_at_far(scores, pairs["same"], pairs["fold"], far=0.001).tolist()}


def pointing04_rank1(raw: np.ndarray, transformed: np.ndarray, p04: FaceRecords) -> list[dict]:
    """Per |true yaw| bin: rank-1 among the 15 people of the transformed photo against each person's raw
    near-frontal mean (|yaw|, |pitch| <= 15), and the mean similarity to the own person's mean."""
    ok = p04.found
    yaw, pitch = np.abs(p04.true_pose[:, 0]), np.abs(p04.true_pose[:, 1])
    near_frontal = ok & (yaw <= 15) & (pitch <= 15)
    refs, ref_ids = identity_means(raw[near_frontal], p04.identity[near_frontal])
    rows = []
    for lo in YAW_BINS:
        m = ok & yaw_bin(yaw, lo)
        if m.any():
            own = refs[np.searchsorted(ref_ids, p04.identity[m])]
            rows.append({"yaw": lo, "n": int(m.sum()), "similarity": float(np.mean(np.sum(transformed[m] * own, 1))),
                         "rank1": rank1_accuracy(transformed[m], p04.identity[m], refs, ref_ids)})
    return rows


def paired_test(a: list[float], b: list[float]) -> dict:
    """Fold-by-fold comparison of method a against b: mean difference, wins / ties / losses, and the
    two-sided p-value of the exact sign-flip (permutation) test of the mean difference."""
    d = np.asarray(a) - np.asarray(b)
    flips = np.array(list(itertools.product((1, -1), repeat=len(d))))
    observed = abs(d.mean())
    p = float(np.mean(np.abs((flips * d).mean(axis=1)) >= observed - 1e-12))
    return {"mean_diff": float(d.mean()), "wins": int((d > 1e-12).sum()), "ties": int((np.abs(d) <= 1e-12).sum()),
            "losses": int((d < -1e-12).sum()), "p": p}
