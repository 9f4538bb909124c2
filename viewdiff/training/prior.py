"""Prior preservation (DreamBooth's, Ruiz et al. 2023): while the model learns its task, keep the behaviour of
the model it started from (its frozen copy, the base) on prior samples.

DreamBooth fine-tunes on a few photos of one subject and, so that the model does not forget its class, also
trains on samples the frozen model generated for the class prompt, with the frozen model's outputs as targets.
Here the task is the training recipe (a profile sent to frontal, `--loss gallery` or `regression`); the prior
samples are the training photos sent to other poses (`viewdiff.training.train.prior_samples`), and their
targets are the base model's outputs: a fresh model (the identity map, with the mirror view the flip-fused
mean of a turned face's two views) or the model fine-tuned from (`--base_model_path`).

`PriorPreservationLoss` compares student and base outputs; `PriorPreservationDataset` computes the base
outputs once, caches them in a `.safetensors` file keyed by the sha256 of the base weights and of the inputs,
and serves them as prior samples; `EnhancedTransformerWithPrior` wraps a model and its frozen base and adds
the prior term to the task loss.
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
LAMBDA_PRIOR = 0.1   # the weight of the prior term (`--lambda_prior`)


def tensors_sha256(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    """sha256 over (name, dtype, shape, raw bytes) of named tensors, in name order."""
    h = hashlib.sha256()
    for name, t in sorted(named, key=lambda kv: kv[0]):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class PriorPreservationLoss(nn.Module):
    """forward(student_out [B, D], base_out [B, D]) -> (total, parts); base_out is treated as a constant.

    total = lambda_prior * (w_kl * kl + w_cos * cos + w_l2 * l2), with s, b the unit-length outputs
    (embeddings are compared by cosine):
    - kl: distillation of the similarity distribution. The references are the batch's other base outputs b_j
      (j != i); row i's base distribution is p_i = softmax_j(b_i . b_j / temperature), the student's
      q_i = softmax_j(s_i . b_j / temperature), and kl = mean_i KL(p_i || q_i): which other faces the output
      is near and how near, what a gallery sees (the own row is left out: at cosine 1 it would hold ~all of
      p_i and hide the rest). The earlier KL over a softmax of the D coordinates of one vector was ~0 by
      construction: unit-length coordinates are ~1/sqrt(D) (0.04 at D = 512), so both softmaxes are nearly
      uniform and their KL ~ |s - b|^2 / (2 D) = (1 - cos) / D, 1/512 of the cosine term. Cosines between
      faces spread over ~[-0.2, 0.9] and at temperature 0.1 (the gallery loss's InfoNCE temperature) their
      softmax is peaked, so an output that drifts towards another face moves the term by more than its cosine
      term (tests/test_training_prior.py). Needs B >= 3 (fewer leave at most one reference and kl 0).
    - cos: mean(1 - cos(s_i, b_i)), how far each output turned away from the base's.
    - l2: mean_i |student_i - base_i|^2 over the D coordinates of the raw outputs (their length too).
    parts: the unweighted "kl", "cos", "l2" and the weighted "total", as floats.
    """

    def __init__(self, lambda_prior: float = LAMBDA_PRIOR, w_kl: float = 1.0, w_cos: float = 1.0,
                 w_l2: float = 1.0, temperature: float = 0.1):
        super().__init__()
        self.lambda_prior, self.w_kl, self.w_cos, self.w_l2 = lambda_prior, w_kl, w_cos, w_l2
        self.temperature = temperature

    def forward(self, student_out: torch.Tensor, base_out: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        raw_s, raw_b = student_out.float(), base_out.detach().float()
        s, b = F.normalize(raw_s, dim=-1), F.normalize(raw_b, dim=-1)
        own = torch.eye(len(b), dtype=torch.bool, device=b.device)   # the own row is no reference
        log_p = F.log_softmax((b @ b.T / self.temperature).masked_fill(own, -1e4), dim=-1)
        log_q = F.log_softmax((s @ b.T / self.temperature).masked_fill(own, -1e4), dim=-1)
        kl = F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")
        cos = (1.0 - (s * b).sum(-1)).mean()
        l2 = (raw_s - raw_b).pow(2).sum(-1).mean()
        total = self.lambda_prior * (self.w_kl * kl + self.w_cos * cos + self.w_l2 * l2)
        return total, {"kl": kl.item(), "cos": cos.item(), "l2": l2.item(), "total": total.item()}


class PriorPreservationDataset(Dataset):
    """Prior samples: the frozen base model's outputs on fixed inputs, cached on disk.

    base_model: called as `base_model(**inputs)` (in eval mode, no grad, batches of `batch_size`).
    inputs: every forward kwarg the model reads (src, src_mirror, source_pose, keypoints_3d, target_pose and,
    for a map model, feature_map and feature_map_mirror: `viewdiff.training.datasets.model_inputs`), tensors with
    the same first dim N (None values are dropped); kept in memory, not copied.
    cache_path: `.safetensors` file holding the base outputs [N, D]; reused when its metadata has the same
    sha256 of the base model's state dict and of the inputs (`cache_hit` is then True), rebuilt otherwise.
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
            save_file({BASE_OUT: self.base_out}, str(self.cache_path), metadata=meta)

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
    """Training wrapper: task loss of `model` + prior-preservation loss against a frozen `base_model` (a copy of
    the model at the start of training, or the model it is fine-tuned from).

    The base model is frozen and kept in eval mode (also when `.train()` is called on the wrapper).
    """

    def __init__(self, model: nn.Module, base_model: nn.Module, lambda_prior: float = LAMBDA_PRIOR):
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

        inputs: forward kwargs of the task batch; original_loss_fn(out, targets) -> scalar (the recipe's
        task loss: the gallery or the regression loss).
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
