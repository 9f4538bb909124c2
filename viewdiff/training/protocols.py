"""Scoring protocols of the held-out evaluation (NumPy): CFP-FP / CFP-FF pairs, rank-1, Pointing'04 bins.

Two protocols for a transformation T (every embedding mapped to the frontal pose):
- ``probe`` (the product's, DREAM's): T(probe) against the RAW gallery. A CFP pair (a = frontal,
  b = profile for FP, both frontal for FF) scores cos(raw a, T b); rank-1 compares T(profile) with each
  identity's mean raw frontal embedding. A user's gallery holds raw embeddings.
- ``both``: T on both sides (the earlier protocol): cos(T a, T b), gallery of T(frontal) means.
- ``fused``: T(probe) against a gallery of flip-fused templates (each raw gallery photo averaged with its
  mirror, `flip_fused`), as ``probe`` otherwise: what a gallery that stores both views gives.
Metrics per fold: verification accuracy (threshold from the other folds' pairs), TAR at FAR 1% and 0.1% and
the partial AUC over FAR 0.1%..1% (thresholds from the other folds' different-person pairs), held-out rank-1
(the fold's profiles searched among the fold's own identities only: a trained model never sees them, while
the training identities are the ones it was taught to push a probe away from). `bootstrap_rates` gives the
TARs and the pAUC under resamples of identities, for 95% intervals.
A method may bring its own gallery side (``flip_fused``: every photo + its mirror); by default the gallery
side of the ``probe`` protocol is the raw embedding.
`paired_test` compares two methods fold by fold (exact sign-flip test of the mean difference).
"""
from __future__ import annotations

import itertools

import numpy as np

from viewdiff.training.metrics import (identity_bootstrap_weights, identity_means, rank1_accuracy, verification_accuracy,
                                      verification_rates)
from viewdiff.training.pose_scores import YAW_BINS, yaw_bin
from viewdiff.training.records import FaceRecords

PROTOCOLS = ("probe", "both", "fused")   # fused: the probe protocol against a gallery of flip-fused templates


def pair_scores(raw: np.ndarray, transformed: np.ndarray, cfp: FaceRecords, pairs: dict[str, np.ndarray],
                protocol: str) -> np.ndarray:
    """Cosine of every pair [P] (-1 where a photo had no face); raw, transformed: [N, D] unit rows of `cfp`."""
    gallery_side = transformed if protocol == "both" else raw
    valid = cfp.found[pairs["a"]] & cfp.found[pairs["b"]]
    return np.where(valid, np.sum(gallery_side[pairs["a"]] * transformed[pairs["b"]], axis=1), -1.0)


RANK1_GALLERIES = ("fold", "all")
RATES = (("tar_far1", 0.01), ("tar_far01", 0.001))   # the TARs of the tables, with their FAR


def profile_rank1(raw: np.ndarray, transformed: np.ndarray, cfp: FaceRecords, fold: int, protocol: str, *,
                  among: str) -> float:
    """Rank-1 of `fold`'s profile photos (transformed) against identities' frontal means: those of `fold` only
    (``among="fold"``, the held-out evaluation: the other folds' identities are a trained model's training
    identities) or of every identity in `cfp` (``"all"``: an embedder check with no training involved)."""
    if among not in RANK1_GALLERIES:
        raise ValueError(f"among={among!r}: use 'fold' (the held-out fold's identities) or 'all' (every identity)")
    frontal = cfp.found & (cfp.view == "frontal") & ((cfp.fold == fold) if among == "fold" else True)
    gallery, gallery_ids = identity_means((transformed if protocol == "both" else raw)[frontal],
                                          cfp.identity[frontal])
    probes = cfp.found & (cfp.view == "profile") & (cfp.fold == fold)
    return rank1_accuracy(transformed[probes], cfp.identity[probes], gallery, gallery_ids)


