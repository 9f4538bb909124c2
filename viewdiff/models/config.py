"""`TransformerConfig`: the one source of `EnhancedTransformerDecoderOnly3D`'s settings (names and defaults).

`EnhancedTransformerDecoderOnly3D(**kwargs)` takes exactly these fields as keywords; `model.config` is
`dataclasses.asdict` of it (what `config.json` stores). The defaults are the training recipe's (the shipped
model's, but for its map settings): `viewdiff.training.train.TrainConfig`'s model flags take theirs from here.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TransformerConfig:
    d_model: int = 512
    """Width D of the face embedding: 128 (dlib) or 512 (ArcFace); divisible by `num_tokens`."""
    nhead: int = 8
    """Attention heads per block (and in the cross-view attention)."""
    num_layers: int = 2
    """Transformer blocks (adaLN -> attention -> adaLN -> MLP)."""
    num_keypoints: int = 5
    """3D keypoints K per face fed to the projection layer (`keypoints_3d [B, K, 3]`)."""
    pose_dim: int = 3
    """Angles per pose: (yaw, pitch, roll) in degrees."""
    use_lora_attention: bool = True
    """Pose-conditioned LoRA attention (else plain multi-head attention)."""
    use_projection_layer: bool = True
    """The 2D -> 3D -> 2D voxel projection and its `3D` token (used when keypoints are given)."""
    use_cross_view: bool = False
    """Attention across the `n_views` views of one identity (`multiview_input=True` batches)."""
    n_views: int = 4
    """Views per identity group of a multi-view batch."""
    rank: int = 4
    """LoRA rank of the q/k/v updates."""
    lora_alpha: float = 1.0
    """LoRA scale numerator: the update is scaled by lora_alpha / rank."""
    voxel_resolution: int = 8
    """Voxel grid side R of the projection layer (memory and compute grow with R^3: 8 keeps CPU training at
    ~1 min per CFP fold)."""
    dropout: float = 0.1
    """Dropout after attention and MLP in every block."""
    num_tokens: int = 16
    """Chunks the embedding is cut into (one token each; models that read the embedding vector)."""
    map_channels: int = 0
    """Channels C of the embedder's last spatial map that the model reads instead of the embedding vector
    (64 for the shipped w600k_mbf): the `map_size`^2 cells of the photo (and of its mirrored photo) are the
    tokens, the change is made on the map and turned into an embedding change by the embedder's own frozen
    affine head (`EmbedderHead`, set with `set_embedder_head`). 0: the embedding cut into `num_tokens`
    chunks (the earlier models)."""
    map_size: int = 7
    """Side of that map: 7x7 cells over the 112x112 aligned face."""
    token_dim: int = 64
    """Token width inside the transformer."""
    use_face_surface: bool = True
    """A map model's projection layer places the photo's features on the face's own measured surface (`cell_depth`,
    MediaPipe Face Mesh); else on the mean face surface, the same for every face (`projection.MEAN_CELL_DEPTH`)."""
    use_adaptive_norm: bool = True
    """adaLN conditioned on the poses (else plain LayerNorm)."""
    use_pose_gate: bool = True
    """Scale the whole change by a learned gate of the yaw change (`PoseGate`): a face already at the
    target yaw passes through unchanged, a profile mapped to frontal moves as far as training says."""
    use_mirror_view: bool = True
    """Take the mirrored photo's embedding (`src_mirror`, the same face seen at the mirrored yaw) as a
    second view, mixed in with a learned weight (0.5 at init: the mean of the two views); a map model also
    reads the mirror's cells (`feature_map_mirror`)."""
