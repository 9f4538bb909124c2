"""viewdiff-face: pose-normalising face-embedding models.

The model names below are exported lazily (PEP 562), so `import viewdiff` does not import torch;
the face pipeline, data and gallery modules are imported directly, e.g.
`from viewdiff.face_pipeline import FaceAnalyzer`.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "LoRALinearLayer": "models.lora", "inject_lora": "models.lora",
    "PoseConditionedLoRAAttention": "models.pose_attention", "PoseEmbedding": "models.pose_attention",
    "EmbeddingTokenizer": "models.pose_attention",
    "AdaptiveLayerNorm": "models.adaptive_norm",
    "LightweightFaceProjectionLayer": "models.projection",
    "CrossViewAttention": "models.cross_view",
    "EnhancedTransformerDecoderOnly3D": "models.transformer",
    "DreamResidual": "models.baselines",
    "save_pretrained": "models.checkpoint", "load_pretrained": "models.checkpoint", "WeightsError": "models.checkpoint",
    "WeightsNotFoundError": "models.checkpoint", "WeightsMismatchError": "models.checkpoint",
    "save_lora_weights": "models.checkpoint", "load_lora_weights": "models.checkpoint",
    "PriorPreservationLoss": "training.prior", "PriorPreservationDataset": "training.prior",
    "EnhancedTransformerWithPrior": "training.prior",
    "build_multiview_batches": "training.multiview",
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
