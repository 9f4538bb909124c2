"""Multi-view batch building: groups of one identity spread over its poses."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from viewdiff.models.cross_view import CrossViewAttention
from viewdiff.training.multiview import build_multiview_batches


def records(counts: dict[str, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    identities = np.concatenate([[name] * n for name, n in counts.items()])
    yaws = rng.uniform(-90, 90, len(identities))
    order = rng.permutation(len(identities))  # records arrive in any order
    return identities[order], yaws[order]


def test_groups_hold_one_identity_spread_over_its_poses():
    identities, yaws = records({"a": 10, "b": 7, "c": 15})
    groups = build_multiview_batches(identities, yaws, 5, np.random.default_rng(0))
    assert len(groups) == 2 + 1 + 3  # c // n_views groups per identity
    used = np.concatenate(groups)
    assert len(used) == len(set(used.tolist()))  # no row is used twice
    for group in groups:
        assert len(group) == 5 and len(set(identities[group])) == 1
        assert np.all(np.diff(yaws[group]) >= 0)  # sorted by yaw
        rows = np.flatnonzero(identities == identities[group[0]])
        bins = np.array_split(rows[np.argsort(yaws[rows])], 5)
        for view, b in zip(group, bins):  # view i comes from yaw bin i of its identity
            assert view in b


def test_small_identities_are_padded_and_results_are_reproducible():
    identities, yaws = records({"few": 2, "many": 6})
    groups = build_multiview_batches(identities, yaws, 4, np.random.default_rng(1))
    few = [g for g in groups if identities[g[0]] == "few"]
    assert len(few) == 1 and len(few[0]) == 4
    assert set(few[0].tolist()) == set(np.flatnonzero(identities == "few").tolist())  # all rows, then repeats
    again = build_multiview_batches(identities, yaws, 4, np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(groups, again))


def test_batches_feed_the_cross_view_layer():
    identities, yaws = records({"a": 6, "b": 6})
    groups = build_multiview_batches(identities, yaws, 3, np.random.default_rng(0))
    batch = np.concatenate(groups)
    assert CrossViewAttention(16, num_heads=2, n_views=3)(torch.randn(len(batch), 16)).shape == (len(batch), 16)


def test_bad_arguments():
    with pytest.raises(ValueError, match="matching 1-D arrays"):
        build_multiview_batches(np.array(["a", "b"]), np.zeros(3), 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="n_views must be >= 1"):
        build_multiview_batches(np.array(["a"]), np.zeros(1), 0, np.random.default_rng(0))
