"""Save / load models as `model.safetensors` + `config.json` (no pickle), with readable errors, and LoRA adapters.

Shipped transformer weights live in ``weights/transformer/<fingerprint>/``, one folder per embedder: the
fingerprint (`viewdiff.faces.backends`) names the embedding space the model was trained in, and
`find_weights` / `load_pretrained(..., embedder_fingerprint=...)` never mix two embedders of the same
width. The metadata of `config.json` records it as ``embedder_fingerprint``.

Adapters (`save_lora_weights` / `load_lora_weights`) are `.safetensors` files holding only the LoRA
`down` / `up` weights (plus rank and alpha in the metadata), keyed by the wrapped layer's qualified name.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from viewdiff.models.baselines import DreamResidual
from viewdiff.models.lora import lora_layers
from viewdiff.models.transformer import EnhancedTransformerDecoderOnly3D
from viewdiff.paths import REPO_ROOT, resolve_repo_path

FORMAT_VERSION = 1
ADAPTER_FORMAT = "viewdiff-lora-1"
WEIGHTS_FILE, CONFIG_FILE = "model.safetensors", "config.json"
MODEL_CLASSES: dict[str, type[nn.Module]] = {c.__name__: c for c in (EnhancedTransformerDecoderOnly3D, DreamResidual)}
BACKEND_OF_DIM = {128: "dlib", 512: "ArcFace / insightface"}
TRAIN_HINT = "train them with `python -m viewdiff.training.train ...` (see --help; --export_dir sets the folder)"
WEIGHTS_DIR = "weights/transformer"


def find_weights(fingerprint: str) -> Path | None:
    """``weights/transformer/<fingerprint>/`` when it holds a model, else None (no weights for that embedder)."""
    folder = REPO_ROOT / WEIGHTS_DIR / fingerprint
    return folder if (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file() else None


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
                    map_location: str | torch.device = "cpu",
                    embedder_fingerprint: str | None = None) -> tuple[nn.Module, dict]:
    """Rebuild the saved model (in eval mode) and return (model, metadata).

    directory: the model folder, as given or else relative to the repository root (so
    ``weights/dlib/enhanced`` loads from any working directory).
    embedding_dim: the width of the caller's face embeddings; a model for another width raises
    `WeightsMismatchError`, and so does one trained on another embedder than `embedder_fingerprint`
    (when both are known). Missing files raise `WeightsNotFoundError`.
    """
    directory = resolve_repo_path(directory)
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
            f"{_dim_name(embedding_dim)} embeddings; use weights trained for this embedder "
            f"({WEIGHTS_DIR}/<fingerprint>/) or {TRAIN_HINT} with the matching --backend")
    trained_on = (saved.get("metadata") or {}).get("embedder_fingerprint")
    if embedder_fingerprint and trained_on and trained_on != embedder_fingerprint:
        raise WeightsMismatchError(
            f"{directory.name} was trained on the embeddings of embedder {trained_on}, but the face backend is "
            f"embedder {embedder_fingerprint}: two embedders of the same width are not interchangeable; use "
            f"{WEIGHTS_DIR}/{embedder_fingerprint}/ or {TRAIN_HINT} on that embedder's records")
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


def save_lora_weights(module: nn.Module, path: str | Path) -> None:
    """Write only the LoRA weights of `module` to `path` (.safetensors)."""
    layers = lora_layers(module)
    if not layers:
        raise ValueError("module has no LoRA layers to save (use inject_lora first)")
    tensors = {f"{n}.{part}.weight": getattr(layer, part).weight.detach().cpu().contiguous()
               for n, layer in layers.items() for part in ("down", "up")}
    meta = {n: {"rank": layer.rank, "alpha": layer.alpha} for n, layer in layers.items()}
    save_file(tensors, str(path), metadata={"format": ADAPTER_FORMAT, "layers": json.dumps(meta)})


def tensor_mismatches(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor],
                      missing: str = "missing tensors", unexpected: str = "unexpected tensors",
                      shape_note: str = "") -> list[str]:
    """Readable differences between a model's tensors and a file's (names and shapes); [] when they fit."""
    problems = []
    if names := sorted(expected.keys() - found.keys()):
        problems.append(f"{missing}: {names}")
    if names := sorted(found.keys() - expected.keys()):
        problems.append(f"{unexpected}: {names}")
    problems += [f"{k}: file shape {tuple(found[k].shape)} vs model {tuple(expected[k].shape)}{shape_note}"
                 for k in sorted(expected.keys() & found.keys()) if found[k].shape != expected[k].shape]
    return problems


def load_lora_weights(module: nn.Module, path: str | Path) -> None:
    """Load an adapter written by `save_lora_weights` into the LoRA layers of `module`.

    The file must hold exactly the LoRA tensors of `module` with the same shapes; otherwise a
    `ValueError` lists what is missing, unexpected or mis-shaped. Alpha is taken from the file.
    """
    layers = lora_layers(module)
    if any(layer.merged for layer in layers.values()):
        raise RuntimeError("unmerge the LoRA layers before loading an adapter")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("format") != ADAPTER_FORMAT:
        raise ValueError(f"{path} is not a viewdiff LoRA adapter (format {meta.get('format')!r})")
    expected = {f"{n}.{part}.weight": getattr(layer, part).weight
                for n, layer in layers.items() for part in ("down", "up")}
    problems = tensor_mismatches(expected, tensors, missing="missing in file",
                                 unexpected="not LoRA tensors of this model", shape_note=" (rank differs?)")
    if problems:
        raise ValueError(f"LoRA adapter {path} does not fit this model: " + "; ".join(problems))
    with torch.no_grad():
        for k, t in tensors.items():
            expected[k].copy_(t)
    for n, cfg in json.loads(meta["layers"]).items():
        layers[n].alpha = float(cfg["alpha"])
