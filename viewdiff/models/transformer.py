"""The pose-normalising transformer: source embedding + poses (+ 3D keypoints) -> embedding at target pose.

Token sequence (width `token_dim`): `pose` (embedding of the source and target poses), `e0..e{N-1}`
(the source embedding cut into `num_tokens` chunks, see `EmbeddingTokenizer`) and, when keypoints
are given and `use_projection_layer`, `3D` (the rendered voxel features of
`LightweightFaceProjectionLayer`). Each block: adaLN -> attention -> residual, adaLN -> MLP ->
residual (pre-norm); the attention is `PoseConditionedLoRAAttention` (LoRA deltas conditioned on
both poses) or plain multi-head attention. The embedding tokens are folded back to `[B, D]`,
optionally mixed across the views of one identity (`CrossViewAttention`), and a zero-initialised
head gives the residual: a fresh model is the identity map.

Rule for missing inputs: `keypoints_3d=None` skips the projection layer (no `3D` token, `voxels`
None); `pose=None` means frontal (zeros).

Trainability: LoRA layers freeze their bases when built (adapter use), but this model unfreezes
everything at construction, so normal training updates all parameters including the q/k/v base
projections. Call `freeze_base()` to fine-tune only the LoRA parameters.
"""
from __future__ import annotations

import torch
from torch import nn

from viewdiff.models.adaptive_norm import AdaptiveLayerNorm
from viewdiff.models.cross_view import CrossViewAttention
from viewdiff.models.lora import lora_parameters, mark_only_lora_trainable
from viewdiff.models.pose_attention import EmbeddingTokenizer, PoseConditionedLoRAAttention, PoseEmbedding
from viewdiff.models.projection import LightweightFaceProjectionLayer


