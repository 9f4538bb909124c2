"""Helpers shared by the LoRA tests."""
from __future__ import annotations

import torch
from torch import nn

from viewdiff.lora_layers import lora_layers


def randomize_lora_up(module: nn.Module, scale: float, seed: int = 0) -> None:
    """Give every LoRA `up` of `module` a N(0, scale^2) weight (a fresh adapter is an exact no-op)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(module).values():
            layer.up.weight.copy_(torch.randn(layer.up.weight.shape, generator=g) * scale)
