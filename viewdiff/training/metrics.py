"""Face-verification and identification metrics on L2-normalised embeddings (NumPy)."""
from __future__ import annotations

import numpy as np

from viewdiff.embeddings import cosine_matrix, l2_normalize


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The similarity threshold (score >= t means "same") with the highest accuracy on these pairs."""
    order = np.sort(np.unique(scores))
    candidates = np.concatenate([[order[0] - 1e-6], (order[:-1] + order[1:]) / 2, [order[-1] + 1e-6]])
    acc = [np.mean((scores >= t) == same) for t in candidates]
    return float(candidates[int(np.argmax(acc))])


def verification_accuracy(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Per-fold accuracy of the standard 10-fold protocol (LFW / CFP).

    scores, same, folds: [P] pair similarity, ground truth (bool) and fold id. The threshold of each
    fold is chosen on the pairs of all the other folds. Returns [n_folds] accuracies (sorted fold ids).
    """
    accs = []
    for f in np.unique(folds):
        test = folds == f
        if test.all():
            raise ValueError(f"fold {f} is the only fold: its threshold needs the pairs of other folds "
                             "(evaluate at least 2 folds)")
        t = best_threshold(scores[~test], same[~test])
        accs.append(np.mean((scores[test] >= t) == same[test]))
    return np.asarray(accs)


def rank1_accuracy(probes: np.ndarray, probe_ids: np.ndarray, gallery: np.ndarray,
                   gallery_ids: np.ndarray) -> float:
    """Fraction of probes [P, D] whose most similar gallery entry [G, D] has the probe's identity."""
    sims = cosine_matrix(probes, gallery)
    return float(np.mean(gallery_ids[np.argmax(sims, axis=1)] == probe_ids))


