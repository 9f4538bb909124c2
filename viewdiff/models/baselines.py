"""DREAM baseline (Cao et al., "Pose-Robust Face Recognition via Deep Residual Equivariant Mapping",
CVPR 2018): a yaw-gated residual added to the source embedding."""
from __future__ import annotations

import torch
from torch import nn

from viewdiff.models.pose_attention import pose_arguments


class DreamResidual(nn.Module):
    """out = src + sigmoid(10 * (|yaw| / 45 - 1)) * MLP(src); yaw = source_pose[:, 0] in degrees.

    src [B, d_model], source_pose [B, pose_dim] -> [B, d_model]. The MLP is Linear-PReLU-Linear with a
    zero-initialised last layer (a fresh model is the identity). DREAM maps any pose to frontal: the
    `target_pose` and `keypoints_3d` are accepted for interface parity and ignored, as are other
    kwargs. `pose_dim` is only checked against `source_pose`. `angles` / `pose` are accepted as
    aliases of `source_pose` / `target_pose`, as in `EnhancedTransformerDecoderOnly3D`.
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

    def forward(self, src: torch.Tensor, source_pose: torch.Tensor | None = None,
                keypoints_3d: torch.Tensor | None = None, target_pose: torch.Tensor | None = None,
                return_residual: bool = False, *, angles: torch.Tensor | None = None,
                pose: torch.Tensor | None = None, **ignored):
        source_pose, _ = pose_arguments(source_pose, target_pose, angles, pose)
        if source_pose.shape[-1] != self.config["pose_dim"]:
            raise ValueError(f"source_pose must be [B, {self.config['pose_dim']}], got {tuple(source_pose.shape)}")
        residual = self.yaw_gate(source_pose).to(src.dtype) * self.mlp(src)
        out = src + residual
        return (out, residual) if return_residual else out
