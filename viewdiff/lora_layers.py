"""Low-rank adapters (LoRA, Hu et al. 2021) for `nn.Linear`, and their injection / persistence.

`LoRALinearLayer` computes `base(x) + (alpha / rank) * up(down(x))` with a frozen base. `up` starts at
zero, so a freshly wrapped layer is exactly its base. An optional conditioning vector (`cond_features`)
can be appended to the input of `down` only: the delta then depends on e.g. a pose embedding while
the base path does not (used by `PoseConditionedLoRAAttention`); such a layer cannot be merged.

Adapters are saved as `.safetensors` holding only the `down` / `up` weights (plus rank and alpha in
the metadata), keyed by the wrapped layer's qualified name.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

ADAPTER_FORMAT = "viewdiff-lora-1"


class LoRALinearLayer(nn.Module):
    """Frozen `nn.Linear` base plus a trainable rank-`rank` update.

    x: [..., in_features] -> [..., out_features]. With `cond_features > 0`, `forward(x, cond)` takes
    cond: [B, cond_features] (broadcast over the middle dims of x: [B, ..., in]) which feeds `down` only.
    """

    def __init__(self, in_features: int, out_features: int, rank: int = 4, alpha: float = 1.0,
                 base: nn.Linear | None = None, cond_features: int = 0):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        if base is None:
            base = nn.Linear(in_features, out_features)
        elif (base.in_features, base.out_features) != (in_features, out_features):
            raise ValueError(f"base is Linear({base.in_features}, {base.out_features}), "
                             f"expected Linear({in_features}, {out_features})")
        self.base = base
        self.base.requires_grad_(False)
        self.rank, self.alpha, self.cond_features = rank, float(alpha), cond_features
        self.down = nn.Linear(in_features + cond_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=False)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)
        self.merged = False

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def delta(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """The low-rank update alone: [..., out_features]."""
        return self.scale * self.up(self._down(x, cond))

    def _down(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if not self.cond_features:
            return self.down(x)
        if cond is None:
            raise ValueError("this LoRA layer is conditioned: pass cond [B, cond_features]")
        n_in = self.down.in_features - self.cond_features  # down(cat(x, cond)) without building the cat
        h_cond = F.linear(cond, self.down.weight[:, n_in:]).view(cond.shape[0], *([1] * (x.dim() - 2)), self.rank)
        return F.linear(x, self.down.weight[:, :n_in]) + h_cond

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        return out.add_(self.up(self._down(x, cond)), alpha=self.scale)

    def get_trainable_parameters(self) -> list[nn.Parameter]:
        """The LoRA parameters (`down`, `up`)."""
        return [self.down.weight, self.up.weight]

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight (faster inference; forward then uses the base only)."""
        if self.cond_features:
            raise RuntimeError("a pose-conditioned LoRA layer depends on its input and cannot be merged")
        if not self.merged:
            self.base.weight += self.scale * (self.up.weight @ self.down.weight)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo `merge` (restores the base weight up to float rounding)."""
        if self.merged:
            self.base.weight -= self.scale * (self.up.weight @ self.down.weight)
            self.merged = False

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}, cond_features={self.cond_features}"


def lora_layers(module: nn.Module) -> dict[str, LoRALinearLayer]:
    """All `LoRALinearLayer`s of `module`, by qualified name."""
    return {name: m for name, m in module.named_modules() if isinstance(m, LoRALinearLayer)}


def lora_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The LoRA (`down` / `up`) parameters of every `LoRALinearLayer` in `module`."""
    return [p for layer in lora_layers(module).values() for p in layer.get_trainable_parameters()]


def mark_only_lora_trainable(module: nn.Module) -> None:
    """Freeze every parameter of `module` except the LoRA ones."""
    module.requires_grad_(False)
    for p in lora_parameters(module):
        p.requires_grad_(True)


def inject_lora(module: nn.Module, target_names: Iterable[str] | None = None,
                predicate: Callable[[str, nn.Linear], bool] | None = None,
                rank: int = 4, alpha: float = 1.0) -> list[str]:
    """Wrap chosen `nn.Linear` submodules of `module` in place with `LoRALinearLayer`.

    A Linear at qualified name `n` is chosen when `n` equals or ends with `.t` for some `t` in
    `target_names`, or when `predicate(n, linear)` is true; with neither given, every Linear is.
    Linears already inside a LoRA layer are skipped. Returns the wrapped names.
    """
    targets = tuple(target_names or ())

    def chosen(name: str, lin: nn.Linear) -> bool:
        if not targets and predicate is None:
            return True
        by_name = any(name == t or name.endswith("." + t) for t in targets)
        return by_name or (predicate is not None and predicate(name, lin))

    inside_lora = {f"{n}.{c}" for n in lora_layers(module) for c in ("base", "down", "up")}
    picked = [(n, m) for n, m in module.named_modules()
              if isinstance(m, nn.Linear) and n not in inside_lora and n and chosen(n, m)]
    for name, lin in picked:
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        lora = LoRALinearLayer(lin.in_features, lin.out_features, rank, alpha, base=lin)
        setattr(parent, attr, lora.to(lin.weight.device, lin.weight.dtype))
    return [n for n, _ in picked]


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
