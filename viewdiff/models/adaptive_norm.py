"""Adaptive LayerNorm (adaLN-Zero, DiT: Peebles & Xie 2023; LRM): the condition sets shift and scale."""
from __future__ import annotations

import torch
from torch import nn


class AdaptiveLayerNorm(nn.Module):
    """x [B, T, dim] or [B, dim], cond [B, cond_dim] -> LayerNorm(x) * (1 + scale) + shift.

    LayerNorm has no affine of its own; (shift, scale) come from a zero-initialised Linear of the
    condition, so a fresh module is a plain LayerNorm and the condition's effect is learned.
    """

    def __init__(self, dim: int, cond_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.modulation = nn.Linear(cond_dim, 2 * dim)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(cond).chunk(2, dim=-1)
        if x.dim() == 3:
            shift, scale = shift.unsqueeze(1), scale.unsqueeze(1)
        return torch.addcmul(shift, self.norm(x), 1 + scale)
