"""LoRA layers: zero-init identity, the update formula, merge / unmerge, injection."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from viewdiff.models.lora import LoRALinearLayer, inject_lora, lora_layers, lora_parameters, mark_only_lora_trainable

from model_test_utils import randomize_lora_up


def test_fresh_layer_equals_its_base_exactly():
    torch.manual_seed(0)
    base = nn.Linear(16, 8)
    layer = LoRALinearLayer(16, 8, rank=4, alpha=2.0, base=base)
    x = torch.randn(5, 3, 16)
    assert torch.equal(layer(x), base(x))
    assert torch.count_nonzero(layer.up.weight) == 0
    assert torch.count_nonzero(layer.down.weight) == layer.down.weight.numel()  # Kaiming, not zeros
    assert layer.base is base and not base.weight.requires_grad and not base.bias.requires_grad
    created = LoRALinearLayer(16, 8)
    assert isinstance(created.base, nn.Linear) and torch.equal(created(x), created.base(x))


def test_output_is_base_plus_scaled_low_rank_update():
    torch.manual_seed(0)
    layer = LoRALinearLayer(16, 8, rank=4, alpha=2.0)
    randomize_lora_up(layer, 0.1)
    x = torch.randn(7, 16)
    expected = layer.base(x) + (2.0 / 4) * x @ layer.down.weight.T @ layer.up.weight.T
    torch.testing.assert_close(layer(x), expected)
    torch.testing.assert_close(layer.delta(x), expected - layer.base(x))
    assert layer.get_trainable_parameters() == [layer.down.weight, layer.up.weight]


def test_merge_and_unmerge_keep_the_outputs():
    torch.manual_seed(0)
    layer = LoRALinearLayer(32, 24, rank=8, alpha=4.0)
    randomize_lora_up(layer, 0.1)
    x = torch.randn(10, 32)
    before, base_weight = layer(x), layer.base.weight.clone()
    layer.merge()
    assert layer.merged
    torch.testing.assert_close(layer(x), before, atol=1e-5, rtol=0)
    torch.testing.assert_close(layer.base(x), before, atol=1e-5, rtol=0)  # the delta now lives in the base
    layer.merge()  # idempotent
    torch.testing.assert_close(layer(x), before, atol=1e-5, rtol=0)
    layer.unmerge()
    assert not layer.merged
    torch.testing.assert_close(layer.base.weight, base_weight, atol=1e-6, rtol=0)
    torch.testing.assert_close(layer(x), before, atol=1e-5, rtol=0)


def test_conditioned_layer_feeds_the_condition_to_down_only():
    torch.manual_seed(0)
    layer = LoRALinearLayer(16, 8, rank=4, cond_features=3)
    randomize_lora_up(layer, 0.1)
    x, cond = torch.randn(2, 5, 16), torch.randn(2, 3)
    # down(cat(x, cond)) with cond broadcast over the tokens
    down_in = torch.cat([x, cond[:, None].expand(-1, 5, -1)], dim=-1)
    torch.testing.assert_close(layer(x, cond), layer.base(x) + layer.scale * layer.up(layer.down(down_in)))
    assert not torch.allclose(layer(x, cond), layer(x, cond + 1))
    with pytest.raises(ValueError, match="conditioned"):
        layer(x)
    with pytest.raises(RuntimeError, match="cannot be merged"):
        layer.merge()


def test_rank_and_base_shape_are_checked():
    with pytest.raises(ValueError, match="rank"):
        LoRALinearLayer(4, 4, rank=0)
    with pytest.raises(ValueError, match="expected Linear"):
        LoRALinearLayer(4, 4, base=nn.Linear(4, 5))


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16))
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.encoder(x))


def test_inject_wraps_chosen_linears_in_place():
    torch.manual_seed(0)
    model = TwoLayer()
    x = torch.randn(3, 8)
    before = model(x)
    first = model.encoder[0]
    assert inject_lora(model, target_names=["0", "head"], rank=2) == ["encoder.0", "head"]
    assert isinstance(model.encoder[0], LoRALinearLayer) and model.encoder[0].base is first
    assert isinstance(model.encoder[2], nn.Linear) and isinstance(model.head, LoRALinearLayer)
    assert torch.equal(model(x), before)
    # again: wrapped layers (and their inner Linears) are skipped, the rest is wrapped
    assert inject_lora(model, predicate=lambda name, lin: lin.out_features == 16) == ["encoder.2"]
    assert sorted(lora_layers(model)) == ["encoder.0", "encoder.2", "head"]


def test_inject_keeps_device_and_dtype():
    model = TwoLayer().double()
    inject_lora(model, rank=2)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert model(torch.randn(2, 8, dtype=torch.float64)).dtype == torch.float64


def test_only_lora_parameters_get_gradients_when_the_base_is_frozen():
    torch.manual_seed(0)
    model = TwoLayer()
    inject_lora(model, target_names=["0", "2"], rank=2)
    mark_only_lora_trainable(model)
    model(torch.randn(4, 8)).pow(2).sum().backward()
    lora_ids = {id(p) for p in lora_parameters(model)}
    assert len(lora_ids) == 4
    for name, p in model.named_parameters():
        if id(p) in lora_ids:
            assert p.requires_grad, name
        else:
            assert not p.requires_grad and p.grad is None, name
    # with up = 0 only `up` receives a gradient (d/d down = up^T ... = 0)
    assert all(layer.up.weight.grad.abs().sum() > 0 for layer in lora_layers(model).values())
