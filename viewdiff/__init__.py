"""viewdiff-face: pose-normalising face-embedding models.

The model names below are exported lazily (PEP 562), so `import viewdiff` does not import torch;
the face pipeline, data and gallery modules are imported directly, e.g.
`from viewdiff.face_pipeline import FaceAnalyzer`.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "LoRALinearLayer": "lora_layers", "inject_lora": "lora_layers", "save_lora_weights": "lora_layers",
    "load_lora_weights": "lora_layers",
    "PoseConditionedLoRAAttention": "pose_lora_attention", "PoseEmbedding": "pose_lora_attention",
    "EmbeddingTokenizer": "pose_lora_attention",
    "AdaptiveLayerNorm": "adaptive_norm",
    "LightweightFaceProjectionLayer": "face_projection_layer",
    "CrossViewAttention": "multiview_utils", "build_multiview_batches": "multiview_utils",
    "PriorPreservationLoss": "prior_preservation", "PriorPreservationDataset": "prior_preservation",
    "EnhancedTransformerDecoderOnly3D": "enhanced_transformer_3d",
    "EnhancedTransformerWithPrior": "enhanced_transformer_3d",
    "DreamResidual": "baselines",
    "save_pretrained": "checkpoint", "load_pretrained": "checkpoint", "WeightsError": "checkpoint",
    "WeightsNotFoundError": "checkpoint", "WeightsMismatchError": "checkpoint",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'viewdiff' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"viewdiff.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
