"""DREAM baseline (Cao et al., "Pose-Robust Face Recognition via Deep Residual Equivariant Mapping",
CVPR 2018): a yaw-gated residual added to the source embedding."""
from __future__ import annotations

import torch
from torch import nn


class DreamResidual(nn.Module):
    """out = src + sigmoid(10 * (|yaw| / 45 - 1)) * MLP(src); yaw = angles[:, 0] in degrees.

    src [B, d_model], angles [B, pose_dim] -> [B, d_model]. The MLP is Linear-PReLU-Linear with a
    zero-initialised last layer (a fresh model is the identity). DREAM maps any pose to frontal: the
    target `pose` and `keypoints_3d` are accepted for interface parity and ignored, as are other
    kwargs. `pose_dim` is only checked against `angles`.
    """

    def __init__(self, d_model: int = 512, hidden: int | None = None, pose_dim: int = 3):
        super().__init__()
        hidden = hidden or d_model
        self.config = dict(d_model=d_model, hidden=hidden, pose_dim=pose_dim)
        self.mlp = nn.Sequential(nn.Linear(d_model, hidden), nn.PReLU(), nn.Linear(hidden, d_model))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    @classmethod
    def from_config(cls, config: dict) -> "DreamResidual":
        return cls(**config)

    @staticmethod
    def yaw_gate(angles: torch.Tensor) -> torch.Tensor:
        """angles [B, 3] (degrees) -> gate [B, 1] in (0, 1): ~0 near frontal, 0.5 at 45 deg, ~1 at profile."""
        return torch.sigmoid(10.0 * (angles[:, :1].abs() / 45.0 - 1.0))

    def forward(self, src: torch.Tensor, angles: torch.Tensor, keypoints_3d: torch.Tensor | None = None,
                pose: torch.Tensor | None = None, return_residual: bool = False, **ignored):
        if angles.shape[-1] != self.config["pose_dim"]:
            raise ValueError(f"angles must be [B, {self.config['pose_dim']}], got {tuple(angles.shape)}")
        residual = self.yaw_gate(angles).to(src.dtype) * self.mlp(src)
        out = src + residual
        return (out, residual) if return_residual else out
