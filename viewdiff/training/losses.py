"""Training losses of the pose transformer (and the DREAM baseline).

- ``regression`` (`embedding_loss`): (1 - cos) + squared error to the target (the identity's frontal
  mean) + an in-batch identity InfoNCE. Pulls every profile onto its own identity's mean, which on a
  strong embedder memorises the training identities.
- ``verification`` (`verification_loss`): every frontal photo of the identity a positive (flip-fused, as
  the gallery stores them), the hardest frontal photos of other identities the negatives, with a margin;
  anchored at the flip-fused input.
- ``gallery`` (`gallery_loss`): what the product measures, a transformed probe against a gallery of raw
  frontal embeddings. InfoNCE of the transformed embedding against the frontal means of *all*
  training identities, plus `source_weight` x the squared distance to an anchor near the input (the
  raw embedding, or the mean of the photo's and its mirror's: move only as far as
  the gallery term needs).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def embedding_loss(out: torch.Tensor, target: torch.Tensor, identity: torch.Tensor,
                   identity_weight: float, temperature: float) -> tuple[torch.Tensor, dict[str, float]]:
    """(1 - cos) + squared error to the target + in-batch identity InfoNCE.

    out, target: [B, D]; identity: [B] int. Targets are per-identity means, so the batch's distinct
    identities give the classes of the identity term.
    """
    o = F.normalize(out, dim=-1)
    t = F.normalize(target, dim=-1)
    cos = (o * t).sum(-1)
    loss_cos = (1.0 - cos).mean()
    loss_mse = (out - t).pow(2).sum(-1).mean()
    loss = loss_cos + loss_mse
    parts = {"cos": loss_cos.item(), "mse": loss_mse.item()}
    if identity_weight > 0:
        ids, first = np.unique(identity.cpu().numpy(), return_index=True)
        if len(ids) > 1:
            labels = torch.as_tensor(np.searchsorted(ids, identity.cpu().numpy()), device=out.device)
            logits = o @ t[torch.as_tensor(first, device=out.device)].T / temperature
            loss_id = F.cross_entropy(logits, labels)
            loss = loss + identity_weight * loss_id
            parts["identity"] = loss_id.item()
    return loss, parts


def frontal_gallery(pairs: dict[str, torch.Tensor]) -> torch.Tensor:
    """[n_identities, D]: each identity's frontal-mean target, from the pairs whose target pose is frontal
    (identities without one keep a zero row, which no probe can match)."""
    frontal = (pairs["target_pose"].abs() < 1e-6).all(dim=-1)
    gallery = torch.zeros(int(pairs["identity"].max()) + 1, pairs["target"].shape[1])
    gallery[pairs["identity"][frontal]] = F.normalize(pairs["target"][frontal], dim=-1)
    return gallery


def gallery_loss(out: torch.Tensor, anchor: torch.Tensor, target: torch.Tensor, target_pose: torch.Tensor,
                 identity: torch.Tensor, gallery: torch.Tensor, temperature: float,
                 source_weight: float, margin: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """InfoNCE against the raw frontal `gallery` [G, D] (+ 1 - cos to the target for pose -> pose pairs)
    + `source_weight` * |normalize(out) - anchor|^2.

    out, anchor, target: [B, D]; target_pose [B, 3]; identity [B] (rows of `gallery`). `margin` is
    subtracted from the own identity's cosine (CosFace's additive margin): the own gallery entry must win
    by that much, which asks for a fixed verification threshold rather than just the top rank.
    """
    o = F.normalize(out, dim=-1)
    frontal = (target_pose.abs() < 1e-6).all(dim=-1)
    parts, loss = {}, out.new_zeros(())
    if frontal.any():
        logits = o[frontal] @ gallery.to(o).T
        logits = logits - margin * F.one_hot(identity[frontal], len(gallery)).to(logits)
        loss_id = F.cross_entropy(logits / temperature, identity[frontal])
        loss = loss + loss_id
        parts["gallery"] = loss_id.item()
    if (~frontal).any():
        loss_pose = (1.0 - (o[~frontal] * F.normalize(target[~frontal], dim=-1)).sum(-1)).mean()
        loss = loss + loss_pose
        parts["pose_pairs"] = loss_pose.item()
    if source_weight > 0:
        loss_src = (o - anchor).pow(2).sum(-1).mean()
        loss = loss + source_weight * loss_src
        parts["source"] = loss_src.item()
    return loss, parts


def verification_loss(out: torch.Tensor, anchor: torch.Tensor, identity: torch.Tensor, bank: torch.Tensor,
                      bank_identity: torch.Tensor, temperature: float, margin: float, hard_negatives: int,
                      anchor_weight: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Verification-shaped: every frontal photo of the probe's identity is a positive, the `hard_negatives`
    most similar frontal photos of other identities are its negatives, and each positive must beat them by
    `margin` in cosine; + `anchor_weight` * |normalize(out) - anchor|^2.

    out, anchor [B, D] (anchor: the flip-fused input, where the probe starts); identity [B]; bank [M, D] the
    training frontal photos as flip-fused templates (what the product's gallery stores), bank_identity [M].
    Per probe and positive p: softplus(logsumexp(s_neg / t) - (s_p - margin) / t), i.e. the InfoNCE of p
    against the hardest negatives alone, averaged over the probe's positives: the impostor tail, which sets
    the threshold at a low FAR, is what it pushes down.
    """
    o = F.normalize(out, dim=-1)
    sims = o @ bank.to(o).T   # [B, M]
    positive = bank_identity[None, :] == identity[:, None]
    has = positive.any(dim=1)
    parts, loss = {}, out.new_zeros(())
    if has.any():
        sims, positive = sims[has], positive[has]
        negatives = sims.masked_fill(positive, -float("inf")).topk(min(hard_negatives, sims.shape[1]), dim=1).values
        lse = torch.logsumexp(negatives / temperature, dim=1, keepdim=True)   # [B', 1]
        per_positive = F.softplus(lse - (sims - margin) / temperature)       # [B', M]
        loss_ver = (per_positive * positive).sum(1).div(positive.sum(1)).mean()
        loss = loss + loss_ver
        parts["verification"] = loss_ver.item()
    if anchor_weight > 0:
        loss_anchor = (o - anchor).pow(2).sum(-1).mean()
        loss = loss + anchor_weight * loss_anchor
        parts["anchor"] = loss_anchor.item()
    return loss, parts
