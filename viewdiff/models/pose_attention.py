"""Pose-conditioned LoRA multi-head attention, plus the pose embedding and the embedding tokenizer.

- `pose_arguments`: the source / target poses of a model forward, with their older alias names.
- `PoseEmbedding`: angles in degrees -> Fourier features of the radians -> 2-layer MLP.
- `EmbeddingTokenizer`: a face embedding `[B, D]` -> `N` tokens (`D / N` dims each, lifted to the
  attention width, plus a learned position), optionally preceded by a pose token; and back.
- `PoseConditionedLoRAAttention`: q/k/v are frozen bases plus LoRA deltas whose `down` projection sees
  `[token, pose_embedding]`, so the pose changes which tokens attend to which.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from viewdiff.models.lora import LoRALinearLayer


def pose_arguments(source_pose: torch.Tensor | None, target_pose: torch.Tensor | None, angles: torch.Tensor | None,
                   pose: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(source_pose, target_pose) of a model's forward, which also takes the older names as aliases:
    `angles` for `source_pose` and `pose` for `target_pose` (each pose given once, by either name)."""
    if angles is not None:
        if source_pose is not None:
            raise TypeError("give the source pose once: source_pose, or its alias angles")
        source_pose = angles
    if pose is not None:
        if target_pose is not None:
            raise TypeError("give the target pose once: target_pose, or its alias pose")
        target_pose = pose
    if source_pose is None:
        raise TypeError("forward() needs the source pose: source_pose [B, 3] (alias angles), degrees")
    return source_pose, target_pose


class PoseEmbedding(nn.Module):
    """angles [B, pose_dim] (degrees) -> [B, out_dim].

    Features: radians a and sin/cos(2^k a) for k < num_freqs, then Linear-SiLU-Linear.
    """

    def __init__(self, pose_dim: int = 3, out_dim: int = 64, num_freqs: int = 4, hidden: int | None = None):
        super().__init__()
        self.pose_dim = pose_dim
        self.register_buffer("freqs", 2.0 ** torch.arange(num_freqs, dtype=torch.float32), persistent=False)
        hidden = hidden or out_dim
        self.mlp = nn.Sequential(nn.Linear(pose_dim * (2 * num_freqs + 1), hidden), nn.SiLU(),
                                 nn.Linear(hidden, out_dim))

    def forward(self, angles_deg: torch.Tensor) -> torch.Tensor:
        if angles_deg.shape[-1] != self.pose_dim:
            raise ValueError(f"expected pose [B, {self.pose_dim}], got {tuple(angles_deg.shape)}")
        rad = torch.deg2rad(angles_deg.float())
        x = rad.unsqueeze(-1) * self.freqs  # [B, P, F]
        feats = torch.cat([rad, x.sin().flatten(1), x.cos().flatten(1)], dim=-1)
        return self.mlp(feats)


