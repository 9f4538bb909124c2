"""The pose-normalising transformer: contract, optional inputs, visualisation, LoRA freezing, and a small
end-to-end fit of a pose-dependent mapping."""
from __future__ import annotations

import inspect
import json
import math
import time
from dataclasses import asdict, fields

import pytest
import torch
import torch.nn.functional as F

from viewdiff.models.adaptive_norm import AdaptiveLayerNorm
from viewdiff.models.config import TransformerConfig
from viewdiff.models.transformer import EnhancedTransformerDecoderOnly3D

from model_test_utils import batch, trained_like

SMALL = dict(d_model=32, nhead=4, num_layers=2, token_dim=32, voxel_resolution=8)


@pytest.mark.parametrize("lora,projection,cross_view", [(True, True, False), (False, True, False),
                                                         (True, False, True), (False, False, False)])
def test_fresh_model_is_the_identity_map(lora, projection, cross_view):
    torch.manual_seed(0)
    model = EnhancedTransformerDecoderOnly3D(**SMALL, use_lora_attention=lora, use_projection_layer=projection,
                                             use_cross_view=cross_view, n_views=2)
    x = batch()
    out, residual = model(**x, return_residual=True, multiview_input=cross_view)
    assert out.shape == (4, 32) and residual.shape == (4, 32)
    assert torch.equal(out, x["src"]) and torch.equal(residual, torch.zeros(4, 32))


def test_default_model_maps_512_d_embeddings():
    model = EnhancedTransformerDecoderOnly3D().eval()
    assert model.config["d_model"] == 512 and model.config["voxel_resolution"] == 8   # the training recipe's
    out = model(**batch(2, 512))
    assert out.shape == (2, 512)
    viz = model.last_visualization
    assert len(viz["attention"]) == 2 and viz["attention"][0].shape == (2, 8, 18, 18)
    assert viz["voxels"].shape == (2, 8, 8, 8, 8)


def test_output_is_src_plus_residual_and_depends_on_the_target_pose():
    model = trained_like(EnhancedTransformerDecoderOnly3D(**SMALL, dropout=0.0)).eval()
    x = batch()
    x["angles"][:, 0] = torch.tensor([70.0, -80, 60, 90])   # turned faces: the yaw gate is open
    out, residual = model(**x, return_residual=True)
    torch.testing.assert_close(out, x["src"] + residual)
    assert (model(**{**x, "pose": x["pose"] + 30}) - out).abs().max() > 1e-3
    assert (model(**{**x, "angles": x["angles"] + 30}) - out).abs().max() > 1e-3
    assert (model(**{**x, "keypoints_3d": x["keypoints_3d"] + 0.2}) - out).abs().max() > 1e-4


def test_missing_inputs_follow_the_documented_rule():
    model = trained_like(EnhancedTransformerDecoderOnly3D(**SMALL)).eval()
    x = batch()
    frontal = {**x, "pose": torch.zeros(4, 3)}
    assert torch.equal(model(**{**x, "pose": None}), model(**frontal))
    no_kp = model(x["src"], x["angles"], pose=x["pose"])  # no keypoints: no 3D token, no voxels
    assert torch.isfinite(no_kp).all()
    viz = model.last_visualization
    assert viz["voxels"] is None and viz["density"] is None and "3D" not in viz["token_labels"]
    assert viz["attention"][0].shape == (4, 4, 17, 17)
    without_projection = EnhancedTransformerDecoderOnly3D(**SMALL, use_projection_layer=False)
    without_projection.load_state_dict({k: v for k, v in model.state_dict().items()
                                        if not k.startswith("projection")})
    torch.testing.assert_close(without_projection.eval()(**x), no_kp)  # keypoints ignored without the layer
    x["keypoints_3d"][1] = float("nan")  # a face without 3D keypoints in a batch
    assert torch.isfinite(model(**x)).all()


def test_last_visualization_contract():
    model = EnhancedTransformerDecoderOnly3D(**SMALL)
    assert model.last_visualization == {}
    model(**batch(3))
    assert model.last_visualization["attention"] == []   # training runs the fused kernel: no weights to keep
    model.eval()
    model(**batch(3))
    viz = model.last_visualization
    assert viz["token_labels"] == ["pose"] + [f"e{i}" for i in range(16)] + ["3D"]
    assert len(viz["attention"]) == 2
    for weights in viz["attention"]:
        assert weights.shape == (3, 4, 18, 18) and weights.device.type == "cpu" and not weights.requires_grad
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, 18))
    assert viz["voxels"].shape == (3, 8, 8, 8, 8) and viz["density"].shape == (3, 1, 8, 8, 8)
    assert not viz["voxels"].requires_grad
    plain = EnhancedTransformerDecoderOnly3D(**SMALL, use_lora_attention=False).eval()
    plain(**batch(3))
    torch.testing.assert_close(plain.last_visualization["attention"][0].sum(-1), torch.ones(3, 4, 18))


