"""PoseEngine on a real analysed photo: the measured surface goes to a map model that takes ``cell_depth``
(its output follows the depth), models without the keyword still run, and the surface is moved into the voxel
grid exactly as the keypoints are."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from viewdiff.demo.engine import PoseEngine
from viewdiff.demo.gallery import Gallery
from viewdiff.faces.face_mesh import keypoints_of
from viewdiff.models.baselines import DreamResidual
from viewdiff.models.transformer import EnhancedTransformerDecoderOnly3D

from model_test_utils import small_map_model

REPO = Path(__file__).resolve().parent.parent
TARGET = np.array([0.0, 0.0, 0.0], np.float32)


@pytest.fixture(scope="module")
def probe(analyzer):
    return analyzer.analyze(REPO / "assets" / "t1_face_yaw55.jpg")   # turned to the image's left: yaw about +60


@pytest.fixture(scope="module")
def gallery(analyzer):
    g = Gallery(None, "test", 512)
    g.add("Tom Hanks", analyzer.analyze(REPO / "assets" / "identities" / "Tom_Hanks_54745.png").embedding)
    return g


def test_a_map_model_gets_the_measured_cell_depth(analyzer, probe, gallery):
    engine = PoseEngine(small_map_model(analyzer.feature_maps.head))
    assert engine.reads_map and engine.takes_cell_depth
    measured = engine.transform(probe, TARGET, gallery)
    deeper = replace(probe, surface=replace(probe.surface, cell_depth=probe.surface.cell_depth - 0.4))
    moved = engine.transform(deeper, TARGET, gallery)
    assert abs(float(moved.transformed[0] - measured.transformed[0])) > 1e-5   # the model read the depth
    again = engine.transform(probe, TARGET, gallery)
    assert float(again.transformed[0]) == float(measured.transformed[0])
    fallback = engine.transform(replace(probe, surface=None), TARGET, gallery)   # no surface: the model's fallback
    assert fallback.surface_grid is None and np.isfinite(fallback.transformed).all()


def test_models_without_the_keyword_or_the_map_run_without_it(analyzer, probe, gallery):
    for model in (DreamResidual(512).eval(),
                  EnhancedTransformerDecoderOnly3D(d_model=512, nhead=4, num_layers=1, voxel_resolution=8).eval()):
        engine = PoseEngine(model)
        assert not engine.takes_cell_depth
        result = engine.transform(probe, TARGET, gallery)
        assert np.isfinite(result.transformed).all()


def test_the_surface_moves_into_the_grid_with_the_keypoints(analyzer, probe, gallery):
    """The surface's 468 vertices go where the grid takes them: its measured keypoints (means of vertices) land
    on the keypoints' marks, and turning a yaw-60 face to frontal brings the nose to the front (depth 0)."""
    result = PoseEngine(small_map_model(analyzer.feature_maps.head)).transform(probe, TARGET, gallery)
    assert result.surface_grid.shape == (468, 3) and result.surface_presence == pytest.approx(probe.surface.presence)
    np.testing.assert_allclose(keypoints_of(result.surface_grid), result.keypoints_grid, atol=1e-4)
    # the drawn surface is where the projection layer places the photo's cells: each on-face cell's point, turned
    # as the layer turns it, lies on the drawn (turned) surface
    model = small_map_model(analyzer.feature_maps.head)
    layer = model.projection
    source, target = torch.as_tensor(probe.source_pose)[None], torch.as_tensor(TARGET)[None]
    _, rotation = layer.grid_frame(torch.zeros(1, 5, 3), source, target)
    points, on_face = layer.surface_points(torch.as_tensor(probe.surface.cell_depth)[None], 1, torch.float32)
    cells = ((points @ rotation.transpose(1, 2))[0][on_face[0]] + 1) / 2 * (layer.resolution - 1)
    nearest = np.linalg.norm(cells.numpy()[:, None] - result.surface_grid[None], axis=-1).min(1)
    assert on_face.sum() > 20 and nearest.max() < 0.3, nearest.max()   # voxels
    nose, eyes = result.keypoints_grid[2], result.keypoints_grid[:2]
    assert nose[2] < eyes[:, 2].min()   # z is depth away from the camera: the nose is nearest at frontal
    assert abs(eyes[0, 2] - eyes[1, 2]) < 1.0   # the eyes level in depth once turned to frontal
