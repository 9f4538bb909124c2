"""The evaluation's tables and the model card's summary of the shipped recipe."""
from __future__ import annotations

import json

import pytest

from viewdiff.training.report import ablation_summary, card_summary, write_report


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


def _ablations() -> dict:
    """An ablation run: the full model (the reference) and two parts tried, one removed, one added."""
    results = _results()
    methods = results["methods"]
    full = methods.pop("enhanced_map")
    methods["enhanced_map_gallery"] = full
    for m, value, ci in (("enhanced_map_no_projection", 0.925, [-0.015, 0.004]), ("enhanced_map_prior", 0.90, [-0.05, -0.01])):
        entry = json.loads(json.dumps(full))
        for key in ("cfp_fp", "second"):
            entry[f"{key}/fused/tar_far01"] = _cell(value, {"vs_enhanced_map_gallery": {
                "mean_diff": value - 0.93, "wins": 1, "ties": 0, "losses": 1, "p": 1.0, "diff_ci95": ci}})
        methods[m] = entry
    return {**results, "reference": "enhanced_map_gallery"}


def test_the_ablation_tables_compare_every_part_with_the_full_model(tmp_path):
    text = write_report(_ablations(), tmp_path / "tables.md")
    assert "Paired with raw, flip_fused, enhanced_map_gallery" in text
    assert "| enhanced_map_no_projection | enhanced_map_gallery | " in text


def test_the_card_says_what_each_part_adds_with_minus_without():
    summary = ablation_summary(_ablations(), "docs/results/a/results.json")
    parts = {p["part"]: p for p in summary["parts"]}
    assert set(parts) == {"projection", "prior"} and summary["reference"] == "enhanced_map_gallery"
    # removed: with (the full model) minus without; the interval and the folds flip sides
    assert parts["projection"]["cfp_fp"] == {"with": 0.93, "without": 0.925, "diff_ci95": [-0.004, 0.015],
                                             "wins_ties_losses": [1, 0, 1]}
    # added: with (the ablation) minus without (the full model), as measured
    assert parts["prior"]["second"]["with"] == 0.90 and parts["prior"]["second"]["diff_ci95"] == [-0.05, -0.01]
    results = _results()
    results["methods"]["enhanced_map_gallery"] = results["methods"]["enhanced_map"]
    card = card_summary(results, "enhanced_map_gallery", "docs/results/x/results.json", summary)
    assert card["ablations"]["parts"] == summary["parts"]
    json.dumps(card)
    with pytest.raises(ValueError, match="--reference enhanced_map"):   # another model's parts are not the card's
        card_summary(_results(), "enhanced_map", "docs/results/x/results.json", summary)


def test_an_ablation_run_without_its_full_model_is_refused():
    results = _ablations()
    del results["reference"]
    with pytest.raises(ValueError, match="--reference"):
        ablation_summary(results, "x")
