"""Embedding arithmetic shared by the face pipeline, training, evaluation and the demo (NumPy only).

Torch code normalises with ``torch.nn.functional.normalize``; NumPy code uses `l2_normalize`.
"""
from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """x / ||x|| along `axis` (zero rows stay zero). x: [..., D] -> same shape and dtype."""
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a [M, D], b [N, D] -> [M, N] cosine similarities."""
    return l2_normalize(a) @ l2_normalize(b).T
