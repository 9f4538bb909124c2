"""Prior preservation: the loss parts, the base-output cache (hit, miss, rebuild when the base changes) and the
fine-tuning wrapper."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from viewdiff.models.transformer import EnhancedTransformerDecoderOnly3D
from viewdiff.training.prior import (BASE_OUT, EnhancedTransformerWithPrior, PriorPreservationDataset,
                                     PriorPreservationLoss, tensors_sha256)

from model_test_utils import batch, trained_like

SMALL = dict(d_model=32, nhead=4, num_layers=2, token_dim=32, voxel_resolution=8)


def test_loss_is_zero_for_identical_outputs_and_matches_its_definition():
    torch.manual_seed(0)
    base = torch.randn(6, 16)
    loss = PriorPreservationLoss(lambda_prior=0.5)
    total, parts = loss(base.clone(), base)
    assert total.item() == pytest.approx(0.0, abs=1e-6)
    assert set(parts) == {"kl", "cos", "l2", "total"} and all(isinstance(v, float) for v in parts.values())

    student = base + 0.3 * torch.randn(6, 16)
    total, parts = loss(student, base)
    p, log_q = F.softmax(base, -1), F.log_softmax(student, -1)
    kl = (p * (p.log() - log_q)).sum(-1).mean()  # KL(base || student)
    cos = (1 - F.cosine_similarity(student, base, dim=-1)).mean()
    l2 = (student - base).pow(2).mean()
    assert parts["kl"] == pytest.approx(kl.item(), rel=1e-5)
    assert parts["cos"] == pytest.approx(cos.item(), rel=1e-5)
    assert parts["l2"] == pytest.approx(l2.item(), rel=1e-5)
    assert total.item() == pytest.approx(0.5 * (kl + cos + l2).item(), rel=1e-5) == parts["total"]


def test_gradient_flows_to_the_student_only():
    student = torch.randn(4, 8, requires_grad=True)
    base = torch.randn(4, 8, requires_grad=True)
    PriorPreservationLoss(1.0)(student, base)[0].backward()
    assert student.grad is not None and base.grad is None


def small_model(seed: int = 0) -> EnhancedTransformerDecoderOnly3D:
    torch.manual_seed(seed)
    model = EnhancedTransformerDecoderOnly3D(d_model=32, nhead=4, num_layers=1, token_dim=32, voxel_resolution=8)
    with torch.no_grad():
        model.head.weight.normal_(std=0.1)  # a non-identity base model
    return model


def prior_inputs(n: int = 12, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"src": torch.randn(n, 32, generator=g), "angles": torch.randn(n, 3, generator=g) * 30,
            "keypoints_3d": torch.randn(n, 5, 3, generator=g) * 0.4, "pose": None}


def test_dataset_builds_once_then_hits_the_cache(tmp_path):
    model = small_model().train()
    inputs = prior_inputs()
    path = tmp_path / "prior" / "samples.safetensors"
    first = PriorPreservationDataset(model, inputs, path, batch_size=5)
    assert not first.cache_hit and path.is_file()
    assert model.training  # the base model's mode is restored
    model.eval()
    with torch.no_grad():
        expected = model(**{k: v for k, v in inputs.items() if v is not None})
    torch.testing.assert_close(first.base_out, expected)  # built in eval mode, in batches
    assert "pose" not in first.inputs and len(first) == 12

    second = PriorPreservationDataset(model, inputs, path)
    assert second.cache_hit
    assert torch.equal(second.base_out, first.base_out)
    item = second[3]
    assert set(item) == {"src", "angles", "keypoints_3d", BASE_OUT} and item[BASE_OUT].shape == (32,)


def test_cache_is_rebuilt_when_the_base_model_or_the_inputs_change(tmp_path):
    model, inputs = small_model(), prior_inputs()
    path = tmp_path / "samples.safetensors"
    old = PriorPreservationDataset(model, inputs, path).base_out
    with torch.no_grad():
        model.head.bias.add_(0.5)  # new base weights
    changed = PriorPreservationDataset(model, inputs, path)
    assert not changed.cache_hit
    with torch.no_grad():   # the new base model's outputs (the pose gate scales the head's change)
        expected = model.eval()(**{k: v for k, v in inputs.items() if v is not None})
    torch.testing.assert_close(changed.base_out, expected)
    assert not torch.allclose(changed.base_out, old)
    assert PriorPreservationDataset(model, inputs, path).cache_hit
    assert not PriorPreservationDataset(model, prior_inputs(seed=1), path).cache_hit  # new inputs

    path.write_bytes(b"not a safetensors file")
    rebuilt = PriorPreservationDataset(model, inputs, path)
    assert not rebuilt.cache_hit and PriorPreservationDataset(model, inputs, path).cache_hit


def test_sample_draws_random_batches(tmp_path):
    data = PriorPreservationDataset(small_model(), prior_inputs(), tmp_path / "s.safetensors")
    batch = data.sample(5, np.random.default_rng(0))
    assert batch["src"].shape == (5, 32) and batch[BASE_OUT].shape == (5, 32)
    rows = [int(np.flatnonzero((data.inputs["src"] == row).all(1))[0]) for row in batch["src"]]
    assert len(set(rows)) == 5  # without replacement
    torch.testing.assert_close(batch[BASE_OUT], data.base_out[rows])
    assert data.sample(30, np.random.default_rng(0))["src"].shape == (30, 32)  # with replacement


def test_inputs_must_share_their_length(tmp_path):
    with pytest.raises(ValueError, match="one length"):
        PriorPreservationDataset(small_model(), {"src": torch.zeros(3, 32), "angles": torch.zeros(4, 3)},
                                 tmp_path / "x.safetensors")


def test_hash_sees_names_values_and_dtypes():
    a = [("w", torch.zeros(3))]
    assert tensors_sha256(a) == tensors_sha256([("w", torch.zeros(3))])
    assert tensors_sha256(a) != tensors_sha256([("v", torch.zeros(3))])
    assert tensors_sha256(a) != tensors_sha256([("w", torch.tensor([0.0, 0.0, 1e-30]))])
    assert tensors_sha256(a) != tensors_sha256([("w", torch.zeros(3, dtype=torch.float64))])


def test_prior_wrapper_freezes_the_base_and_reports_float_losses():
    torch.manual_seed(0)
    base = trained_like(EnhancedTransformerDecoderOnly3D(**SMALL, dropout=0.0))
    model = copy.deepcopy(base)
    wrapper = EnhancedTransformerWithPrior(model, base, lambda_prior=0.5).train()
    assert not base.training and model.training
    assert not any(p.requires_grad for p in base.parameters())
    x, target = batch(), batch(seed=1)["src"]
    loss, parts = wrapper.compute_loss(x, None, target, F.mse_loss)
    assert set(parts) >= {"original_loss", "prior_loss", "total_loss"}
    assert all(isinstance(v, float) for v in parts.values())
    assert parts["prior_loss"] == pytest.approx(0.0, abs=1e-6)  # student == base so far
    assert parts["total_loss"] == pytest.approx(parts["original_loss"] + parts["prior_loss"])
    loss.backward()
    assert all(p.grad is None for p in base.parameters())
    assert any(p.grad is not None for p in model.parameters())

    prior = batch(seed=2)
    with torch.no_grad():
        prior_out = base(**prior)
    with_cache = wrapper.compute_loss(x, {**prior, BASE_OUT: prior_out}, target, F.mse_loss)[1]
    without = wrapper.compute_loss(x, prior, target, F.mse_loss)[1]
    assert with_cache["prior_loss"] == pytest.approx(without["prior_loss"], abs=1e-7)
    shifted = wrapper.compute_loss(x, {**prior, BASE_OUT: prior_out + 1}, target, F.mse_loss)[1]
    assert shifted["prior_loss"] > 0.1  # the cached base outputs are what the student is pulled to
    with pytest.raises(ValueError, match="separate"):
        EnhancedTransformerWithPrior(model, model)
