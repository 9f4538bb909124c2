"""Evaluation end to end on a small real subset (10 CFP identities, 1 Pointing'04 person)."""
from __future__ import annotations

import json

from viewdiff.training.evaluate import main

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
