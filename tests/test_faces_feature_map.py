"""The embedder's 7x7 map and its affine head: the map exposed in memory, the head read from the graph."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from viewdiff.embeddings import l2_normalize
from viewdiff.faces.analyzer import FaceAnalyzer
from viewdiff.faces.errors import ModelNotFoundError
from viewdiff.faces.feature_map import FeatureMapModel, apply_head

REPO = Path(__file__).resolve().parent.parent
PACK = REPO / "weights" / "insightface" / "w600k_mbf"


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    fa = FaceAnalyzer()
    return np.stack([fa.analyze(REPO / "assets" / name).aligned_crop
                     for name in ("astronaut.jpg", "t1_face_yaw55.jpg", "cameraman_gray.png")])


def test_head_turns_the_map_into_the_embedding(crops):
    model = FeatureMapModel(PACK / "w600k_mbf.onnx")
    emb, maps = model.run(crops)
    assert emb.shape == (3, 512) and maps.shape == (3, 64, 7, 7)
    assert np.abs(apply_head(model.head, maps) - emb).max() < 1e-3 * np.abs(emb).max()   # affine, exactly
    moved = maps.copy()
    moved[:, :, 3, 3] += 1.0   # one cell changed: the embedding changes by the head's columns of that cell
    assert not np.allclose(apply_head(model.head, moved), emb)
    mirrored_emb, _ = model.run(crops[:, :, ::-1])
    assert float(np.sum(l2_normalize(mirrored_emb[0]) * l2_normalize(emb[0]))) > 0.5   # the same person


def test_models_without_the_map_are_refused():
    with pytest.raises(ModelNotFoundError, match="feature_map"):
        FeatureMapModel(PACK / "det_2.5g.onnx")
