"""viewdiff-face: pose-aware face-embedding transformation.

Packages (dependencies point one way: demo -> training -> faces / models -> paths, embeddings):
`viewdiff.models` (torch pose transformers), `viewdiff.faces` (photo -> FaceRecord, no torch),
`viewdiff.training` (records, datasets, train / evaluate / extract commands, metrics), `viewdiff.demo`
(the Gradio demo's logic); `viewdiff.paths` (folders, environment variables) and `viewdiff.embeddings`
(`l2_normalize`). The public names below are exported lazily (PEP 562): `import viewdiff` imports no
torch, cv2, insightface or gradio until a name is used.
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
    "TransformerConfig": "models.config", "TrainConfig": "training.train",
    "FaceAnalyzer": "faces.analyzer", "FaceRecord": "faces.records", "FaceAnalysisError": "faces.errors",
    "l2_normalize": "embeddings", "shared_dir": "paths",
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
