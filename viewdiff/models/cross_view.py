"""Attention across the views of one identity.

A multi-view batch is `[B * n_views, ...]` with the `n_views` views of group g at rows
`g * n_views : (g + 1) * n_views` (one identity per group; `viewdiff.training.multiview` builds them).
"""
from __future__ import annotations

import torch
from torch import nn


class CrossViewAttention(nn.Module):
    """Views of the same identity attend to each other.

    x [B * n_views, D] -> [B * n_views, D] (the attention output, to be added as a residual by the
    caller); raises ValueError when the batch is not a multiple of `n_views`.
    """

    def __init__(self, feature_dim: int, num_heads: int = 8, n_views: int = 5):
        super().__init__()
        self.n_views = n_views
        self.norm = nn.LayerNorm(feature_dim)
        self.attention = nn.MultiheadAttention(feature_dim, num_heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if n % self.n_views:
            raise ValueError(f"CrossViewAttention got a batch of {n} rows with n_views={self.n_views}: "
                             f"the batch size must be a multiple of n_views (groups of views of one identity)")
        views = self.norm(x).reshape(n // self.n_views, self.n_views, -1)
        out, _ = self.attention(views, views, views, need_weights=False)
        return out.reshape(n, -1)
