"""Save / load models as `model.safetensors` + `config.json` (no pickle), with readable errors."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from viewdiff.baselines import DreamResidual
from viewdiff.enhanced_transformer_3d import EnhancedTransformerDecoderOnly3D
from viewdiff.lora_layers import tensor_mismatches

FORMAT_VERSION = 1
WEIGHTS_FILE, CONFIG_FILE = "model.safetensors", "config.json"
MODEL_CLASSES: dict[str, type[nn.Module]] = {c.__name__: c for c in (EnhancedTransformerDecoderOnly3D, DreamResidual)}
BACKEND_OF_DIM = {128: "dlib", 512: "ArcFace / insightface"}
TRAIN_HINT = "train them with `python -m viewdiff.train_enhanced ...` (see --help; --export_dir sets the folder)"


class WeightsError(Exception):
    """A model folder cannot be loaded (base class; the message says what to do)."""


class WeightsNotFoundError(WeightsError):
    """The folder, its weights or its config do not exist."""


class WeightsMismatchError(WeightsError):
    """The files exist but do not fit: unknown class, other embedding width, wrong tensors."""


def save_pretrained(model: nn.Module, directory: str | Path, metadata: dict | None = None) -> Path:
    """Write `directory/model.safetensors` and `directory/config.json`; returns the directory."""
    if type(model).__name__ not in MODEL_CLASSES:
        raise TypeError(f"cannot save {type(model).__name__}; known classes: {sorted(MODEL_CLASSES)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(directory / WEIGHTS_FILE))
    config = {"class": type(model).__name__, "config": model.config, "metadata": metadata or {},
              "format_version": FORMAT_VERSION}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str))
    return directory


def _dim_name(dim: int) -> str:
    return f"{dim}-d" + (f" ({BACKEND_OF_DIM[dim]})" if dim in BACKEND_OF_DIM else "")


def load_pretrained(directory: str | Path, embedding_dim: int | None = None,
                    map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the saved model (in eval mode) and return (model, metadata).

    embedding_dim: the width of the caller's face embeddings; a model for another width raises
    `WeightsMismatchError`. Missing files raise `WeightsNotFoundError`.
    """
    directory = Path(directory)
    for path in (directory, directory / CONFIG_FILE, directory / WEIGHTS_FILE):
        if not path.exists():
            raise WeightsNotFoundError(f"model weights not found: {path} does not exist; {TRAIN_HINT}")
    try:
        saved = json.loads((directory / CONFIG_FILE).read_text())
        name, config = saved["class"], saved["config"]
        if not isinstance(config, dict):
            raise TypeError(f"'config' is a {type(config).__name__}, not an object")
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise WeightsError(f"{directory / CONFIG_FILE} is not a viewdiff model config ({e!r}); "
                           f"re-export the model or {TRAIN_HINT}") from e
    if name not in MODEL_CLASSES:
        raise WeightsMismatchError(f"{directory} holds an unknown model class {name!r}; "
                                   f"known: {sorted(MODEL_CLASSES)}")
    dim = config.get("d_model")
    if embedding_dim is not None and dim != embedding_dim:
        raise WeightsMismatchError(
            f"{directory} holds weights for {_dim_name(dim)} embeddings, but the face backend gives "
            f"{_dim_name(embedding_dim)} embeddings; use weights trained for this backend "
            f"(weights/<backend>/<model>/) or {TRAIN_HINT} with the matching --backend")
    try:
        model = MODEL_CLASSES[name].from_config(config)
    except (TypeError, ValueError) as e:
        raise WeightsMismatchError(f"{directory / CONFIG_FILE}: config does not build a {name}: {e}") from e
    try:
        state = load_file(str(directory / WEIGHTS_FILE), device=str(map_location))
    except (SafetensorError, OSError) as e:
        raise WeightsError(f"{directory / WEIGHTS_FILE} is not a readable safetensors file ({e}); "
                           f"re-export the model or {TRAIN_HINT}") from e
    if problems := tensor_mismatches(model.state_dict(), state):
        raise WeightsMismatchError(f"{directory / WEIGHTS_FILE} does not match its config ({name}): "
                                   + "; ".join(problems) + f". Re-export the model or {TRAIN_HINT}")
    model.load_state_dict(state)
    return model.to(map_location).eval(), saved.get("metadata") or {}
