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


def tar_at_far(scores: np.ndarray, same: np.ndarray, folds: np.ndarray, far: float = 0.01) -> np.ndarray:
    """Per-fold true-accept rate at a false-accept rate of `far`, the threshold set on the other folds'
    different-person pairs (the score that `far` of them exceed). Returns [n_folds] (sorted fold ids); NaN
    for a fold whose other folds hold no different-person pair (small identity subsets)."""
    tars = []
    for f in np.unique(folds):
        test = folds == f
        negatives = scores[~test & ~same]
        if not len(negatives):
            tars.append(np.nan)
            continue
        tars.append(np.mean(scores[test & same] > far_threshold(negatives, far)))
    return np.asarray(tars)
