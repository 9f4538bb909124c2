"""The pose-normalising transformer: source embedding + poses (+ 3D keypoints) -> embedding at target pose.

Token sequence (width `token_dim`): `pose` (embedding of the source and target poses), then either
- the embedding vector: `e0..e{N-1}` (the source embedding cut into `num_tokens` chunks, see
  `EmbeddingTokenizer`) and, when keypoints are given and `use_projection_layer`, `3D` (the rendered voxel
  features of `LightweightFaceProjectionLayer`); or
- the embedder's 7x7 map (`map_channels` > 0, see `viewdiff.models.map_tokens`): the 49 cells of the photo
  (`photo r,c`), the 49 of the mirrored photo flipped back onto the same face regions (`mirror r,c`: the
  second view; attention between the two is the cross-view between photo and mirror). With keypoints the
  projection layer's rendering of the face from the target pose (the cells placed on the face's measured
  surface, `cell_depth`, turned and rendered with visibility), read back at the 49 cells, is added to the
  photo's map before it is tokenised (fed back, as ViewDiff's projection layer feeds its rendered features
  back into the UNet). The output is a change of the photo's map (the zero-initialised fold: the one zero
  point of the learned path), turned into an embedding change by the embedder's own frozen head and divided
  by the raw embedding's norm (the change of the unit embedding, in the raw gallery's space). Each block: adaLN -> attention -> residual, adaLN -> MLP ->
residual (pre-norm); the attention is `PoseConditionedLoRAAttention` (LoRA deltas conditioned on
both poses) or plain multi-head attention. The embedding tokens are folded back to `[B, D]`,
optionally mixed across the views of one identity (`CrossViewAttention`), and a zero-initialised
head gives the residual. With `use_mirror_view`, the mirrored photo's embedding `src_mirror` (a free
second view at the mirrored yaw) adds `mirror_weight * (src_mirror - src)`, the weight initialised at 0.5
(the mean of the two views).
With `use_pose_gate`, the sum of both is scaled by `PoseGate(source_pose, target_pose)`:

    out = src + gate * (head(tokens) + mirror_weight * (src_mirror - src))

(for a map model `head(tokens)` is `EmbedderHead(fold(photo cell tokens))`).

Without a mirror view a fresh model is the identity map (zero head); with one, it averages the two views
of a face whose pose changes a lot, and keeps a face that stays at its pose (gate ~0).

Rule for missing inputs: `keypoints_3d=None` skips the projection layer (no `3D` token, `voxels`
None); `target_pose=None` means frontal (zeros); `src_mirror=None` drops the mirror term.

Trainability: LoRA layers freeze their bases when built (adapter use), but this model unfreezes
everything at construction, so normal training updates all parameters including the q/k/v base
projections. Call `freeze_base()` to fine-tune only the LoRA parameters.
"""
from __future__ import annotations

import inspect
from dataclasses import asdict, fields

import torch
from torch import nn

from viewdiff.models.adaptive_norm import AdaptiveLayerNorm
from viewdiff.models.config import TransformerConfig
from viewdiff.models.cross_view import CrossViewAttention
from viewdiff.models.lora import LoRALinearLayer, lora_parameters, mark_only_lora_trainable
from viewdiff.models.map_tokens import EmbedderHead, MapTokenizer
from viewdiff.models.pose_attention import (EmbeddingTokenizer, PoseConditionedLoRAAttention, PoseEmbedding,
                                            pose_arguments)
from viewdiff.models.projection import LightweightFaceProjectionLayer


