"""Low-rank adapters (LoRA, Hu et al. 2021) for `nn.Linear`, and their injection / persistence.

`LoRALinearLayer` computes `base(x) + (alpha / rank) * up(down(x))` with a frozen base. `up` starts at
zero, so a freshly wrapped layer is exactly its base. An optional conditioning vector (`cond_features`)
can be appended to the input of `down` only: the delta then depends on e.g. a pose embedding while
the base path does not (used by `PoseConditionedLoRAAttention`); such a layer cannot be merged.

Adapters are saved and loaded by `viewdiff.models.checkpoint.save_lora_weights` / `load_lora_weights`.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn


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
