"""Validation of a training run: val_score, what early stopping keeps the best epoch of."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from viewdiff.training.train import TrainConfig
from viewdiff.training.validation import VAL_TURNED, evaluate_pairs


class PhotoAsItIs(nn.Module):
    """The raw baseline: the photo's own embedding at every target pose."""

    def forward(self, src, **_):
        return src


def _pairs(noise: float):
    g = torch.Generator().manual_seed(0)
    people = F.normalize(torch.randn(20, 64, generator=g), dim=-1)
    identity = torch.arange(20).repeat_interleave(3)
    src = F.normalize(people[identity] + noise * torch.randn(60, 64, generator=g), dim=-1)
    pose = torch.zeros(60, 3)
    pose[1::3, 0], pose[2::3, 0] = 70.0, 10.0   # one turned photo of each person is a probe, the others are not
    pairs = {"src": src, "src_mirror": src, "source_pose": pose, "keypoints_3d": torch.zeros(60, 5, 3),
             "target": people[identity], "target_pose": torch.zeros(60, 3), "identity": identity}
    return pairs, (people, torch.arange(20))


def test_val_score_is_the_turned_photos_tar_against_the_frontal_bank():
    config = TrainConfig()
    pairs, bank = _pairs(0.05)
    clean = evaluate_pairs(PhotoAsItIs(), pairs, config, bank)
    assert clean["val_tar_far1"] == clean["val_tar_far01"] == clean["val_score"] == 1.0   # own photo always wins
    pairs, bank = _pairs(3.0)   # photos that barely resemble their person
    noisy = evaluate_pairs(PhotoAsItIs(), pairs, config, bank)
    assert noisy["val_score"] < 0.5 and set(noisy) >= {"val_loss", "val_cosine", "val_cosine_raw"}
    assert "val_score" not in evaluate_pairs(PhotoAsItIs(), pairs, config)   # no bank: no verification figure
    assert VAL_TURNED < 70.0