class TransformerBlock(nn.Module):
    """Pre-norm block on tokens [B, T, W]: (ada)LN -> attention -> (ada)LN -> MLP, both residual.

    forward(x, cond [B, cond_dim]) -> (x [B, T, W], weights [B, H, T, T]); cond (the embedding of the
    source and target poses) drives both the adaLN modulation and the LoRA deltas of the attention.
    """

    def __init__(self, width: int, nhead: int, cond_dim: int, use_lora_attention: bool,
                 use_adaptive_norm: bool, rank: int, alpha: float, dropout: float):
        super().__init__()
        self.adaptive = use_adaptive_norm
        self.norm1, self.norm2 = ((AdaptiveLayerNorm(width, cond_dim) if use_adaptive_norm else nn.LayerNorm(width))
                                  for _ in range(2))
        self.attention = (PoseConditionedLoRAAttention(width, num_heads=nhead, rank=rank, alpha=alpha,
                                                       pose_emb_dim=cond_dim, num_tokens=None, embed_pose=False)
                          if use_lora_attention else nn.MultiheadAttention(width, nhead, batch_first=True))
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.dropout = nn.Dropout(dropout)

    def _norm(self, norm: nn.Module, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return norm(x, cond) if self.adaptive else norm(x)

    def forward(self, x: torch.Tensor, cond: torch.Tensor):
        h = self._norm(self.norm1, x, cond)
        if isinstance(self.attention, PoseConditionedLoRAAttention):
            a, weights = self.attention(h, cond, return_attention=True)
        else:
            a, weights = self.attention(h, h, h, need_weights=True, average_attn_weights=False)
        x = x + self.dropout(a)
        x = x + self.dropout(self.mlp(self._norm(self.norm2, x, cond)))
        return x, weights


class EnhancedTransformerDecoderOnly3D(nn.Module):
    """forward(src [B, D], angles [B, 3], keypoints_3d [B, K, 3] | None, pose [B, 3] | None) -> [B, D].

    D = d_model (128 dlib, 512 ArcFace; divisible by num_tokens). angles: source pose, pose: target
    pose (degrees; None = frontal). Output = src + residual (not re-normalised); with
    `return_residual`, returns (out, residual). `multiview_input=True` (batch = groups of n_views
    views of one identity) mixes the views when built with `use_cross_view`; otherwise it is ignored.
    After every forward, `last_visualization` holds `attention` (list over layers of [B, H, T, T],
    detached CPU), `token_labels` (T strings), `voxels` [B, C, R, R, R] and `density` [B, 1, R, R, R]
    (CPU, or None without the 3D token). The tensors are kept detached on the model's device and
    copied to the CPU only when `last_visualization` is read, so training on a GPU does not pay for it.
    """

    def __init__(self, d_model: int = 512, nhead: int = 8, num_layers: int = 4, num_keypoints: int = 5,
                 pose_dim: int = 3, use_lora_attention: bool = True, use_projection_layer: bool = True,
                 use_cross_view: bool = False, n_views: int = 5, rank: int = 4, lora_alpha: float = 1.0,
                 voxel_resolution: int = 16, dropout: float = 0.1, num_tokens: int = 16, token_dim: int = 64,
                 use_adaptive_norm: bool = True):
        super().__init__()
        self.config = dict(d_model=d_model, nhead=nhead, num_layers=num_layers, num_keypoints=num_keypoints,
                           pose_dim=pose_dim, use_lora_attention=use_lora_attention,
                           use_projection_layer=use_projection_layer, use_cross_view=use_cross_view,
                           n_views=n_views, rank=rank, lora_alpha=lora_alpha, voxel_resolution=voxel_resolution,
                           dropout=dropout, num_tokens=num_tokens, token_dim=token_dim,
                           use_adaptive_norm=use_adaptive_norm)
        self.pose_embedding = PoseEmbedding(2 * pose_dim, token_dim)  # [source, target] -> condition
        self.tokenizer = EmbeddingTokenizer(d_model, num_tokens, token_dim, cond_dim=token_dim)
        self.projection = (LightweightFaceProjectionLayer(d_model, num_keypoints, voxel_resolution)
                           if use_projection_layer else None)
        self.projection_token = nn.Linear(d_model, token_dim) if use_projection_layer else None
        self.blocks = nn.ModuleList(
            TransformerBlock(token_dim, nhead, token_dim, use_lora_attention, use_adaptive_norm, rank, lora_alpha,
                             dropout) for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(token_dim)
        self.cross_view = CrossViewAttention(d_model, nhead, n_views) if use_cross_view else None
        self.head = nn.Linear(d_model, d_model)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.requires_grad_(True)  # full training by default, LoRA bases included (see module doc)
        self._visualization: dict = {}

    @classmethod
    def from_config(cls, config: dict) -> "EnhancedTransformerDecoderOnly3D":
        return cls(**config)

    @property
    def last_visualization(self) -> dict:
        """Attention maps, token labels and voxel grids of the last forward (CPU tensors; {} before any)."""
        viz = self._visualization
        if not viz:
            return {}
        return {"attention": [w.cpu() for w in viz["attention"]], "token_labels": list(viz["token_labels"]),
                **{k: None if viz[k] is None else viz[k].cpu() for k in ("voxels", "density")}}

    def forward(self, src: torch.Tensor, angles: torch.Tensor, keypoints_3d: torch.Tensor | None = None,
                pose: torch.Tensor | None = None, return_residual: bool = False, multiview_input: bool = False):
        if pose is None:
            pose = torch.zeros_like(angles)
        cond = self.pose_embedding(torch.cat([angles, pose], dim=-1)).to(src.dtype)
        tokens = self.tokenizer.tokenize(src, cond)
        labels = self.tokenizer.labels
        voxels = density = None
        if self.projection is not None and keypoints_3d is not None:
            feat3d = self.projection(src, keypoints_3d, angles, pose)
            tokens = torch.cat([tokens, self.projection_token(feat3d).unsqueeze(1)], dim=1)
            labels = labels + ["3D"]
            voxels, density = self.projection.last_voxels, self.projection.last_density
        attention = []
        for block in self.blocks:
            tokens, weights = block(tokens, cond)
            attention.append(weights.detach())
        pooled = self.tokenizer.detokenize(self.final_norm(tokens[:, 1:1 + self.tokenizer.num_tokens]))
        if self.cross_view is not None and multiview_input:
            pooled = pooled + self.cross_view(pooled)
        residual = self.head(pooled)
        self._visualization = {"attention": attention, "token_labels": labels, "voxels": voxels,
                               "density": density}
        out = src + residual
        return (out, residual) if return_residual else out

    def get_trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def get_lora_parameters(self) -> list[nn.Parameter]:
        return lora_parameters(self)

    def freeze_base(self) -> None:
        """Freeze everything except the LoRA parameters (adapter fine-tuning)."""
        if not self.get_lora_parameters():
            raise ValueError("this model has no LoRA layers (built with use_lora_attention=False)")
        mark_only_lora_trainable(self)
