"""The model card's plain-words account of what the shipped pose transformer measured."""
from __future__ import annotations

from viewdiff.demo.model_card import measured_sentence, part_verdict, parts_sentence, signed


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


def _with_parts() -> dict:
    def part(name: str, low: float, high: float) -> dict:
        figures = {"with": 0.93, "without": 0.927, "diff_ci95": [low, high], "wins_ties_losses": [4, 3, 3]}
        return {"part": name, "tried": "off", "method": f"enhanced_map_no_{name}", "cfp_fp": figures,
                "second": {**figures, "with": 0.87, "without": 0.872}}
    return {**_evaluation(-0.006, 0.009), "ablations": {"reference": "enhanced_map_gallery", "folds": 10, "seeds": [0],
                                                        "parts": [part("projection", -0.004, 0.01),
                                                                  part("lora", 0.001, 0.01)]}}


def test_the_card_says_what_each_part_adds_and_what_does_not_help():
    text = parts_sentence(_with_parts())
    assert "the 3D step: no clear difference (+0.3 points on CFP, better in 4, worse in 3 of 10 groups; -0.2 in the " \
           "wild)" in text and "the pose-aware attention: it helps" in text
    assert "it helps" in text and "None of these clearly helps" not in text
    only = parts_sentence(_with_parts(), ("projection",))
    assert "3D step" in only and "attention" not in only and "None of these clearly helps." in only
    assert parts_sentence(_evaluation(-0.006, 0.009)) == "" and parts_sentence(None) == ""


def test_a_difference_that_rounds_to_zero_has_no_sign():
    assert [signed(x) for x in (1.94, -0.2, -0.04, 0.04, 0.0)] == ["+1.9", "-0.2", "0.0", "0.0", "0.0"]


def test_a_part_ahead_in_nearly_every_group_is_not_called_clear_while_its_interval_includes_0():
    def figures(low, high, wtl):
        return {"with": 0.93, "without": 0.91, "diff_ci95": [low, high], "wins_ties_losses": wtl}
    assert part_verdict(figures(-0.003, 0.045, [10, 0, 0])).startswith("better in nearly every group, though within")
    assert part_verdict(figures(-0.045, 0.003, [0, 1, 9])).startswith("worse in nearly every group")
    assert part_verdict(figures(-0.003, 0.045, [7, 1, 2])) == "no clear difference"
    assert part_verdict(figures(0.001, 0.045, [6, 2, 2])) == "it helps"
    assert part_verdict(figures(-0.03, -0.001, [2, 2, 6])) == "it hurts"