def identity_means(embeddings: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-identity mean of L2-normalised embeddings [N, D], re-normalised -> ([G, D], [G] ids)."""
    unique = np.unique(ids)
    unit = l2_normalize(embeddings)
    means = np.stack([unit[ids == u].mean(0) for u in unique])
    return l2_normalize(means), unique


def far_threshold(negatives: np.ndarray, far: float) -> float:
    """The score that a share `far` of the different-person scores `negatives` [M] exceed (M >= 1)."""
    negatives = np.sort(negatives)
    return float(negatives[min(len(negatives) - 1, int(np.ceil((1 - far) * len(negatives))) - 1)])


PAUC_FARS = (1e-3, 1e-2)   # the FAR range of the partial AUC


def verification_rates(scores: np.ndarray, same: np.ndarray, folds: np.ndarray, fars: tuple[float, ...],
                       weights: np.ndarray | None = None, pauc_fars: tuple[float, float] = PAUC_FARS
                       ) -> dict[str, np.ndarray]:
    """Per-fold true-accept rate at each false-accept rate of `fars`, and the normalised partial AUC, with the
    thresholds of each fold set on the other folds' different-person pairs.

    scores, same, folds: [P] pair similarity, ground truth (bool), fold id. weights: [B, P] how many times each
    pair counts in each of B weightings (the resamples of `identity_bootstrap_weights`); None: every pair once
    (B = 1). Threshold at FAR x for fold f: the lowest of the other folds' negative scores whose weight at or
    below it reaches (1 - x) of their total weight; with unit weights exactly `far_threshold` (the score that a
    share x of the negatives exceed). TAR: the weighted share of fold f's same-person pairs scoring above it.
    pAUC: the area under that TAR(x) for x from pauc_fars[0] to pauc_fars[1] on a linear FAR axis (TAR(x) is a
    step function of x, integrated exactly), divided by the width pauc_fars[1] - pauc_fars[0]: the mean TAR
    over the range, so a perfect verifier scores 1 and chance about the range's mid FAR (0.0055).
    Returns {"tar": [B, F, len(fars)], "pauc": [B, F]} (F: sorted fold ids); NaN for a fold whose other folds
    hold no different-person pair (small identity subsets) or that holds no same-person pair.
    """
    scores, same, folds = np.asarray(scores, float), np.asarray(same, bool), np.asarray(folds)
    weights = np.ones((1, len(scores))) if weights is None else np.asarray(weights, float)
    lo, hi = pauc_fars
    ids = np.unique(folds)
    tar = np.full((len(weights), len(ids), len(fars)), np.nan)
    pauc = np.full((len(weights), len(ids)), np.nan)
    for j, f in enumerate(ids):
        test = folds == f
        neg, pos = ~test & ~same, test & same
        if not neg.any() or not pos.any():
            continue
        order = np.argsort(scores[neg], kind="stable")
        neg_scores, neg_w = scores[neg][order], weights[:, neg][:, order]          # [M], [B, M] ascending
        cum = np.cumsum(neg_w, axis=1)
        total = cum[:, -1:]                                                         # [B, 1]
        pos_order = np.argsort(scores[pos], kind="stable")
        pos_scores, pos_w = scores[pos][pos_order], weights[:, pos][:, pos_order]
        pos_cum = np.concatenate([np.zeros((len(weights), 1)), np.cumsum(pos_w, axis=1)], axis=1)
        pos_total = pos_cum[:, -1:]
        # above[b, i]: weighted share of positives scoring above the i-th lowest negative
        below = np.searchsorted(pos_scores, neg_scores, side="right")              # [M] positives <= it
        with np.errstate(invalid="ignore", divide="ignore"):
            above = (pos_total - pos_cum[:, below]) / pos_total                     # [B, M]
        for k, far in enumerate(fars):
            index = np.minimum((cum < (1 - far) * total).sum(axis=1), len(neg_scores) - 1)   # [B]
            tar[:, j, k] = above[np.arange(len(weights)), index]
        # threshold i holds for x in [1 - cum_i / total, 1 - (cum_i - w_i) / total)
        start, end = 1 - cum / total, 1 - (cum - neg_w) / total
        overlap = np.clip(np.minimum(end, hi) - np.maximum(start, lo), 0, None)    # [B, M]
        pauc[:, j] = np.sum(overlap * np.nan_to_num(above), axis=1) / (hi - lo)
        pauc[~np.isfinite(above).all(axis=1), j] = np.nan
    return {"tar": tar, "pauc": pauc}


def tar_at_far(scores: np.ndarray, same: np.ndarray, folds: np.ndarray, far: float = 0.01) -> np.ndarray:
    """Per-fold true-accept rate at a false-accept rate of `far`, the threshold set on the other folds'
    different-person pairs (the score that `far` of them exceed). Returns [n_folds] (sorted fold ids); NaN
    for a fold whose other folds hold no different-person pair (small identity subsets)."""
    return verification_rates(scores, same, folds, (far,))["tar"][0, :, 0]


def identity_bootstrap_weights(identity_a: np.ndarray, identity_b: np.ndarray, strata: np.ndarray,
                               n_resamples: int, seed: int = 0) -> np.ndarray:
    """Pair weights [n_resamples, P] of a bootstrap over identities: in each stratum (a CFP-FP fold, so every
    fold keeps its number of identities and its pairs) the identities of its pairs are drawn with replacement;
    a same-person pair counts as often as its identity was drawn, a different-person pair the product of its
    two identities' counts (every copy of one meets every copy of the other).

    identity_a, identity_b: [P] the identities of each pair's two photos; strata: [P]. Same `seed`, same
    resamples: methods scored on the same pairs are resampled alike (paired differences)."""
    identity_a, identity_b, strata = np.asarray(identity_a), np.asarray(identity_b), np.asarray(strata)
    rng = np.random.default_rng(seed)
    weights = np.ones((n_resamples, len(identity_a)))
    for s in np.unique(strata):
        m = strata == s
        ids = np.unique(np.concatenate([identity_a[m], identity_b[m]]))
        draws = rng.integers(len(ids), size=(n_resamples, len(ids)))
        counts = np.stack([np.bincount(d, minlength=len(ids)) for d in draws]).astype(float)   # [B, n_ids]
        a, b = np.searchsorted(ids, identity_a[m]), np.searchsorted(ids, identity_b[m])
        weights[:, m] = np.where(a == b, counts[:, a], counts[:, a] * counts[:, b])
    return weights
