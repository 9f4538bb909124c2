"""Cross-view attention: views of one identity only."""
from __future__ import annotations

import pytest
import torch

from viewdiff.models.cross_view import CrossViewAttention


def test_cross_view_attention_keeps_the_shape_and_mixes_only_within_a_group():
    torch.manual_seed(0)
    attn = CrossViewAttention(32, num_heads=4, n_views=3).eval()
    x = torch.randn(6, 32)  # two groups of 3 views
    out = attn(x)
    assert out.shape == (6, 32)
    x2 = x.clone()
    x2[1] = torch.randn(32)  # change one view of group 0
    out2 = attn(x2)
    assert (out2[:3] - out[:3]).abs().max() > 1e-4  # every view of group 0 sees it
    assert torch.equal(out2[3:], out[3:])  # group 1 does not


def test_batch_not_a_multiple_of_n_views_is_refused_with_a_clear_message():
    attn = CrossViewAttention(32, num_heads=4, n_views=5)
    with pytest.raises(ValueError, match=r"batch of 7 rows with n_views=5.*multiple of n_views"):
        attn(torch.randn(7, 32))
