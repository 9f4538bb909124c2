"""save_pretrained / load_pretrained: exact round trip, pickle-free files, readable errors; LoRA adapter files."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from viewdiff.models.baselines import DreamResidual
from viewdiff.models.checkpoint import (CONFIG_FILE, WEIGHTS_FILE, WeightsError, WeightsMismatchError,
                                        WeightsNotFoundError, find_weights, load_lora_weights, load_pretrained, save_lora_weights,
                                        save_pretrained)
from viewdiff.models.lora import inject_lora
from viewdiff.models.transformer import EnhancedTransformerDecoderOnly3D

from model_test_utils import randomize_lora_up, trained_like

SMALL = dict(d_model=32, nhead=4, num_layers=1, token_dim=32, voxel_resolution=8)


def inputs(d: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"src": torch.randn(3, d, generator=g), "angles": torch.randn(3, 3, generator=g) * 40,
            "keypoints_3d": torch.randn(3, 5, 3, generator=g) * 0.4, "pose": torch.randn(3, 3, generator=g) * 10}


@pytest.mark.parametrize("model", [
    EnhancedTransformerDecoderOnly3D(**SMALL, rank=8, use_cross_view=True, n_views=3),
    EnhancedTransformerDecoderOnly3D(**SMALL, use_lora_attention=False, use_projection_layer=False),
    DreamResidual(d_model=32, hidden=16)], ids=["enhanced", "enhanced-plain", "dream"])
def test_round_trip_gives_exactly_the_same_outputs(tmp_path, model):
    model = trained_like(model).eval()
    metadata = {"backend": "dlib", "epoch": 3, "val_cosine": 0.91}
    assert save_pretrained(model, tmp_path / "m", metadata) == tmp_path / "m"
    loaded, meta = load_pretrained(tmp_path / "m", embedding_dim=32)
    assert type(loaded) is type(model) and loaded.config == model.config and meta == metadata
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(**inputs()), model(**inputs()))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_files_load_without_pickle(tmp_path):
    model = trained_like(EnhancedTransformerDecoderOnly3D(**SMALL))
    save_pretrained(model, tmp_path, {"note": "x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    state = load_file(str(tmp_path / WEIGHTS_FILE))  # plain safetensors, no viewdiff code needed
    assert state.keys() == model.state_dict().keys()
    saved = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert saved["class"] == "EnhancedTransformerDecoderOnly3D" and saved["config"] == model.config
    # the state dict holds plain tensors only, so torch's safe loader reads it too (training checkpoints)
    torch.save(model.state_dict(), tmp_path / "state.pt")
    restored = torch.load(tmp_path / "state.pt", weights_only=True)
    assert all(torch.equal(restored[k], v) for k, v in state.items())


def test_missing_folder_or_file_raises_not_found(tmp_path):
    with pytest.raises(WeightsNotFoundError, match=r"does not exist.*viewdiff\.training\.train"):
        load_pretrained(tmp_path / "nowhere")
    save_pretrained(DreamResidual(d_model=32), tmp_path / "m")
    (tmp_path / "m" / WEIGHTS_FILE).unlink()
    with pytest.raises(WeightsNotFoundError, match=WEIGHTS_FILE):
        load_pretrained(tmp_path / "m")
    assert issubclass(WeightsNotFoundError, WeightsError) and issubclass(WeightsMismatchError, WeightsError)


def test_wrong_embedding_width_is_explained(tmp_path):
    save_pretrained(EnhancedTransformerDecoderOnly3D(d_model=128, num_layers=1), tmp_path / "dlib")
    with pytest.raises(WeightsMismatchError) as info:
        load_pretrained(tmp_path / "dlib", embedding_dim=512)
    message = str(info.value)
    assert "128-d (dlib)" in message and "512-d (ArcFace / insightface)" in message
    assert "--backend" in message  # says how to fix it
    model, _ = load_pretrained(tmp_path / "dlib")  # no width given: no check
    assert model.config["d_model"] == 128


def test_damaged_folders_raise_readable_errors(tmp_path):
    model = EnhancedTransformerDecoderOnly3D(**SMALL)
    folder = save_pretrained(model, tmp_path / "m")
    state = load_file(str(folder / WEIGHTS_FILE))
    state["head.weight"] = torch.zeros(3, 3)
    del state["head.bias"]
    save_file(state, str(folder / WEIGHTS_FILE))
    with pytest.raises(WeightsMismatchError, match=r"missing tensors: \['head.bias'\].*head.weight: file shape"):
        load_pretrained(folder)

    (folder / WEIGHTS_FILE).write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        load_pretrained(folder)

    for text, error, match in [("{not json", WeightsError, "not a viewdiff model config"),
                               ('{"class": "X", "config": []}', WeightsError, "not a viewdiff model config"),
                               ('{"class": "Unknown", "config": {}}', WeightsMismatchError, "unknown model class"),
                               ('{"class": "DreamResidual", "config": {"d_model": 32, "bogus": 1}}',
                                WeightsMismatchError, "config does not build")]:

        (folder / CONFIG_FILE).write_text(text)
        with pytest.raises(error, match=match):
            load_pretrained(folder)


def test_only_known_model_classes_are_saved(tmp_path):
    with pytest.raises(TypeError, match="cannot save Linear"):
        save_pretrained(torch.nn.Linear(2, 2), tmp_path)


def test_adapter_file_holds_only_lora_weights_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512))
    inject_lora(model, rank=8, alpha=4.0)
    randomize_lora_up(model, 0.1)
    path = tmp_path / "adapter.safetensors"
    save_lora_weights(model, path)
    full = sum(p.numel() for p in model.parameters()) * 4
    assert path.stat().st_size < 0.05 * full  # ~66 KB vs ~2 MB for the whole model
    with safe_open(str(path), framework="pt") as f:
        assert sorted(f.keys()) == [f"{i}.{part}.weight" for i in (0, 2) for part in ("down", "up")]

    x = torch.randn(3, 512)
    expected = model(x)
    fresh = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512))
    fresh.load_state_dict({k.replace(".base", ""): v for k, v in model.state_dict().items() if ".base." in k})
    inject_lora(fresh, rank=8, alpha=1.0)
    load_lora_weights(fresh, path)
    assert fresh[0].alpha == 4.0  # alpha comes from the file
    assert torch.equal(fresh(x), expected)


def test_adapter_that_does_not_fit_is_rejected(tmp_path):
    model = nn.Sequential(nn.Linear(8, 8))
    inject_lora(model, rank=4)
    path = tmp_path / "adapter.safetensors"
    save_lora_weights(model, path)
    other = nn.Sequential(nn.Linear(8, 8))
    inject_lora(other, rank=2)
    with pytest.raises(ValueError, match=r"rank differs"):
        load_lora_weights(other, path)
    with pytest.raises(ValueError, match="no LoRA layers"):
        save_lora_weights(nn.Linear(2, 2), tmp_path / "none.safetensors")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(1)}, str(foreign))
    with pytest.raises(ValueError, match="not a viewdiff LoRA adapter"):
        load_lora_weights(model, foreign)


SHIPPED = "weights/transformer/28db0b514695b5c8"   # the default embedder's fingerprint


def test_repo_relative_weights_load_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, meta = load_pretrained(SHIPPED, embedding_dim=512)  # the shipped weights
    assert isinstance(model, EnhancedTransformerDecoderOnly3D) and model.config["d_model"] == 512
    assert meta["embedder_fingerprint"] == "28db0b514695b5c8" and find_weights("28db0b514695b5c8").name == meta[
        "embedder_fingerprint"]
    save_pretrained(DreamResidual(d_model=32), tmp_path / SHIPPED)
    assert isinstance(load_pretrained(SHIPPED)[0], DreamResidual)  # the path as given comes first
    with pytest.raises(WeightsNotFoundError, match="nowhere/model"):
        load_pretrained("nowhere/model")


def test_weights_of_another_embedder_of_the_same_width_are_refused(tmp_path):
    save_pretrained(DreamResidual(d_model=128), tmp_path / "m", {"embedder_fingerprint": "aaaa"})
    load_pretrained(tmp_path / "m", embedding_dim=128, embedder_fingerprint="aaaa")
    with pytest.raises(WeightsMismatchError, match="trained on the embeddings of embedder aaaa.*bbbb.*not interchangeable"):
        load_pretrained(tmp_path / "m", embedding_dim=128, embedder_fingerprint="bbbb")
    assert find_weights("no-such-embedder") is None