class EmbeddingTokenizer(nn.Module):
    """Split an embedding into a token sequence and fold a sequence back.

    tokenize: x [B, embed_dim] (+ cond [B, cond_dim]) -> [B, (1 +) num_tokens, token_dim]: chunk i of
    `embed_dim / num_tokens` values, lifted by a shared Linear, plus a learned position; with
    `cond_dim`, a pose token (Linear of cond) comes first.
    detokenize: tokens [B, num_tokens, token_dim] (embedding tokens only) -> [B, embed_dim].
    """

    def __init__(self, embed_dim: int, num_tokens: int = 16, token_dim: int = 64, cond_dim: int | None = None):
        super().__init__()
        if embed_dim % num_tokens:
            raise ValueError(f"embedding width {embed_dim} must be divisible by num_tokens={num_tokens}")
        self.embed_dim, self.num_tokens, self.chunk = embed_dim, num_tokens, embed_dim // num_tokens
        self.lift = nn.Linear(self.chunk, token_dim)
        self.position = nn.Parameter(torch.randn(num_tokens, token_dim) * 0.02)
        self.pose_token = nn.Linear(cond_dim, token_dim) if cond_dim else None
        self.fold = nn.Linear(token_dim, self.chunk)

    @property
    def labels(self) -> list[str]:
        """Token names in sequence order: ["pose"] (with cond) + ["e0", ..., "e{N-1}"]."""
        return (["pose"] if self.pose_token is not None else []) + [f"e{i}" for i in range(self.num_tokens)]

    def tokenize(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self.lift(x.reshape(x.shape[0], self.num_tokens, self.chunk)) + self.position
        if self.pose_token is None:
            return tokens
        if cond is None:
            raise ValueError("this tokenizer prepends a pose token: pass cond")
        return torch.cat([self.pose_token(cond).unsqueeze(1), tokens], dim=1)

    def detokenize(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fold(tokens).flatten(1)


class PoseConditionedLoRAAttention(nn.Module):
    """Multi-head self-attention with pose-conditioned LoRA on q, k and v.

    forward(features, pose): features [B, T, D] -> [B, T, D], or [B, D] -> [B, D] (the embedding is
    tokenized into `num_tokens` tokens of width D plus a pose token, attended, and folded back);
    pose [B, pose_dim] in degrees (None = frontal zeros). With `return_attention`, also the weights
    [B, H, T, T] (T includes the pose token for 2-D input). `num_tokens=None` disables 2-D input.
    With `embed_pose=False`, `pose` must instead be a precomputed pose embedding [B, pose_emb_dim]
    (a model sharing one embedding across its layers passes it; no PoseEmbedding is built).
    The q/k/v bases are frozen at construction (adapter use); the output projection is a plain Linear.
    """

    def __init__(self, feature_dim: int, pose_dim: int = 3, num_heads: int = 8, rank: int = 4,
                 alpha: float = 1.0, pose_emb_dim: int = 32, num_tokens: int | None = 16, embed_pose: bool = True):
        super().__init__()
        if feature_dim % num_heads:
            raise ValueError(f"feature_dim {feature_dim} must be divisible by num_heads {num_heads}")
        self.feature_dim, self.pose_dim, self.num_heads = feature_dim, pose_dim, num_heads
        self.pose_emb_dim = pose_emb_dim
        self.pose_embedding = PoseEmbedding(pose_dim, pose_emb_dim) if embed_pose else None
        self.q, self.k, self.v = (LoRALinearLayer(feature_dim, feature_dim, rank, alpha, cond_features=pose_emb_dim)
                                  for _ in range(3))
        self.out = nn.Linear(feature_dim, feature_dim)
        self.tokenizer = (EmbeddingTokenizer(feature_dim, num_tokens, feature_dim, cond_dim=pose_emb_dim)
                          if num_tokens else None)

    def qkv(self, x: torch.Tensor, pose_emb: torch.Tensor) -> torch.Tensor:
        """x [B, T, D], pose_emb [B, E] -> [3, B, T, D]: `self.q(x, pose_emb)`, k and v.

        The three layers' weights are stacked so that 4 matmuls and one batched matmul replace 12 small
        matmuls (this matters at batch 1 on CPU); layers with different LoRA scales go one by one.
        """
        layers = (self.q, self.k, self.v)
        scale = layers[0].scale
        if any(layer.scale != scale for layer in layers):
            return torch.stack([layer(x, pose_emb) for layer in layers])
        (b, t, d), r = x.shape, layers[0].rank
        down = torch.cat([layer.down.weight for layer in layers])  # [3r, D + E]
        h = F.linear(x, down[:, :d]) + F.linear(pose_emb, down[:, d:]).unsqueeze(1)  # [B, T, 3r]
        base = F.linear(x, torch.cat([layer.base.weight for layer in layers]),
                        torch.cat([layer.base.bias for layer in layers]))  # [B, T, 3D]
        up = torch.stack([layer.up.weight for layer in layers]).transpose(1, 2)  # [3, r, D]
        out = torch.baddbmm(base.view(b * t, 3, d).transpose(0, 1), h.view(b * t, 3, r).transpose(0, 1), up,
                            alpha=scale)  # [3, B * T, D]
        return out.view(3, b, t, d)

    def attend(self, x: torch.Tensor, pose_emb: torch.Tensor, need_weights: bool = True):
        """x [B, T, D], pose_emb [B, E] -> (output [B, T, D], weights [B, H, T, T], or None without
        `need_weights`: then the fused `scaled_dot_product_attention` kernel runs, ~3x faster in training)."""
        b, t, d = x.shape
        h = self.num_heads
        q, k, v = self.qkv(x, pose_emb).view(3, b, t, h, d // h).transpose(2, 3)
        if not need_weights:
            out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
            return self.out(out), None
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // h), dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(b, t, d)
        return self.out(out), weights

    def forward(self, features: torch.Tensor, pose: torch.Tensor | None = None, return_attention: bool = False):
        if self.pose_embedding is None:
            if pose is None or pose.shape[-1] != self.pose_emb_dim:
                raise ValueError(f"built with embed_pose=False: pass a pose embedding [B, {self.pose_emb_dim}]")
            pose_emb = pose
        else:
            pose_emb = self.pose_embedding(pose if pose is not None
                                           else features.new_zeros(features.shape[0], self.pose_dim))
        if features.dim() == 3:
            out, weights = self.attend(features, pose_emb, need_weights=return_attention)
        elif features.dim() == 2:
            if self.tokenizer is None:
                raise ValueError("2-D input needs num_tokens (this attention was built for token sequences)")
            out, weights = self.attend(self.tokenizer.tokenize(features, pose_emb), pose_emb,
                                       need_weights=return_attention)
            out = self.tokenizer.detokenize(out[:, 1:])
        else:
            raise ValueError(f"features must be [B, D] or [B, T, D], got {tuple(features.shape)}")
        return (out, weights) if return_attention else out
