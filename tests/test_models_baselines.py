"""DREAM baseline: out = src + sigmoid(10 (|yaw| / 45 - 1)) * MLP(src), same interface as the transformer."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from viewdiff.models.baselines import DreamResidual


def test_fresh_model_is_the_identity():
    src, angles = torch.randn(4, 128), torch.randn(4, 3) * 60
    out, residual = DreamResidual(d_model=128)(src, angles, return_residual=True)
    assert torch.equal(out, src) and torch.equal(residual, torch.zeros(4, 128))


def test_yaw_gate_values():
    yaws = torch.tensor([0.0, 45.0, -45.0, 90.0, -90.0, 20.0])
    gate = DreamResidual.yaw_gate(torch.stack([yaws, torch.full_like(yaws, 30), torch.zeros(6)], 1))[:, 0]
    assert gate.shape == (6,)
    assert gate[0] < 1e-4 and gate[3] > 0.9999  # frontal untouched, profile fully corrected
    assert gate[1].item() == pytest.approx(0.5) and torch.equal(gate[1], gate[2]) and torch.equal(gate[3], gate[4])
    torch.testing.assert_close(gate, torch.sigmoid(10 * (yaws.abs() / 45 - 1)))  # pitch does not matter


def test_output_formula_and_ignored_inputs():
    torch.manual_seed(0)
    model = DreamResidual(d_model=64, hidden=32)
    with torch.no_grad():
        model.mlp[-1].weight.normal_(std=0.1)
    src, angles = torch.randn(5, 64), torch.randn(5, 3) * 50
    expected = src + DreamResidual.yaw_gate(angles) * model.mlp(src)
    torch.testing.assert_close(model(src, angles), expected)
    same = model(src, angles, keypoints_3d=torch.randn(5, 5, 3), pose=torch.randn(5, 3), multiview_input=True)
    assert torch.equal(same, model(src, angles))  # DREAM always maps to frontal
    with pytest.raises(ValueError, match=r"source_pose must be \[B, 3\]"):
        model(src, angles[:, :2])


def test_config_round_trip():
    model = DreamResidual(d_model=32, hidden=8)
    clone = DreamResidual.from_config(json.loads(json.dumps(model.config)))
    assert clone.config == {"d_model": 32, "hidden": 8, "pose_dim": 3}
    assert DreamResidual(d_model=16).config["hidden"] == 16


def test_learns_a_yaw_gated_correction():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    src = F.normalize(torch.randn(256, 16, generator=g), dim=-1)
    yaw = (torch.rand(256, generator=g) * 2 - 1) * 90
    angles = torch.stack([yaw, torch.zeros(256), torch.zeros(256)], 1)
    offset = torch.randn(16, generator=g) * 0.3
    target = src + DreamResidual.yaw_gate(angles) * offset  # profiles are shifted, frontals are not
    model = DreamResidual(d_model=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    baseline = F.mse_loss(src, target).item()
    for _ in range(150):
        loss = F.mse_loss(model(src, angles), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05 * baseline
