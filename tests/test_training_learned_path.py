"""The learned-path diagnostics: where the tokens' change points, and the shuffle test of its face dependence."""
from __future__ import annotations

import numpy as np
import torch

from viewdiff.models.transformer import EnhancedTransformerDecoderOnly3D
from viewdiff.training.learned_path import learned_change, path_stats
from viewdiff.training.records import FaceRecords


def _rows(n: int = 24, d: int = 32, c: int = 4) -> FaceRecords:
    rng = np.random.default_rng(0)
    unit = lambda x: (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)   # noqa: E731
    rows = FaceRecords(path=np.array([f"p{i}.jpg" for i in range(n)]), identity=np.array([f"id{i % 6}" for i in range(n)]),
                       view=np.full(n, "profile"), fold=np.ones(n, int), found=np.ones(n, bool),
                       embedding=unit(rng.normal(size=(n, d))), embedding_mirror=unit(rng.normal(size=(n, d))),
                       source_pose=np.tile(np.float32([70.0, 0.0, 0.0]), (n, 1)),
                       true_pose=np.full((n, 3), np.nan, np.float32),
                       keypoints_3d=rng.normal(scale=0.5, size=(n, 5, 3)).astype(np.float32),
                       **{k: np.zeros(shape, np.float32) for k, shape in
                          (("keypoints", (n, 5, 2)), ("bbox", (n, 4)), ("pose_features", (n, 7)))})
    rows.feature_map = rng.normal(size=(n, c, 7, 7)).astype(np.float32)
    rows.feature_map_mirror = rng.normal(size=(n, c, 7, 7)).astype(np.float32)
    return rows


def _model(seed: int = 0) -> EnhancedTransformerDecoderOnly3D:
    torch.manual_seed(seed)
    model = EnhancedTransformerDecoderOnly3D(d_model=32, num_layers=1, nhead=2, token_dim=16, map_channels=4).eval()
    model.set_embedder_head(torch.randn(32, 4 * 49), torch.randn(32))
    return model


def test_the_shuffle_test_tells_a_face_dependent_change_from_a_constant_one():
    rows = _rows()
    templates = {f"id{k}": row for k, row in enumerate(np.eye(32, dtype=np.float32)[:6])}
    model = _model()
    with torch.no_grad():   # a fold that only adds its bias: the same map change for every face
        model.map_tokenizer.fold.bias.normal_()
    constant = path_stats(model, rows, templates)
    assert constant["cos_with_shuffled"] > 0.99
    with torch.no_grad():   # a fold that reads the tokens: the change follows the face's cells
        model.map_tokenizer.fold.weight.normal_()
        model.map_tokenizer.fold.bias.zero_()
    reading = path_stats(model, rows, templates)
    assert reading["cos_with_shuffled"] < 0.9 and reading["n"] == len(rows)


def test_the_learned_change_is_what_the_model_adds_beyond_the_photo_and_its_mirror():
    rows = _rows()
    model = _model()
    with torch.no_grad():
        model.map_tokenizer.fold.weight.normal_()
    out, learned = learned_change(model, rows)
    src, mirror = (torch.as_tensor(rows.embedding), torch.as_tensor(rows.embedding_mirror))
    gate = model.gate(torch.as_tensor(rows.source_pose), torch.zeros(len(rows), 3))
    torch.testing.assert_close(out - learned, src + gate * model.mirror_weight * (mirror - src))
    stats = path_stats(model, rows, {f"id{k}": np.eye(32, dtype=np.float32)[k] for k in range(6)})
    assert -1 <= stats["cos_target_tangent"] <= 1 and stats["size_vs_gap"] > 0


def test_the_surface_share_is_what_the_measured_surface_changes_in_the_learned_path():
    rows, model = _rows(), _model()
    with torch.no_grad():
        model.map_tokenizer.fold.weight.normal_()
    templates = {f"id{k}": np.eye(32, dtype=np.float32)[k] for k in range(6)}
    assert "surface_share" not in path_stats(model, rows, templates)    # no measured surface: nothing to compare
    rows.cell_depth = np.random.default_rng(1).normal(scale=0.3, size=(len(rows), 7, 7)).astype(np.float32)
    share = path_stats(model, rows, templates)["surface_share"]
    assert 0 < share < 10
    _, measured = learned_change(model, rows)
    _, average = learned_change(model, rows, average_face=True)
    assert not torch.allclose(measured, average)   # the depths reach the learned path