class TransformerBlock(nn.Module):
    """Pre-norm block on tokens [B, T, W]: (ada)LN -> attention -> (ada)LN -> MLP, both residual.

    forward(x, cond [B, cond_dim]) -> (x [B, T, W], weights [B, H, T, T], None in training mode); cond (the embedding of the
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
        keep = not self.training   # the weights are for looking at; training runs the fused kernel without them
        if isinstance(self.attention, PoseConditionedLoRAAttention):
            a, weights = self.attention.attend(h, cond, need_weights=keep)   # cond is the pose embedding
        else:
            a, weights = self.attention(h, h, h, need_weights=keep, average_attn_weights=False)
        x = x + self.dropout(a)
        x = x + self.dropout(self.mlp(self._norm(self.norm2, x, cond)))
        return x, weights


class PoseGate(nn.Module):
    """(source_pose, target_pose) [B, 3] -> gate [B, 1] in [0, 1): the sigmoid s(d) = sigmoid((d - centre) / width)
    of the yaw change d = |delta yaw| (degrees), shifted and rescaled to (s(d) - s(0)) / (1 - s(0)).

    Exactly 0 when the yaw does not change, so a face already at the target yaw passes through unchanged
    however wide training makes the gate; near 1 for a profile mapped to frontal. The yaw change only: the
    training data (frontal and turned photos of little pitch) teaches nothing else, so a pitch-only change (a
    face looking up or down) is left as it is rather than extrapolated. A gate on the pose change, not on the
    identity, so it cannot memorise the training people.

    Parameterised so that training can move it: the centre is stored in units of `UNIT` degrees and the width
    as its log (Adam moves a parameter by about its learning rate per step whatever its scale, so a centre
    stored in degrees moved ~0.01 deg per step and never left its initial 45). Initialised at 45 and 10 degrees.
    """

    UNIT = 10.0   # degrees per unit of `centre_units`

    def __init__(self, centre: float = 45.0, width: float = 10.0):
        super().__init__()
        self.centre_units = nn.Parameter(torch.tensor(float(centre) / self.UNIT))
        self.log_width = nn.Parameter(torch.tensor(float(width)).log())

    @property
    def centre(self) -> torch.Tensor:
        """The centre of the sigmoid in degrees of yaw change."""
        return self.centre_units * self.UNIT

    def forward(self, source_pose: torch.Tensor, target_pose: torch.Tensor) -> torch.Tensor:
        delta = (source_pose[:, :1] - target_pose[:, :1]).abs()
        width, centre = self.log_width.exp(), self.centre
        at_rest = torch.sigmoid(-centre / width)   # s(0)
        return (torch.sigmoid((delta - centre) / width) - at_rest) / (1 - at_rest)


class EnhancedTransformerDecoderOnly3D(nn.Module):
    """forward(src [B, D], source_pose [B, 3], keypoints_3d [B, K, 3] | None, target_pose [B, 3] | None,
    src_mirror=[B, D] | None) -> [B, D].

    Built from keywords, the fields of `TransformerConfig` (names, defaults, meaning), e.g.
    `EnhancedTransformerDecoderOnly3D(d_model=128, rank=8)`; `settings` is that TransformerConfig,
    `config` its dict. D = d_model (128 dlib, 512 ArcFace; divisible by num_tokens). Poses are degrees
    (yaw, pitch, roll); target_pose None = frontal. The older names stay accepted as keyword aliases:
    `angles=` for source_pose, `pose=` for target_pose (positional calls are unchanged). Output = src + residual (not re-normalised); with
    `return_residual`, returns (out, residual). `multiview_input=True` (batch = groups of n_views
    views of one identity) mixes the views when built with `use_cross_view`; otherwise it is ignored.
    After every forward, `last_visualization` holds `attention` (list over layers of [B, H, T, T],
    detached CPU; empty in training mode, where the fused attention kernel keeps no weights), `token_labels` (T strings), `voxels` [B, C, R, R, R] and `density` [B, 1, R, R, R]
    (CPU, or None without the 3D token). The tensors are kept detached on the model's device and
    copied to the CPU only when `last_visualization` is read, so training on a GPU does not pay for it.
    """

    def __init__(self, **kwargs):
        super().__init__()
        self.settings = c = TransformerConfig(**kwargs)  # the fields of TransformerConfig, by keyword
        self.pose_embedding = PoseEmbedding(2 * c.pose_dim, c.token_dim)  # [source, target] -> condition
        reads_map = c.map_channels > 0
        if reads_map:
            self.pose_token = nn.Linear(c.token_dim, c.token_dim)
            self.map_tokenizer = MapTokenizer(c.map_channels, c.map_size, c.token_dim)
            self.embedder_head = EmbedderHead(c.d_model, c.map_channels, c.map_size)
        else:
            self.tokenizer = EmbeddingTokenizer(c.d_model, c.num_tokens, c.token_dim, cond_dim=c.token_dim)
        width = c.map_channels if reads_map else c.d_model
        self.projection = (LightweightFaceProjectionLayer(width, c.num_keypoints, c.voxel_resolution,
                                                          map_size=c.map_size if reads_map else None)
                           if c.use_projection_layer else None)
        self.projection_token = (nn.Linear(c.d_model, c.token_dim)
                                 if c.use_projection_layer and not reads_map else None)
        self.blocks = nn.ModuleList(
            TransformerBlock(c.token_dim, c.nhead, c.token_dim, c.use_lora_attention, c.use_adaptive_norm, c.rank,
                             c.lora_alpha, c.dropout) for _ in range(c.num_layers))
        self.final_norm = nn.LayerNorm(c.token_dim)
        self.cross_view = CrossViewAttention(c.d_model, c.nhead, c.n_views) if c.use_cross_view else None
        if not reads_map:   # (a map model's head is the zero-initialised fold + the embedder's own head)
            self.head = nn.Linear(c.d_model, c.d_model)
            nn.init.zeros_(self.head.weight)  # zero-initialised head: a fresh model is the identity map
            nn.init.zeros_(self.head.bias)
        # 0.5: a fresh model maps a turned face to the mean of its two views (the photo and its mirror,
        # equally good observations of the person); training moves the weight from there
        self.mirror_weight = nn.Parameter(torch.tensor(0.5)) if c.use_mirror_view else None
        self.gate = PoseGate() if c.use_pose_gate else None
        self.requires_grad_(True)  # full training by default, LoRA bases included (see module doc)
        self._one_zero_point()
        self._visualization: dict = {}

    def _one_zero_point(self, std: float = 0.02) -> None:
        """Leave exactly one zero-initialised point on the learned path: the map model's `fold` (or the vector
        model's `head`), so a fresh model adds no change. The parts that are zero-initialised when they stand
        alone (LoRA's `up`, adaLN's modulation, the projection layer's output) start small instead: four zeros
        in series gave every part upstream of them a gradient of second order, and they barely learned."""
        for module in self.modules():
            if isinstance(module, AdaptiveLayerNorm):
                nn.init.normal_(module.modulation.weight, std=std)
            elif isinstance(module, LoRALinearLayer):
                nn.init.normal_(module.up.weight, std=std)
        if self.projection is not None and self.settings.map_channels:
            nn.init.normal_(self.projection.project.weight, std=std)

    # help() and inspect show the keyword names and defaults of TransformerConfig
    __init__.__signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
           for f in fields(TransformerConfig)])

    @property
    def config(self) -> dict:
        """The constructor keywords as a JSON-ready dict (`config.json`; `from_config` rebuilds the model)."""
        return asdict(self.settings)

    @classmethod
    def from_config(cls, config: dict | TransformerConfig) -> "EnhancedTransformerDecoderOnly3D":
        return cls(**(asdict(config) if isinstance(config, TransformerConfig) else config))

    def set_embedder_head(self, weight, bias) -> None:
        """Copy in the embedder's affine head (`viewdiff.faces.feature_map.FeatureMapModel.head`: weight
        [D, C*7*7], bias [D]); a map model needs it before training (it is saved with the weights)."""
        if not self.settings.map_channels:
            raise ValueError("this model reads the embedding vector, not the embedder's map (map_channels=0)")
        self.embedder_head.set(weight, bias)

    @property
    def last_visualization(self) -> dict:
        """Attention maps, token labels and voxel grids of the last forward (CPU tensors; {} before any)."""
        viz = self._visualization
        if not viz:
            return {}
        return {"attention": [w.cpu() for w in viz["attention"]], "token_labels": list(viz["token_labels"]),
                **{k: None if viz[k] is None else viz[k].cpu()
                   for k in ("voxels", "density", "map_change", "learned_change")}}

    def forward(self, src: torch.Tensor, source_pose: torch.Tensor | None = None,
                keypoints_3d: torch.Tensor | None = None, target_pose: torch.Tensor | None = None,
                return_residual: bool = False, multiview_input: bool = False, *,
                src_mirror: torch.Tensor | None = None, feature_map: torch.Tensor | None = None,
                feature_map_mirror: torch.Tensor | None = None, cell_depth: torch.Tensor | None = None,
                angles: torch.Tensor | None = None, pose: torch.Tensor | None = None):
        """feature_map, feature_map_mirror [B, C, 7, 7]: the photo's and the mirrored photo's (flipped back)
        maps, read by a map model (`map_channels` > 0; the photo's map is required there). cell_depth [B, 7, 7]:
        the face's measured surface under each cell (NaN off the face; `viewdiff.faces.face_mesh`), where the
        projection layer places the cells (with `use_face_surface`; None: the mean face surface)."""
        source_pose, target_pose = pose_arguments(source_pose, target_pose, angles, pose)
        if target_pose is None:
            target_pose = torch.zeros_like(source_pose)
        cond = self.pose_embedding(torch.cat([source_pose, target_pose], dim=-1)).to(src.dtype)
        if self.settings.map_channels:
            surface = cell_depth if self.settings.use_face_surface else None
            tokens, labels, (voxels, density) = self._map_tokens(cond, feature_map, feature_map_mirror,
                                                                 keypoints_3d, source_pose, target_pose, surface)
        else:
            tokens, labels, (voxels, density) = self._vector_tokens(src, cond, keypoints_3d, source_pose,
                                                                    target_pose)
        attention = []
        for block in self.blocks:
            tokens, weights = block(tokens, cond)
            if weights is not None:
                attention.append(weights.detach())
        map_change = None
        if self.settings.map_channels:   # the photo's cells -> a change of its map -> through the embedder's head,
            map_change = self.map_tokenizer.detokenize(self.final_norm(tokens[:, 1:1 + self.settings.map_size ** 2]))
            raw_norm = self.embedder_head(feature_map).norm(dim=-1, keepdim=True).detach()   # in unit-embedding terms:
            residual = self.embedder_head(map_change, bias=False) / raw_norm   # the change of normalize(head(map))
        else:
            residual = self.tokenizer.detokenize(self.final_norm(tokens[:, 1:1 + self.tokenizer.num_tokens]))
        if self.cross_view is not None and multiview_input:
            residual = residual + self.cross_view(residual)
        if not self.settings.map_channels:
            residual = self.head(residual)
        learned = residual   # what the tokens add: the learned path
        if self.mirror_weight is not None and src_mirror is not None:
            residual = residual + self.mirror_weight * (src_mirror - src)
        if self.gate is not None:
            gate = self.gate(source_pose, target_pose).to(src.dtype)
            residual, learned = gate * residual, gate * learned
        self._visualization = {"attention": attention, "token_labels": labels, "voxels": voxels,
                               "density": density, "map_change": None if map_change is None else map_change.detach(),
                               "learned_change": learned.detach()}
        out = src + residual
        return (out, residual) if return_residual else out

    def _vector_tokens(self, src, cond, keypoints_3d, source_pose, target_pose):
        """The embedding's chunks (+ the `3D` token) -> (tokens [B, T, W], labels, (voxels, density))."""
        tokens, labels = self.tokenizer.tokenize(src, cond), self.tokenizer.labels
        if self.projection is None or keypoints_3d is None:
            return tokens, labels, (None, None)
        feat3d = self.projection(src, keypoints_3d, source_pose, target_pose)
        tokens = torch.cat([tokens, self.projection_token(feat3d).unsqueeze(1)], dim=1)
        return tokens, labels + ["3D"], (self.projection.last_voxels, self.projection.last_density)

    def _map_tokens(self, cond, feature_map, feature_map_mirror, keypoints_3d, source_pose, target_pose, cell_depth):
        """pose + the photo's cells (+ the mirror's, + the rendered target view's) -> (tokens, labels, grids)."""
        if feature_map is None:
            raise ValueError("this model reads the embedder's 7x7 map: pass feature_map [B, C, 7, 7] (and "
                             "feature_map_mirror), e.g. FaceRecord.feature_map of the shipped w600k_mbf pack")
        if not self.embedder_head.is_set and not self.training:
            raise ValueError("this map model has no embedder head: call set_embedder_head(...) (saved weights "
                             "carry it)")
        tok, grids, cells = self.map_tokenizer, (None, None), feature_map
        if self.projection is not None and keypoints_3d is not None:   # the face seen from the target pose,
            cells = cells + self.projection(feature_map, keypoints_3d, source_pose, target_pose,   # fed back (ViewDiff)
                                            cell_depth=cell_depth)
            grids = (self.projection.last_voxels, self.projection.last_density)
        parts, labels = [self.pose_token(cond).unsqueeze(1), tok.tokenize(cells, "photo")], ["pose"] + tok.labels("photo")
        if feature_map_mirror is not None and self.settings.use_mirror_view:
            parts.append(tok.tokenize(feature_map_mirror, "mirror"))
            labels += tok.labels("mirror")
        return torch.cat([p.to(cond.dtype) for p in parts], dim=1), labels, grids

    def get_trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def get_lora_parameters(self) -> list[nn.Parameter]:
        return lora_parameters(self)

    def freeze_base(self) -> None:
        """Freeze everything except the LoRA parameters (adapter fine-tuning)."""
        if not self.get_lora_parameters():
            raise ValueError("this model has no LoRA layers (built with use_lora_attention=False)")
        mark_only_lora_trainable(self)
