"""Evaluation end to end on a small real subset (10 CFP identities, 1 Pointing'04 person)."""
from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import pytest

from viewdiff.training.evaluate import fold_config, main
from viewdiff.training.metrics import verification_accuracy
from viewdiff.training.train import TrainConfig

FAST = ["--voxel_resolution", "8", "--threads", "1", "--quiet"]


def test_evaluate_end_to_end(small_cache, data_root, tmp_path):
    out = tmp_path / "results"
    results = main(["--data_dir", str(small_cache), "--data_root", str(data_root), "--max_identities", "10",
                    "--folds", "1,2", "--epochs", "2", "--work_dir", str(tmp_path / "work"), "--out", str(out),
                    "--train_args", " ".join(FAST)])
    assert set(results["cfp_fp"]) == {"raw", "dream_l2", "dream", "enhanced"}
    for method in results["cfp_fp"].values():
        assert len(method["accuracy"]) == 2 and all(0.0 <= a <= 1.0 for a in method["accuracy"])
    assert results["cfp_fp"]["raw"]["accuracy"][0] > 0.6  # real embeddings verify real pairs
    assert json.loads((out / "results.json").read_text())["folds"] == [1, 2]
    assert (out / "pointing04_similarity.html").is_file() and "| raw |" in (out / "tables.md").read_text()


def test_one_fold_is_refused_early_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match="--folds needs at least 2 folds for out-of-fold thresholds"):
        main(["--data_dir", str(tmp_path), "--folds", "5", "--out", str(tmp_path / "out")])
    scores, same = np.array([0.9, 0.1, 0.8, 0.2]), np.array([True, False, True, False])
    with pytest.raises(ValueError, match="only fold"):
        verification_accuracy(scores, same, np.full(4, 5))
    assert verification_accuracy(scores, same, np.array([1, 1, 2, 2])).tolist() == [1.0, 1.0]


def test_fold_recipes_are_train_configs_with_the_extra_flags_last(tmp_path):
    args = argparse.Namespace(data_dir="cache", backend="dlib", epochs=2, seed=3, work_dir=str(tmp_path),
                              max_identities=10, train_args="--voxel_resolution 4 --epochs 5")
    config = fold_config("dream_l2", 7, args)
    assert config == replace(TrainConfig(), data_dir="cache", datasets="cfp", model="dream", identity_weight=0.0,
                             epochs=5, val_fold=7, seed=3, quiet=True, checkpoint_every=2, max_identities=10,
                             voxel_resolution=4, save_dir=str(tmp_path / "dream_l2_fold07"))

