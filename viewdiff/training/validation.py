"""Validation of a training run: how a model does on the pairs of its validation fold (`train`'s early stopping)."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from viewdiff.training.datasets import model_inputs
from viewdiff.training.losses import embedding_loss

@torch.no_grad()
def evaluate_pairs(model: nn.Module, pairs: dict[str, torch.Tensor], config,
                   bank: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """Validation loss and mean cosine to the target, in eval mode (`config`: the run's `TrainConfig`, for the
    identity weight and temperature of the validation loss); with the validation identities' `bank`
    (flip-fused frontal photos, identities), `val_score`: the mean of TAR @ FAR 1% and 0.1% of their turned
    photos (estimated |yaw| >= `VAL_TURNED`) against every frontal photo (the product's fused protocol): what
    early stopping keeps the best epoch of."""
    model.eval()
    out = torch.cat([model(**model_inputs({k: v[i:i + 512] for k, v in pairs.items()}))
                     for i in range(0, len(pairs["src"]), 512)])
    loss, _ = embedding_loss(out, pairs["target"], pairs["identity"], config.identity_weight, config.temperature)
    cos = F.cosine_similarity(out, pairs["target"], dim=-1).mean().item()
    raw = F.cosine_similarity(pairs["src"], pairs["target"], dim=-1).mean().item()
    row = {"val_loss": loss.item(), "val_cosine": cos, "val_cosine_raw": raw}
    if bank is not None:
        turned = pairs["source_pose"][:, 0].abs() >= VAL_TURNED
        sims = F.normalize(out[turned], dim=-1) @ bank[0].T
        same = pairs["identity"][turned][:, None] == bank[1][None, :]
        impostor = sims[~same].sort().values
        if not len(impostor) or not same.any():   # one person, or no turned photo: no verification figure
            return row
        tars = [(sims[same] > impostor[min(len(impostor) - 1, math.ceil((1 - far) * len(impostor)) - 1)])
                .float().mean().item() for far in (0.01, 0.001)]
        row.update(val_tar_far1=tars[0], val_tar_far01=tars[1], val_score=float(np.mean(tars)))
    return row


VAL_TURNED = 30.0   # degrees of estimated |yaw| from which a validation photo is a probe of `val_score`
