"""Helpers shared by the model tests: random batches, perturbed models, active LoRA adapters."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from viewdiff.models.lora import lora_layers


def randomize_lora_up(module: nn.Module, scale: float, seed: int = 0) -> None:
    """Give every LoRA `up` of `module` a N(0, scale^2) weight (a fresh adapter is an exact no-op)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(module).values():
            layer.up.weight.copy_(torch.randn(layer.up.weight.shape, generator=g) * scale)


def batch(b: int = 4, d: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"src": F.normalize(torch.randn(b, d, generator=g), dim=-1),
            "angles": torch.randn(b, 3, generator=g) * 30,
            "keypoints_3d": torch.randn(b, 5, 3, generator=g) * 0.4,
            "pose": torch.randn(b, 3, generator=g) * 10}


def trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """Perturb every parameter so that zero-initialised parts (head, LoRA up, adaLN) are active."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def small_map_model(head, d_model: int = 512, channels: int = 64, seed: int = 0):
    """A small map model (one layer, an 8^3 grid) on an embedder's affine head (weight [D, C*49], bias [D];
    `FeatureMapModel.head`), every part active (`trained_like`): what the demo runs, small, without shipped weights."""
    from viewdiff.models.transformer import EnhancedTransformerDecoderOnly3D
    torch.manual_seed(seed)
    model = EnhancedTransformerDecoderOnly3D(d_model=d_model, nhead=4, num_layers=1, voxel_resolution=8,
                                             map_channels=channels, dropout=0.0)
    model.set_embedder_head(torch.as_tensor(head[0]), torch.as_tensor(head[1]))
    return trained_like(model, seed).eval()
