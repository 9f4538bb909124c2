"""Prior preservation (DreamBooth-style): keep a fine-tuned model close to its frozen base model.

`PriorPreservationLoss` compares student and base outputs; `PriorPreservationDataset` computes the
base outputs once, caches them in a `.safetensors` file keyed by the sha256 of the base weights
(and of the inputs), and serves them as prior samples; `EnhancedTransformerWithPrior` wraps a
model and its frozen base and adds the prior term to the task loss.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import Dataset

BASE_OUT = "base_out"


def tensors_sha256(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    """sha256 over (name, dtype, shape, raw bytes) of named tensors, in name order."""
    h = hashlib.sha256()
    for name, t in sorted(named, key=lambda kv: kv[0]):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class PriorPreservationLoss(nn.Module):
    """forward(student_out [B, D], base_out [B, D]) -> (total, parts).

    total = lambda_prior * (w_kl * KL(softmax(base/T) || softmax(student/T)) + w_cos * (1 - cos)
    + w_l2 * MSE); base_out is treated as a constant. parts: the unweighted "kl", "cos", "l2" and
    the weighted "total", as floats.
    """

    def __init__(self, lambda_prior: float = 0.1, w_kl: float = 1.0, w_cos: float = 1.0, w_l2: float = 1.0,
                 temperature: float = 1.0):
        super().__init__()
        self.lambda_prior, self.w_kl, self.w_cos, self.w_l2 = lambda_prior, w_kl, w_cos, w_l2
        self.temperature = temperature

    def forward(self, student_out: torch.Tensor, base_out: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        s, b = student_out.float(), base_out.detach().float()
        t = self.temperature
        kl = F.kl_div(F.log_softmax(s / t, dim=-1), F.log_softmax(b / t, dim=-1), log_target=True,
                      reduction="batchmean")
        cos = (1.0 - F.cosine_similarity(s, b, dim=-1)).mean()
        l2 = F.mse_loss(s, b)
        total = self.lambda_prior * (self.w_kl * kl + self.w_cos * cos + self.w_l2 * l2)
        return total, {"kl": kl.item(), "cos": cos.item(), "l2": l2.item(), "total": total.item()}


class PriorPreservationDataset(Dataset):
    """Prior samples: the frozen base model's outputs on fixed inputs, cached on disk.

    base_model: called as `base_model(**inputs)` (in eval mode, no grad, batches of `batch_size`).
    inputs: forward kwargs, tensors with the same first dim N (None values are dropped).
    cache_path: `.safetensors` file; reused when its metadata has the same sha256 of the base model's
    state dict and of the inputs (`cache_hit` is then True), rebuilt otherwise.
    Items: dict of the inputs' rows plus "base_out" [D].
    """

    def __init__(self, base_model: nn.Module, inputs: dict[str, torch.Tensor | None], cache_path: str | Path,
                 batch_size: int = 256):
        self.inputs = {k: torch.as_tensor(v).cpu() for k, v in inputs.items() if v is not None}
        sizes = {k: len(v) for k, v in self.inputs.items()}
        if not sizes or len(set(sizes.values())) != 1:
            raise ValueError(f"inputs must be non-empty tensors of one length, got sizes {sizes}")
        self.cache_path = Path(cache_path)
        meta = {"base_sha256": tensors_sha256(base_model.state_dict().items()),
                "inputs_sha256": tensors_sha256(self.inputs.items())}
        self.base_out = self._load(meta)
        self.cache_hit = self.base_out is not None
        if not self.cache_hit:
            self.base_out = self._build(base_model, batch_size)
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            save_file({**{f"input.{k}": v.contiguous() for k, v in self.inputs.items()},
                       BASE_OUT: self.base_out}, str(self.cache_path), metadata=meta)

    def _load(self, meta: dict[str, str]) -> torch.Tensor | None:
        if not self.cache_path.is_file():
            return None
        try:
            with safe_open(str(self.cache_path), framework="pt") as f:
                stored = f.metadata() or {}
                if any(stored.get(k) != v for k, v in meta.items()):
                    return None
                return f.get_tensor(BASE_OUT)
        except (SafetensorError, OSError):  # unreadable or foreign file: rebuild it
            return None

    @torch.no_grad()
    def _build(self, base_model: nn.Module, batch_size: int) -> torch.Tensor:
        was_training = base_model.training
        base_model.eval()
        device = next(base_model.parameters()).device
        n = len(next(iter(self.inputs.values())))
        outs = [base_model(**{k: v[i:i + batch_size].to(device) for k, v in self.inputs.items()}).float().cpu()
                for i in range(0, n, batch_size)]
        base_model.train(was_training)
        return torch.cat(outs)

    def __len__(self) -> int:
        return len(self.base_out)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {**{k: v[i] for k, v in self.inputs.items()}, BASE_OUT: self.base_out[i]}

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """A random batch of n prior samples (without replacement when n <= len): dict of [n, ...]."""
        idx = torch.as_tensor(rng.choice(len(self), n, replace=n > len(self)))
        return {**{k: v[idx] for k, v in self.inputs.items()}, BASE_OUT: self.base_out[idx]}


class EnhancedTransformerWithPrior(nn.Module):
    """Fine-tuning wrapper: task loss of `model` + prior-preservation loss against a frozen `base_model`.

    The base model is frozen and kept in eval mode (also when `.train()` is called on the wrapper).
    """

    def __init__(self, model: nn.Module, base_model: nn.Module, lambda_prior: float = 0.1):
        super().__init__()
        if model is base_model:
            raise ValueError("base_model must be a separate (frozen) copy of the model")
        self.model = model
        self.base_model = base_model.eval().requires_grad_(False)
        self.prior_loss = PriorPreservationLoss(lambda_prior)

    def train(self, mode: bool = True) -> "EnhancedTransformerWithPrior":
        super().train(mode)
        self.base_model.eval()
        return self

    def forward(self, **inputs) -> torch.Tensor:
        return self.model(**inputs)

    def compute_loss(self, inputs: dict, conditions: dict | None, targets: torch.Tensor, original_loss_fn):
        """-> (total loss, {"original_loss", "prior_loss", "total_loss", "prior_kl", "prior_cos", "prior_l2"}).

        inputs: forward kwargs of the task batch; original_loss_fn(out, targets) -> scalar.
        conditions: the prior batch, forward kwargs of prior samples, optionally with cached
        "base_out" (as from `PriorPreservationDataset.sample`); moved to the targets' device.
        Empty or None: the prior term compares student and base on `inputs`.
        """
        out = self.model(**inputs)
        original = original_loss_fn(out, targets)
        if conditions:
            prior_inputs = {k: v.to(targets.device) for k, v in conditions.items() if k != BASE_OUT}
            student = self.model(**prior_inputs)
        else:
            prior_inputs, student = inputs, out
        if conditions and BASE_OUT in conditions:
            base_out = conditions[BASE_OUT].to(targets.device)
        else:
            with torch.no_grad():
                base_out = self.base_model(**prior_inputs)
        prior, parts = self.prior_loss(student, base_out)
        total = original + prior
        return total, {"original_loss": original.item(), "prior_loss": prior.item(), "total_loss": total.item(),
                       **{f"prior_{k}": v for k, v in parts.items() if k != "total"}}