def fold_metrics(scores: np.ndarray, pairs: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Per-fold accuracy, TAR @ FAR 1%, TAR @ FAR 0.1% and pAUC (FAR 0.1%..1%, `verification_rates`) of
    out-of-fold pair `scores` [P]."""
    rates = verification_rates(scores, pairs["same"], pairs["fold"], tuple(far for _, far in RATES))
    return {"accuracy": verification_accuracy(scores, pairs["same"], pairs["fold"]).tolist(),
            **{name: rates["tar"][0, :, k].tolist() for k, (name, _) in enumerate(RATES)},
            "pauc": rates["pauc"][0].tolist()}


def bootstrap_rates(scores: np.ndarray, pairs: dict[str, np.ndarray], weights: np.ndarray) -> dict[str, np.ndarray]:
    """TAR @ FAR 1%, TAR @ FAR 0.1% and pAUC of out-of-fold pair `scores` [P] under each resample of `weights`
    [B, P] (`metrics.identity_bootstrap_weights`): thresholds and rates recomputed per resample, then the mean
    over folds, as the tables' figure -> {metric: [B]}."""
    rates = verification_rates(scores, pairs["same"], pairs["fold"], tuple(far for _, far in RATES), weights)
    return {**{name: rates["tar"][:, :, k].mean(axis=1) for k, (name, _) in enumerate(RATES)},
            "pauc": rates["pauc"].mean(axis=1)}   # NaN where a fold's is (a subset without different-person pairs)


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
    two-sided p-value of the exact sign-flip (permutation) test of the mean difference; NaN (and no folds
    counted) when a fold's value is NaN (TAR on a subset without different-person pairs)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    if not np.isfinite(d).all():
        return {"mean_diff": float("nan"), "wins": 0, "ties": 0, "losses": 0, "p": float("nan")}
    flips = np.array(list(itertools.product((1, -1), repeat=len(d))))
    observed = abs(d.mean())
    p = float(np.mean(np.abs((flips * d).mean(axis=1)) >= observed - 1e-12))
    return {"mean_diff": float(d.mean()), "wins": int((d > 1e-12).sum()), "ties": int((np.abs(d) <= 1e-12).sum()),
            "losses": int((d < -1e-12).sum()), "p": p}


BOOTSTRAP, BOOTSTRAP_SEED = 1000, 0   # resamples of the identities for the 95% intervals


def parse_folds(text: str) -> list[int]:
    """``1-10`` or ``1,2`` -> fold numbers; at least two, since each fold's threshold comes from the others' pairs."""
    lo, _, hi = text.partition("-")
    folds = list(range(int(lo), int(hi) + 1)) if hi else [int(f) for f in text.split(",")]
    if len(set(folds)) < 2:
        raise ValueError(f"--folds needs at least 2 folds for out-of-fold thresholds (each fold's verification "
                         f"threshold is chosen on the other folds' pairs), got --folds {text}: use e.g. --folds 1,2 "
                         "or 1-10")
    return folds


def summarize(runs: list[dict], key: str, proto: str, metric: str) -> list[float]:
    """Per-fold values of a metric averaged over the seeds' runs."""
    return np.mean([run[key][proto][metric] for run in runs], axis=0).tolist()


def bootstrap(runs: dict[str, list[dict]], cfp: FaceRecords, fp_pairs: dict[str, np.ndarray],
              key: str = "fp_scores") -> dict:
    """{method: {protocol: {metric: [BOOTSTRAP]}}}: each method's TAR @ FAR 1% / 0.1% and pAUC (mean over folds,
    then over seeds, as the tables' figure) under the same BOOTSTRAP resamples of each fold's identities; `key`:
    the runs' scores of these pairs (``second_scores``: the folder dataset's, `cfp` then its records)."""
    weights = identity_bootstrap_weights(cfp.identity[fp_pairs["a"]], cfp.identity[fp_pairs["b"]], fp_pairs["fold"],
                                         BOOTSTRAP, BOOTSTRAP_SEED)
    out: dict = {}
    for m, method_runs in runs.items():
        for proto in PROTOCOLS:
            per_seed = [bootstrap_rates(r[key][proto], fp_pairs, weights) for r in method_runs]
            out.setdefault(m, {})[proto] = {metric: np.mean([b[metric] for b in per_seed], axis=0)
                                            for metric in per_seed[0]}
    return out


def interval(values: np.ndarray) -> list[float]:
    """The 95% percentile interval [2.5%, 97.5%] of bootstrap `values` [B]; NaNs where they are NaN."""
    if not np.isfinite(values).all():
        return [float("nan"), float("nan")]
    return [float(v) for v in np.percentile(values, [2.5, 97.5])]


def finite_mean(values: list[float]) -> float:
    """Mean of the finite values (TAR is NaN on a fold without different-person pairs); NaN if none."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")
