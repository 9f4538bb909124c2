"""The model card's plain-words account of what the shipped pose transformer measured."""
from __future__ import annotations

from viewdiff.demo.model_card import measured_sentence


def _evaluation(low: float, high: float, second: bool = True) -> dict:
    figures = {"raw": 0.9057, "flip_fused": 0.9286, "model": 0.9300, "diff_ci95": [low, high],
               "wins_ties_losses": [5, 2, 3]}
    out = {"method": "enhanced_map", "folds": 10, "seeds": [0], "cfp_fp": figures}
    if second:
        out["second"] = {"dataset": "cplfw_train", **figures}
    return out


def test_the_card_says_plainly_whether_the_model_beats_the_mirror_trick():
    tie = measured_sentence(_evaluation(-0.006, 0.009))
    assert "93.0%" in tie and "90.6%" in tie and "92.9%" in tie and "level with" in tie
    assert "better in 5, equal in 2, worse in 3" in tie and "CPLFW" in tie
    assert "better than" in measured_sentence(_evaluation(0.001, 0.02, second=False))
    assert "worse than" in measured_sentence(_evaluation(-0.02, -0.001))


def test_without_an_evaluation_the_card_points_to_the_report():
    assert "evaluation report" in measured_sentence(None)
