"""Multi-view batching: groups of `n_views` rows of one identity spread over its poses.

A multi-view batch is `[G * n_views, ...]` with the `n_views` views of group g at rows
`g * n_views : (g + 1) * n_views`, the layout `viewdiff.models.cross_view.CrossViewAttention` expects.
"""
from __future__ import annotations

import numpy as np


def build_multiview_batches(identities: np.ndarray, yaws: np.ndarray, n_views: int,
                            rng: np.random.Generator) -> list[np.ndarray]:
    """Groups of `n_views` row indices, each of one identity, spread over its poses.

    identities: [N] labels (any dtype), yaws: [N] degrees. An identity with c >= n_views rows gives
    c // n_views groups: its rows sorted by yaw are cut into n_views contiguous pose bins and each
    group takes one (shuffled) row from every bin, so rows are never reused, views within a group are
    distinct and span the identity's yaw range. An identity with c < n_views rows gives one group: all its rows plus
    rows drawn with replacement. Each group is sorted by yaw; the list of groups is shuffled.
    Returns a list of int arrays of length n_views (concatenate them for a `[G * n_views]` batch).
    """
    identities, yaws = np.asarray(identities), np.asarray(yaws, dtype=float)
    if identities.shape != yaws.shape or identities.ndim != 1:
        raise ValueError(f"identities {identities.shape} and yaws {yaws.shape} must be matching 1-D arrays")
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    groups = []
    for ident in np.unique(identities):
        rows = np.flatnonzero(identities == ident)
        rows = rows[np.argsort(yaws[rows], kind="stable")]
        if len(rows) < n_views:
            group = np.concatenate([rows, rng.choice(rows, n_views - len(rows), replace=True)])
            groups.append(group[np.argsort(yaws[group], kind="stable")])
            continue
        bins = [rng.permutation(b) for b in np.array_split(rows, n_views)]
        groups += [np.array([b[g] for b in bins]) for g in range(len(rows) // n_views)]
    return [groups[i] for i in rng.permutation(len(groups))]


def epoch_batches(n: int, batch_size: int, rng: np.random.Generator, identities: np.ndarray | None = None,
                  yaws: np.ndarray | None = None, n_views: int = 0) -> list[np.ndarray]:
    """Index batches of one epoch: a shuffled pass, or whole multi-view groups when `n_views`."""
    if n_views:
        groups = build_multiview_batches(identities, yaws, n_views, rng)
        per = max(1, batch_size // n_views)
        order = rng.permutation(len(groups))
        return [np.concatenate([groups[g] for g in order[i:i + per]]) for i in range(0, len(order), per)]
    perm = rng.permutation(n)
    return [perm[i:i + batch_size] for i in range(0, n, batch_size)]