def test_pose_changes_the_attention_maps():
    model = EnhancedTransformerDecoderOnly3D(**SMALL).eval()
    x = batch()
    model(**x)
    before = model.last_visualization["attention"][0]
    model(**{**x, "pose": x["pose"] + 45})
    assert (model.last_visualization["attention"][0] - before).abs().max() > 1e-4


def test_adaptive_norm_starts_as_layer_norm_and_is_modulated_by_the_condition():
    norm = AdaptiveLayerNorm(16, 8)
    x, cond = torch.randn(2, 5, 16), torch.randn(2, 8)
    torch.testing.assert_close(norm(x, cond), F.layer_norm(x, (16,)))
    with torch.no_grad():
        norm.modulation.weight.normal_()
    shift, scale = norm.modulation(cond).chunk(2, dim=-1)
    torch.testing.assert_close(norm(x, cond), F.layer_norm(x, (16,)) * (1 + scale[:, None]) + shift[:, None])
    torch.testing.assert_close(norm(x[:, 0], cond), F.layer_norm(x[:, 0], (16,)) * (1 + scale) + shift)


def test_config_round_trip():
    model = EnhancedTransformerDecoderOnly3D(**SMALL, rank=8, use_cross_view=True, n_views=3)
    config = json.loads(json.dumps(model.config))
    clone = EnhancedTransformerDecoderOnly3D.from_config(config)
    assert clone.config == model.config
    clone.load_state_dict(model.state_dict())
    model.eval(), clone.eval()
    assert torch.equal(clone(**batch(3), multiview_input=True), model(**batch(3), multiview_input=True))


def test_freeze_base_leaves_only_lora_trainable():
    model = trained_like(EnhancedTransformerDecoderOnly3D(**SMALL))
    lora = model.get_lora_parameters()
    assert len(lora) == 2 * 3 * 2  # (down, up) x (q, k, v) x layers
    assert len(model.get_trainable_parameters()) == len(list(model.parameters()))  # full training by default
    model.freeze_base()
    assert {id(p) for p in model.get_trainable_parameters()} == {id(p) for p in lora}
    model(**batch()).pow(2).sum().backward()
    lora_ids = {id(p) for p in lora}
    for name, p in model.named_parameters():
        if id(p) in lora_ids:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name
    with pytest.raises(ValueError, match="no LoRA layers"):
        EnhancedTransformerDecoderOnly3D(**SMALL, use_lora_attention=False).freeze_base()


def test_cross_view_needs_whole_groups():
    model = trained_like(EnhancedTransformerDecoderOnly3D(**SMALL, use_cross_view=True, n_views=2)).eval()
    x = batch(4)
    mixed = model(**x, multiview_input=True)
    assert not torch.allclose(mixed, model(**x))  # the views of one identity are mixed
    with pytest.raises(ValueError, match="multiple of n_views"):
        model(**batch(3), multiview_input=True)
    no_cross_view = EnhancedTransformerDecoderOnly3D(**SMALL)
    assert no_cross_view(**batch(3), multiview_input=True).shape == (3, 32)  # ignored without the layer


def test_runs_under_cpu_autocast():
    model = trained_like(EnhancedTransformerDecoderOnly3D(**SMALL))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**batch())
    assert out.shape == (4, 32) and torch.isfinite(out.float()).all()
    out.float().sum().backward()


