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
    s, b = F.normalize(student, dim=-1), F.normalize(base, dim=-1)
    kl = 0.0   # KL(base || student) of the similarities to the other rows' base outputs
    for i in range(6):
        others = [j for j in range(6) if j != i]
        p, log_q = F.softmax(b[i] @ b[others].T / 0.1, -1), F.log_softmax(s[i] @ b[others].T / 0.1, -1)
        kl = kl + (p * (p.log() - log_q)).sum() / 6
    cos = (1 - F.cosine_similarity(student, base, dim=-1)).mean()
    l2 = (student - base).pow(2).sum(-1).mean()
    assert parts["kl"] == pytest.approx(kl.item(), rel=1e-4)
    assert parts["cos"] == pytest.approx(cos.item(), rel=1e-5)
    assert parts["l2"] == pytest.approx(l2.item(), rel=1e-5)
    assert total.item() == pytest.approx(0.5 * (kl + cos + l2).item(), rel=1e-4) == parts["total"]


def test_kl_term_is_not_zero_by_construction():
    """Unit-length 512-d outputs, each drifting towards another face: the KL is larger than the cosine term (the
    earlier KL over a softmax of one vector's coordinates was ~1/512 of it); a drift of the same size in a
    random direction, which keeps which faces are near, moves it less but not to 0."""
    g = torch.Generator().manual_seed(0)
    base = F.normalize(torch.randn(16, 512, generator=g), dim=-1)
    base = F.normalize(base + 0.8 * base[:1], dim=-1)   # faces that share something: cosines ~0.4
    towards_another = F.normalize(base + 0.18 * base.roll(1, 0), dim=-1)
    _, parts = PriorPreservationLoss(1.0)(towards_another, base)
    assert parts["kl"] > 2 * parts["cos"] > 0.02
    coordinates = F.kl_div(F.log_softmax(towards_another, -1), F.log_softmax(base, -1), log_target=True,
                           reduction="batchmean")
    assert coordinates < 3e-3 * parts["cos"]   # what the old term measured: ~(1 - cos) / 512
    anywhere = F.normalize(base + 0.18 * F.normalize(torch.randn(16, 512, generator=g), dim=-1), dim=-1)
    _, parts = PriorPreservationLoss(1.0)(anywhere, base)
    assert 0.05 * parts["cos"] < parts["kl"] < parts["cos"]


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


def map_model(seed: int = 0) -> EnhancedTransformerDecoderOnly3D:
    """A small map model (4-channel 7x7 maps, a random embedder head) that has moved away from the identity."""
    torch.manual_seed(seed)
    model = EnhancedTransformerDecoderOnly3D(d_model=32, nhead=4, num_layers=1, token_dim=32, voxel_resolution=4,
                                             map_channels=4, dropout=0.0)
    model.set_embedder_head(torch.randn(32, 4 * 49) * 0.1, torch.zeros(32))
    return trained_like(model, seed)


def map_inputs(n: int, seed: int) -> dict[str, torch.Tensor]:
    """Every forward kwarg a map model reads (as `viewdiff.training.datasets.model_inputs` gives them)."""
    from viewdiff.faces.geometry import keypoints_3d_from_pose
    g = torch.Generator().manual_seed(seed)
    source = torch.cat([torch.rand(n, 1, generator=g) * 180 - 90, torch.randn(n, 2, generator=g) * 15], dim=1)
    return {"src": F.normalize(torch.randn(n, 32, generator=g), dim=-1),
            "src_mirror": F.normalize(torch.randn(n, 32, generator=g), dim=-1), "source_pose": source,
            "keypoints_3d": torch.stack([torch.as_tensor(keypoints_3d_from_pose(a.tolist())) for a in source]),
            "target_pose": torch.randn(n, 3, generator=g) * 30,
            "feature_map": torch.randn(n, 4, 7, 7, generator=g),
            "feature_map_mirror": torch.randn(n, 4, 7, 7, generator=g)}


def fit(lambda_prior: float, tmp_path, steps: int = 25) -> tuple[list[float], float]:
    """Train a map model on a task that pulls its outputs to random targets, with the prior against its frozen
    start -> (prior term per step, final mean 1 - cos between the student's and the base's prior outputs)."""
    model = map_model()
    wrapper = EnhancedTransformerWithPrior(model, copy.deepcopy(model), lambda_prior=lambda_prior).train()
    prior = PriorPreservationDataset(wrapper.base_model, map_inputs(64, seed=1), tmp_path / f"p{lambda_prior}.st")
    task = map_inputs(16, seed=2)
    targets = F.normalize(torch.randn(16, 32, generator=torch.Generator().manual_seed(3)), dim=-1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng, terms = np.random.default_rng(0), []
    for _ in range(steps):
        loss, parts = wrapper.compute_loss(task, prior.sample(16, rng), targets,
                                           lambda out, t: (1 - F.cosine_similarity(out, t, dim=-1)).mean())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        terms.append(parts["prior_cos"] + parts["prior_kl"])
    with torch.no_grad():
        drift = 1 - F.cosine_similarity(model.eval()(**prior.inputs), prior.base_out, dim=-1).mean().item()
    return terms, drift


def test_prior_trains_a_map_model_with_its_maps_and_mirror_and_holds_it_to_its_start(tmp_path):
    """The prior samples carry src_mirror and both maps (a map model reads them; the earlier training code
    dropped them, and a map model crashed); the term starts at 0 (student = base), moves as the task pulls
    the model away, and the prior keeps the prior samples' outputs nearer the base's than no prior does."""
    base = map_model()
    inputs = map_inputs(8, seed=1)
    data = PriorPreservationDataset(base, inputs, tmp_path / "s.safetensors")
    with torch.no_grad():
        expected = base.eval()(**inputs)
        without_mirror = base(**{k: v for k, v in inputs.items() if k != "src_mirror"})
    torch.testing.assert_close(data.base_out, expected)
    assert (data.base_out - without_mirror).norm() > 1e-3   # the mirror term is part of the prior's targets
    held, drift_held = fit(1.0, tmp_path)
    free, drift_free = fit(0.0, tmp_path)
    assert held[0] == pytest.approx(0.0, abs=1e-6) and max(held) > 1e-3   # it moves ...
    assert drift_held < 0.7 * drift_free                                   # ... and it holds
