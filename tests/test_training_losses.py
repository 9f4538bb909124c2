"""Training losses: the gallery InfoNCE against raw frontal means, the pull to the source, the regression loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from viewdiff.training.losses import embedding_loss, frontal_gallery, gallery_loss


def _pairs():
    g = torch.Generator().manual_seed(0)
    means = F.normalize(torch.randn(3, 16, generator=g), dim=-1)
    identity = torch.tensor([0, 0, 1, 2, 2])
    target_pose = torch.zeros(5, 3)
    target_pose[4] = torch.tensor([30.0, 0, 0])               # a pose -> pose pair (Pointing'04 style)
    target = means[identity].clone()
    target[4] = F.normalize(torch.randn(16, generator=g), dim=0)
    return {"target": target, "identity": identity, "target_pose": target_pose}, means


def test_frontal_gallery_holds_each_identity_frontal_mean():
    pairs, means = _pairs()
    gallery = frontal_gallery(pairs)
    assert gallery.shape == (3, 16)
    torch.testing.assert_close(gallery, means)


def test_gallery_loss_prefers_the_own_identity_and_stays_near_the_source():
    pairs, means = _pairs()
    gallery = frontal_gallery(pairs)
    src = F.normalize(means[pairs["identity"]] + 0.3 * torch.randn(5, 16, generator=torch.Generator().manual_seed(1)),
                      dim=-1)
    args = (pairs["target"], pairs["target_pose"], pairs["identity"], gallery, 0.1)
    on_own, parts = gallery_loss(means[pairs["identity"]], src, *args, source_weight=0.0)
    on_other, _ = gallery_loss(means[(pairs["identity"] + 1) % 3], src, *args, source_weight=0.0)
    assert on_own < on_other and set(parts) == {"gallery", "pose_pairs"}
    unmoved, parts = gallery_loss(src, src, *args, source_weight=5.0)
    assert parts["source"] < 1e-10                            # no pull when the output is the source
    moved, parts = gallery_loss(means[pairs["identity"]], src, *args, source_weight=5.0)
    assert parts["source"] > 0.01
    with_margin, parts_margin = gallery_loss(means[pairs["identity"]], src, *args, source_weight=0.0, margin=0.3)
    assert with_margin > on_own        # the own entry must now win by 0.3 of cosine: the same output costs more


def test_margin_only_penalises_the_own_identity():
    pairs, means = _pairs()
    gallery = frontal_gallery(pairs)
    args = (pairs["target"], pairs["target_pose"], pairs["identity"], gallery, 1.0)
    out = means[pairs["identity"]]
    frontal = (pairs["target_pose"].abs() < 1e-6).all(-1)
    logits = out[frontal] @ gallery.T
    logits[torch.arange(int(frontal.sum())), pairs["identity"][frontal]] -= 0.2
    expected = F.cross_entropy(logits, pairs["identity"][frontal])
    _, parts = gallery_loss(out, out, *args, source_weight=0.0, margin=0.2)
    assert abs(parts["gallery"] - expected.item()) < 1e-6


def test_regression_loss_is_zero_on_target_without_identity_term():
    pairs, means = _pairs()
    loss, parts = embedding_loss(pairs["target"], pairs["target"], pairs["identity"], 0.0, 0.05)
    assert loss.item() < 1e-6 and "identity" not in parts


def _bank():
    g = torch.Generator().manual_seed(1)
    bank = F.normalize(torch.randn(12, 16, generator=g), dim=-1)
    return bank, torch.arange(12) // 3   # 4 identities, 3 frontal photos each


def test_verification_loss_rewards_the_own_photos_over_the_hardest_others():
    from viewdiff.training.losses import verification_loss
    bank, ids = _bank()
    identity = torch.tensor([0, 2])
    near_own = bank[[0, 6]] + 0.05 * bank[[1, 7]]
    near_other = bank[[3, 9]]
    args = dict(identity=identity, bank=bank, bank_identity=ids, temperature=0.1, hard_negatives=4, anchor_weight=0.0)
    good, parts = verification_loss(near_own, near_own, margin=0.0, **args)
    bad, _ = verification_loss(near_other, near_other, margin=0.0, **args)
    assert good < bad and set(parts) == {"verification"}
    with_margin, _ = verification_loss(near_own, near_own, margin=0.2, **args)
    assert with_margin > good   # the own photos must win by the margin


def test_verification_loss_reads_only_the_hardest_negatives_and_keeps_the_anchor():
    from viewdiff.training.losses import verification_loss
    bank, ids = _bank()
    out = bank[[0]] + 0.3 * bank[[4]]
    easy = torch.cat([bank, -F.normalize(out, dim=-1)])   # a photo of a new identity, opposite the probe
    kw = dict(identity=torch.tensor([0]), temperature=0.1, margin=0.1, hard_negatives=3, anchor_weight=0.0)
    a, _ = verification_loss(out, out, bank=bank, bank_identity=ids, **kw)
    b, _ = verification_loss(out, out, bank=easy, bank_identity=torch.cat([ids, torch.tensor([9])]), **kw)
    torch.testing.assert_close(a, b)   # an easy negative is not among the 3 hardest
    anchored, parts = verification_loss(out, bank[[5]], bank=bank, bank_identity=ids,
                                        **{**kw, "anchor_weight": 2.0})
    assert anchored > a and parts["anchor"] > 0