def pose_task(n: int, d: int, seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Synthetic pose-dependent mapping: the embedding at yaw y is the frontal one with each pair of
    coordinates rotated by y, so mapping back to frontal needs both the embedding and the pose."""
    g = torch.Generator().manual_seed(seed)
    frontal = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    yaw = (torch.rand(n, generator=g) * 2 - 1) * 90
    c, s = torch.cos(torch.deg2rad(yaw))[:, None], torch.sin(torch.deg2rad(yaw))[:, None]
    x, y = frontal[:, 0::2], frontal[:, 1::2]
    src = torch.stack([c * x - s * y, s * x + c * y], dim=-1).flatten(1)
    angles = torch.stack([yaw, torch.zeros(n), torch.zeros(n)], dim=1)
    return {"src": src, "angles": angles, "keypoints_3d": torch.randn(n, 5, 3, generator=g) * 0.3}, frontal


def test_learns_a_pose_dependent_mapping_quickly():
    torch.manual_seed(0)
    inputs, target = pose_task(128, 32, seed=0)
    model = EnhancedTransformerDecoderOnly3D(**{**SMALL, "num_layers": 1}, dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    identity_loss = F.mse_loss(inputs["src"], target).item()
    start = time.thread_time()  # CPU time of this thread: not inflated by other processes
    for _ in range(100):
        loss = F.mse_loss(model(**inputs), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seconds = time.thread_time() - start
    assert loss.item() < 0.1 * identity_loss, (loss.item(), identity_loss)
    assert seconds < 20, f"{seconds:.1f} s of CPU time"


def test_transformer_config_is_the_one_source_of_the_settings():
    model = EnhancedTransformerDecoderOnly3D(**SMALL, rank=8)
    assert model.settings == TransformerConfig(**SMALL, rank=8)
    assert model.config == asdict(model.settings) and list(model.config) == [f.name for f in fields(TransformerConfig)]
    params = inspect.signature(EnhancedTransformerDecoderOnly3D).parameters
    assert {name: p.default for name, p in params.items()} == asdict(TransformerConfig())
    assert EnhancedTransformerDecoderOnly3D.from_config(model.settings).config == model.config
    with pytest.raises(TypeError, match="unexpected keyword argument 'no_such_setting'"):
        EnhancedTransformerDecoderOnly3D(no_such_setting=1)


def test_source_and_target_pose_names_and_their_old_aliases():
    model = trained_like(EnhancedTransformerDecoderOnly3D(**SMALL, dropout=0.0)).eval()
    x = batch()
    new = model(x["src"], source_pose=x["angles"], keypoints_3d=x["keypoints_3d"], target_pose=x["pose"])
    assert torch.equal(new, model(**x))  # angles= / pose= are the documented aliases
    assert torch.equal(new, model(x["src"], x["angles"], x["keypoints_3d"], x["pose"]))  # positional order unchanged
    with pytest.raises(TypeError, match="source pose once"):
        model(x["src"], x["angles"], angles=x["angles"])
    with pytest.raises(TypeError, match="target pose once"):
        model(x["src"], x["angles"], target_pose=x["pose"], pose=x["pose"])
    with pytest.raises(TypeError, match="needs the source pose"):
        model(x["src"])


def test_pose_gate_keeps_a_face_at_its_target_pose_and_opens_for_large_changes():
    model = trained_like(EnhancedTransformerDecoderOnly3D(**SMALL, dropout=0.0)).eval()
    x = batch()
    x["angles"][:, 0] = torch.tensor([70.0, -80, 60, 90])
    same = model(x["src"], x["angles"], x["keypoints_3d"], x["angles"])   # target pose = source pose
    frontal = model(x["src"], x["angles"], x["keypoints_3d"], torch.zeros(4, 3))
    torch.testing.assert_close(same, x["src"])   # no yaw change: the face passes through exactly
    assert (frontal - x["src"]).norm(dim=1).min() > 0
    profile = torch.tensor([[80.0, 0, 0], [-75, 5, 0], [0, 0, 0], [10, 0, 0]])
    gate = model.gate(profile, torch.zeros(4, 3)).squeeze(1)
    assert gate[0] > 0.9 and gate[1] > 0.9 and gate[2] == 0 and 0 < gate[3] < 0.05
    # a pitch-only change (looking up or down, never trained on) stays closed: Pointing'04's tilted frontals
    tilted = model.gate(torch.tensor([[0.0, 60, 0], [5, -90, 20]]), torch.zeros(2, 3)).squeeze(1)
    assert tilted[0] == 0 and tilted[1] < 0.02   # only the 5-degree yaw change counts
    # however wide training makes it (CFP widens it to ~28 degrees), no yaw change still means no change
    with torch.no_grad():
        model.gate.log_width.fill_(math.log(28.0))
    wide = model.gate(torch.tensor([[0.0, 0, 0], [9, 85, 0], [90, 0, 0]]), torch.zeros(3, 3)).squeeze(1)
    assert wide[0] == 0 and wide[1] < 0.1 and 0.75 < wide[2] < 1
    ungated = EnhancedTransformerDecoderOnly3D(**SMALL, use_pose_gate=False)
    assert ungated.gate is None and "gate.centre_units" not in ungated.state_dict()


def test_mirror_view_is_mixed_in_with_a_learned_weight_starting_at_the_mean_of_the_views():
    model = EnhancedTransformerDecoderOnly3D(**SMALL, dropout=0.0).eval()
    x = batch()
    mirror = F.normalize(torch.randn(4, 32), dim=-1)
    profile = torch.tensor([[80.0, 0, 0]] * 4)
    assert model.mirror_weight.item() == 0.5            # a fresh model averages the two views
    gate = model.gate(profile, torch.zeros(4, 3))
    expected = x["src"] + gate * 0.5 * (mirror - x["src"])
    torch.testing.assert_close(model(x["src"], profile, src_mirror=mirror), expected)
    torch.testing.assert_close(model(x["src"], profile), x["src"])                       # no mirror: no term
    out = model(x["src"], profile, src_mirror=mirror)
    out.sum().backward()
    assert model.mirror_weight.grad is not None and model.gate.centre_units.grad is not None
    no_mirror = EnhancedTransformerDecoderOnly3D(**SMALL, use_mirror_view=False)
    assert no_mirror.mirror_weight is None
    torch.testing.assert_close(no_mirror.eval()(x["src"], profile, src_mirror=mirror), x["src"])


def map_model(**kw):
    torch.manual_seed(0)
    model = EnhancedTransformerDecoderOnly3D(d_model=32, num_layers=1, voxel_resolution=8, map_channels=4,
                                             **kw).eval()
    model.set_embedder_head(torch.randn(32, 4 * 49), torch.randn(32))
    return model


def test_map_model_reads_the_cells_and_changes_the_embedding_through_the_embedders_head():
    from viewdiff.faces.geometry import keypoints_3d_from_pose
    model = map_model()
    src, maps, mirror = torch.randn(2, 32), torch.randn(2, 4, 7, 7), torch.randn(2, 4, 7, 7)
    kp = torch.as_tensor(keypoints_3d_from_pose([70.0, 0.0, 0.0]))[None].repeat(2, 1, 1)
    profile = torch.tensor([[70.0, 0.0, 0.0]] * 2)
    out = model(src, profile, kp, None, src_mirror=src, feature_map=maps, feature_map_mirror=mirror)
    assert torch.allclose(out, src)   # fresh: the fold is zero and the mirror term sees the same vector
    viz = model.last_visualization
    assert viz["token_labels"][:2] == ["pose", "photo 0,0"] and len(viz["token_labels"]) == 1 + 2 * 49
    assert viz["attention"][0].shape[-1] == 99 and viz["voxels"] is not None and viz["map_change"].shape == (2, 4, 7, 7)
    with torch.no_grad():
        model.map_tokenizer.fold.weight.normal_()
    out, residual = model(src, profile, kp, None, src_mirror=src, feature_map=maps, feature_map_mirror=mirror,
                          return_residual=True)
    change = model.last_visualization["map_change"]
    gate = model.gate(profile, torch.zeros(2, 3))
    raw_norm = model.embedder_head(maps).norm(dim=-1, keepdim=True)   # the change of the unit embedding
    assert torch.allclose(residual, gate * (change.flatten(1) @ model.embedder_head.weight.T) / raw_norm, atol=1e-4)
    assert torch.allclose(model.last_visualization["learned_change"], residual, atol=1e-6)   # src_mirror = src
    assert not torch.allclose(out, src)
    with pytest.raises(ValueError, match="feature_map"):
        model(src, profile, kp)


def test_map_model_saves_its_head_and_old_vector_configs_still_build(tmp_path):
    from viewdiff.models.checkpoint import load_pretrained, save_pretrained
    model = map_model()
    loaded, _ = load_pretrained(save_pretrained(model, tmp_path / "m"), embedding_dim=32)
    assert torch.equal(loaded.embedder_head.weight, model.embedder_head.weight)
    config = {k: v for k, v in EnhancedTransformerDecoderOnly3D(d_model=32).config.items()
              if k not in ("map_channels", "map_size")}   # a config.json written before the map model
    assert EnhancedTransformerDecoderOnly3D.from_config(config).settings.map_channels == 0
    with pytest.raises(ValueError, match="no embedder head"):
        EnhancedTransformerDecoderOnly3D(d_model=32, num_layers=1, map_channels=4).eval()(
            torch.randn(1, 32), torch.zeros(1, 3), feature_map=torch.randn(1, 4, 7, 7))


def test_one_zero_point_on_the_learned_path_so_every_part_gets_a_first_order_gradient():
    """Only the fold starts at zero; LoRA's up, adaLN's modulation and the projection's output start small, so
    one step on the fold gives every other part a gradient (four zeros in series starved them, issue 25)."""
    model = map_model().train()
    zero = [name for name, p in model.named_parameters() if p.dim() > 1 and not p.abs().sum()]
    assert zero == ["map_tokenizer.fold.weight"]
    src, maps, mirror = torch.randn(4, 32), torch.randn(4, 4, 7, 7), torch.randn(4, 4, 7, 7)
    kp = torch.randn(4, 5, 3) * 0.5
    profile = torch.tensor([[70.0, 0.0, 0.0]] * 4)
    with torch.no_grad():
        model.map_tokenizer.fold.weight.normal_(std=0.01)   # after the first step
    out = model(src, profile, kp, None, src_mirror=mirror.mean((2, 3)).repeat(1, 8), feature_map=maps,
                feature_map_mirror=mirror)
    out.pow(2).sum().backward()
    starved = [name for name, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert starved == [], starved
