"""Evaluation end to end on a small real subset (10 CFP identities, 1 Pointing'04 person)."""
from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import pytest

from viewdiff.training.evaluate import CANDIDATES, METHODS, fold_config, inner_folds, main, recipe_name
from viewdiff.training.metrics import verification_accuracy
from viewdiff.training.train import TrainConfig

FAST = ["--voxel_resolution", "8", "--threads", "1", "--quiet", "--epochs", "2"]


def test_evaluate_end_to_end(small_cache, data_root, tmp_path):
    out = tmp_path / "results"
    results = main(["--data_dir", str(small_cache), "--data_root", str(data_root), "--max_identities", "10",
                    "--folds", "1,2", "--seeds", "0,1", "--methods", "mirror,global_shift,dream,enhanced,enhanced_nested",
                    "--work_dir", str(tmp_path / "work"), "--out", str(out), "--quiet", "--jobs", "2",
                    "--train_args", " ".join(FAST)])
    methods = results["methods"]
    assert set(methods) == {"raw", "mirror", "global_shift", "dream", "enhanced", "enhanced_nested"}
    for entry in methods.values():
        for key in ("cfp_fp/probe/accuracy", "cfp_fp/probe/rank1", "cfp_fp/both/rank1", "cfp_ff/probe/accuracy"):
            assert len(entry[key]["per_fold"]) == 2 and all(0.0 <= a <= 1.0 for a in entry[key]["per_fold"])
        # one identity per fold: no different-person pair to set a FAR threshold on, so TAR is undefined
        assert len(entry["cfp_fp/probe/tar_far1"]["per_fold"]) == 2
    assert len(methods["enhanced"]["cfp_fp/probe/rank1"]["seed_means"]) == 2     # two seeds trained
    assert len(methods["mirror"]["cfp_fp/probe/rank1"]["seed_means"]) == 1       # nothing to seed
    assert methods["raw"]["cfp_fp/probe/accuracy"]["mean"] > 0.6                 # real embeddings, real pairs
    assert methods["enhanced"]["cfp_fp/probe/accuracy"]["vs_raw"]["wins"] + \
        methods["enhanced"]["cfp_fp/probe/accuracy"]["vs_raw"]["losses"] <= 2
    # raw is raw in both protocols, and frontal pairs are untouched by the untrained baselines
    assert methods["raw"]["cfp_fp/both/accuracy"] ["per_fold"] == methods["raw"]["cfp_fp/probe/accuracy"]["per_fold"]
    assert methods["mirror"]["cfp_ff/probe/accuracy"]["mean"] == methods["raw"]["cfp_ff/probe/accuracy"]["mean"]
    assert [row["yaw"] for row in methods["enhanced"]["pointing04"]] == [0, 15, 30, 45, 60, 75, 90]   # every bin
    assert json.loads((out / "results.json").read_text())["folds"] == [1, 2]
    # nested selection: each test fold's recipe was validated on two other folds, never on the test fold
    selections = methods["enhanced_nested"]["selections"]
    assert [s["test_fold"] for s in selections] == [1, 2]
    for s in selections:
        assert len(s["inner_folds"]) == 2 and s["test_fold"] not in s["inner_folds"]
        assert set(s["scores"]) == {recipe_name(r) for r in CANDIDATES} and s["recipe"] in CANDIDATES
        assert s["scores"][s["chosen"]]["score"] == max(v["score"] for v in s["scores"].values())
    inner_run = json.loads((tmp_path / "work" / f"enhanced_nested_seed0_fold{selections[0]['inner_folds'][0]:02d}_test01_"
                            f"{recipe_name(CANDIDATES[0])}" / "final_model" / "config.json").read_text())
    assert inner_run["metadata"]["train_config"]["exclude_fold"] == 1
    tables = (out / "tables.md").read_text()
    assert "| raw |" in tables and "Pointing'04" in tables and "CFP-FF" in tables
    assert "Nested selection of enhanced_nested" in tables and f"| 1 | {', '.join(map(str, selections[0]['inner_folds']))} | " in tables


def test_one_fold_is_refused_early_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match="--folds needs at least 2 folds for out-of-fold thresholds"):
        main(["--data_dir", str(tmp_path), "--folds", "5", "--out", str(tmp_path / "out")])
    scores, same = np.array([0.9, 0.1, 0.8, 0.2]), np.array([True, False, True, False])
    with pytest.raises(ValueError, match="only fold"):
        verification_accuracy(scores, same, np.full(4, 5))
    assert verification_accuracy(scores, same, np.array([1, 1, 2, 2])).tolist() == [1.0, 1.0]


def test_fold_recipes_are_train_configs_with_the_extra_flags_last(tmp_path):
    args = argparse.Namespace(data_dir="cache", backend="insightface", work_dir=str(tmp_path), max_identities=10,
                              train_args="--voxel_resolution 4 --epochs 5")
    config = fold_config("dream_l2", 7, 3, args)
    assert config == replace(replace(TrainConfig(), **METHODS["dream_l2"]), data_dir="cache", datasets="cfp",
                             epochs=5, val_fold=7, seed=3, quiet=True, checkpoint_every=10 ** 6, max_identities=10,
                             voxel_resolution=4, save_dir=str(tmp_path / "dream_l2_seed3_fold07"))
    assert config.model == "dream" and config.identity_weight == 0.0 and config.loss == "regression"
    ablation = fold_config("enhanced_no_gate", 1, 0, args)
    assert ablation.use_pose_gate is False and ablation.use_mirror_view is True


def test_inner_folds_follow_the_test_fold_and_skip_it():
    assert inner_folds(3, list(range(1, 11))) == [4, 5]
    assert inner_folds(10, list(range(1, 11))) == [1, 2]
    assert inner_folds(9, list(range(1, 11))) == [10, 1]
