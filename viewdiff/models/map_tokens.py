"""The embedder's 7x7 feature map as tokens, and its frozen affine head.

- `MapTokenizer`: maps ``[B, C, H, W]`` (the photo's, and the mirrored photo's flipped back so that a
  cell covers the same part of the face) -> ``H * W`` tokens per view (a shared Linear of the C
  channels, a learned position per cell, a learned code per view); ``detokenize`` folds the photo's
  cell tokens back to a map change ``[B, C, H, W]`` through a zero-initialised Linear (a fresh model
  changes nothing).
- `EmbedderHead`: the embedder's own head, ``embedding = weight @ map.flatten() + bias``
  (`viewdiff.faces.feature_map`), frozen: a map change becomes an embedding change in the raw gallery's
  space. Kept as buffers, so saved weights carry the head they were trained with.
"""
from __future__ import annotations

import torch
from torch import nn

VIEWS = ("photo", "mirror")


class MapTokenizer(nn.Module):
    """tokenize(map [B, C, H, W], view) -> [B, H*W, token_dim]; detokenize([B, H*W, token_dim]) -> [B, C, H, W]."""

    def __init__(self, channels: int, size: int, token_dim: int):
        super().__init__()
        self.channels, self.size = channels, size
        self.lift = nn.Linear(channels, token_dim)
        self.position = nn.Parameter(torch.randn(size * size, token_dim) * 0.02)
        self.view = nn.Parameter(torch.randn(len(VIEWS), token_dim) * 0.02)
        self.fold = nn.Linear(token_dim, channels)
        nn.init.zeros_(self.fold.weight)  # zero-initialised: a fresh model adds no map change
        nn.init.zeros_(self.fold.bias)

    def labels(self, view: str) -> list[str]:
        """'photo r,c' for every cell, row-major (r: 0 = top of the aligned face)."""
        return [f"{view} {r},{c}" for r in range(self.size) for c in range(self.size)]

    def tokenize(self, cells: torch.Tensor, view: str) -> torch.Tensor:
        b, c, h, w = cells.shape
        if (c, h, w) != (self.channels, self.size, self.size):
            raise ValueError(f"feature map must be [B, {self.channels}, {self.size}, {self.size}], got "
                             f"{tuple(cells.shape)}")
        return self.lift(cells.flatten(2).transpose(1, 2)) + self.position + self.view[VIEWS.index(view)]

    def detokenize(self, tokens: torch.Tensor) -> torch.Tensor:
        b = tokens.shape[0]
        return self.fold(tokens).transpose(1, 2).reshape(b, self.channels, self.size, self.size)


class EmbedderHead(nn.Module):
    """The embedder's frozen affine head: map [B, C, H, W] -> [B, D] (`bias=False`: the change of a change)."""

    def __init__(self, d_model: int, channels: int, size: int):
        super().__init__()
        self.register_buffer("weight", torch.zeros(d_model, channels * size * size))
        self.register_buffer("bias", torch.zeros(d_model))

    def set(self, weight, bias) -> "EmbedderHead":
        """Copy the embedder's head (weight [D, C*H*W], bias [D], arrays or tensors) in."""
        weight, bias = torch.as_tensor(weight, dtype=torch.float32), torch.as_tensor(bias, dtype=torch.float32)
        if weight.shape != self.weight.shape or bias.shape != self.bias.shape:
            raise ValueError(f"the embedder's head is {tuple(weight.shape)} + {tuple(bias.shape)}, this model "
                             f"expects {tuple(self.weight.shape)} + {tuple(self.bias.shape)}")
        self.weight.copy_(weight)
        self.bias.copy_(bias)
        self._seen_set = True
        return self

    @property
    def is_set(self) -> bool:
        """Whether a head was copied in (by `set` or a loaded state dict); once seen, not re-checked: a
        sum over C*49*D values is a tenth of a demo forward."""
        if not getattr(self, "_seen_set", False):
            self._seen_set = bool(self.weight.abs().sum() > 0)
        return self._seen_set

    def forward(self, maps: torch.Tensor, bias: bool = True) -> torch.Tensor:
        out = maps.flatten(1) @ self.weight.T.to(maps.dtype)
        return out + self.bias.to(maps.dtype) if bias else out
