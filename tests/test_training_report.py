"""The evaluation's tables and the model card's summary of the shipped recipe."""
from __future__ import annotations

import json

from viewdiff.training.report import card_summary, write_report


def _cell(mean: float, vs: dict | None = None) -> dict:
    return {"per_fold": [mean] * 2, "mean": mean, "seed_means": [mean], "ci95": [mean - 0.01, mean + 0.01], **(vs or {})}


def _results() -> dict:
    methods = {}
    for m, value in (("raw", 0.90), ("flip_fused", 0.92), ("enhanced_map", 0.93)):
        versus = {} if m == "flip_fused" else {"vs_flip_fused": {"mean_diff": value - 0.92, "wins": 2, "ties": 0,
                                                                 "losses": 0, "p": 0.5, "diff_ci95": [0.001, 0.02]}}
        entry = {"seconds_per_fold": 1.0, "recipe": None}
        for key in ("cfp_fp", "second"):
            for proto in ("probe", "both", "fused"):
                for metric in ("accuracy", "tar_far1", "tar_far01", "pauc"):
                    entry[f"{key}/{proto}/{metric}"] = _cell(value, versus)
        entry["cfp_fp/probe/rank1_heldout"] = entry["cfp_fp/both/rank1_heldout"] = _cell(value)
        entry["cfp_fp/fused/rank1_heldout"] = _cell(value)
        for metric in ("accuracy", "tar_far1", "tar_far01", "pauc"):
            entry[f"cfp_ff/probe/{metric}"] = _cell(0.99)
        methods[m] = entry
    return {"folds": [1, 2], "seeds": [0], "fingerprint": "x", "methods": methods,
            "second": {"dataset": "cplfw_train", "pairs": 10, "same": 2, "definition": "frontal vs turned"}}


def test_the_second_test_gets_its_own_tables(tmp_path):
    text = write_report(_results(), tmp_path / "tables.md")
    assert "Second test: cplfw_train" in text and text.count("| enhanced_map | flip_fused |") >= 4


def test_card_summary_holds_the_demo_protocols_figures_for_both_tests():
    card = card_summary(_results(), "enhanced_map", "docs/results/x/results.json")
    assert card["cfp_fp"] == {"raw": 0.90, "flip_fused": 0.92, "model": 0.93, "diff_ci95": [0.001, 0.02],
                              "wins_ties_losses": [2, 0, 0]}
    assert card["second"]["dataset"] == "cplfw_train" and card["folds"] == 2
    json.dumps(card)
