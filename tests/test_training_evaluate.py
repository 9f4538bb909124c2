"""Evaluation end to end on a small real subset (10 CFP identities, 1 Pointing'04 person)."""
from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import pytest

from viewdiff.training.evaluate import CANDIDATES, METHODS, early_stopping_fold, fold_config, inner_folds, main, recipe_name
from viewdiff.training.protocols import BOOTSTRAP, bootstrap, interval
from viewdiff.training.metrics import verification_accuracy
from viewdiff.training.train import TrainConfig, train

FAST = ["--voxel_resolution", "8", "--threads", "1", "--quiet", "--epochs", "2"]


def test_evaluate_end_to_end(small_cache, data_root, tmp_path):
    out = tmp_path / "results"
    results = main(["--data_dir", str(small_cache), "--data_root", str(data_root), "--max_identities", "10",
                    "--folds", "1,2", "--seeds", "0,1", "--methods", "mirror,global_shift,dream,enhanced,enhanced_nested",
                    "--reference", "enhanced",
                    "--work_dir", str(tmp_path / "work"), "--out", str(out), "--quiet", "--jobs", "2",
                    "--train_args", " ".join(FAST + ["--loss", "gallery"])])   # (one person per fold: no early stopping)
    methods = results["methods"]
    # flip_fused, the practitioner's bar, is always evaluated and every method is compared with it
    assert set(methods) == {"raw", "flip_fused", "mirror", "global_shift", "dream", "enhanced", "enhanced_nested"}
    assert list(methods)[:2] == ["raw", "flip_fused"]
    for m, entry in methods.items():
        for key in ("cfp_fp/probe/accuracy", "cfp_fp/probe/rank1_heldout", "cfp_fp/both/rank1_heldout",
                    "cfp_ff/probe/accuracy"):
            assert len(entry[key]["per_fold"]) == 2 and all(0.0 <= a <= 1.0 for a in entry[key]["per_fold"])
        # one identity per fold: no different-person pair to set a FAR threshold on, so TAR, pAUC and their
        # intervals are undefined (NaN), but present
        for metric in ("tar_far1", "tar_far01", "pauc"):
            assert len(entry[f"cfp_fp/probe/{metric}"]["per_fold"]) == 2
            assert len(entry[f"cfp_fp/fused/{metric}"]["ci95"]) == 2
        for proto in ("probe", "both", "fused"):
            for metric in ("accuracy", "tar_far1", "tar_far01", "pauc", "rank1_heldout"):
                cell = entry[f"cfp_fp/{proto}/{metric}"]
                assert ("vs_raw" in cell) == (m != "raw") and ("vs_flip_fused" in cell) == (m != "flip_fused")
                if m != "flip_fused" and metric in ("tar_far1", "tar_far01", "pauc"):
                    assert len(cell["vs_flip_fused"]["diff_ci95"]) == 2
                # --reference: an ablation's full model, compared with every other method, interval and all
                assert ("vs_enhanced" in cell) == (m != "enhanced")
                if m != "enhanced" and metric in ("tar_far1", "tar_far01", "pauc"):
                    assert len(cell["vs_enhanced"]["diff_ci95"]) == 2
        # held-out rank-1: one identity per fold here, so every profile finds it
        assert entry["cfp_fp/probe/rank1_heldout"]["per_fold"] == [1.0, 1.0]
    assert len(methods["enhanced"]["cfp_fp/probe/rank1_heldout"]["seed_means"]) == 2     # two seeds trained
    assert len(methods["mirror"]["cfp_fp/probe/rank1_heldout"]["seed_means"]) == 1       # nothing to seed
    assert methods["raw"]["cfp_fp/probe/accuracy"]["mean"] > 0.6                 # real embeddings, real pairs
    assert methods["enhanced"]["cfp_fp/probe/accuracy"]["vs_raw"]["wins"] + \
        methods["enhanced"]["cfp_fp/probe/accuracy"]["vs_raw"]["losses"] <= 2
    # raw is raw in both protocols, and frontal pairs are untouched by the untrained baselines
    assert methods["raw"]["cfp_fp/both/accuracy"] ["per_fold"] == methods["raw"]["cfp_fp/probe/accuracy"]["per_fold"]
    assert methods["mirror"]["cfp_ff/probe/accuracy"]["mean"] == methods["raw"]["cfp_ff/probe/accuracy"]["mean"]
    assert [row["yaw"] for row in methods["enhanced"]["pointing04"]] == [0, 15, 30, 45, 60, 75, 90]   # every bin
    assert json.loads((out / "results.json").read_text())["folds"] == [1, 2]
    # no fold model was validated (or chosen) on its test fold: every model the run trained says which fold it
    # is tested on, never trains on it, and validates on nothing (a scored fold model) or on an inner fold
    configs = {path.parent.parent.name: json.loads(path.read_text())["metadata"]["train_config"]
               for path in (tmp_path / "work").glob("*/final_model/config.json")}
    outer = {tag: c for tag, c in configs.items() if "_test" not in tag}
    assert len(outer) == 2 * 2 * 3 and len(configs) == len(outer) + 2 * 2 * len(CANDIDATES)   # 2 folds, 2 seeds
    for tag, c in configs.items():
        assert c["exclude_fold"] in (1, 2) and c["val_fold"] != c["exclude_fold"], tag
    for tag, c in outer.items():
        assert c["val_fold"] == 0 and tag.endswith(f"_fold{c['exclude_fold']:02d}"), tag
        assert not (tmp_path / "work" / tag / "best_model").exists()
    # nested selection: each test fold's recipe was validated on two other folds, never on the test fold
    selections = methods["enhanced_nested"]["selections"]
    assert [s["test_fold"] for s in selections] == [1, 2]
    for s in selections:
        assert len(s["inner_folds"]) == 2 and s["test_fold"] not in s["inner_folds"]
        for v in s["inner_folds"]:
            inner = configs[f"enhanced_nested_seed0_fold{v:02d}_test{s['test_fold']:02d}_{recipe_name(CANDIDATES[0])}"]
            assert (inner["val_fold"], inner["exclude_fold"]) == (v, s["test_fold"])
        assert set(s["scores"]) == {recipe_name(r) for r in CANDIDATES} and s["recipe"] in CANDIDATES
        assert s["scores"][s["chosen"]]["score"] == max(v["score"] for v in s["scores"].values())
    inner_run = json.loads((tmp_path / "work" / f"enhanced_nested_seed0_fold{selections[0]['inner_folds'][0]:02d}_test01_"
                            f"{recipe_name(CANDIDATES[0])}" / "final_model" / "config.json").read_text())
    assert inner_run["metadata"]["train_config"]["exclude_fold"] == 1
    tables = (out / "tables.md").read_text()
    assert "| raw |" in tables and "Pointing'04" in tables and "CFP-FF" in tables
    assert "| TAR @ FAR 0.1% [95% CI] | pAUC, FAR 0.1-1% [95% CI] | held-out rank-1 |" in tables
    assert "| enhanced | flip_fused | " in tables and "| enhanced | raw | " in tables and "| dream | enhanced | " in tables
    assert "p=0.000" not in tables and "| n/a |" in tables   # 2 folds: p >= 0.5; undefined TARs are not "significant"
    assert "Nested selection of enhanced_nested" in tables and f"| 1 | {', '.join(map(str, selections[0]['inner_folds']))} | " in tables


def test_one_fold_is_refused_early_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match="--folds needs at least 2 folds for out-of-fold thresholds"):
        main(["--data_dir", str(tmp_path), "--folds", "5", "--out", str(tmp_path / "out")])


def test_a_reference_that_is_not_evaluated_is_refused_with_the_fix(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--data_dir", str(tmp_path), "--methods", "enhanced_map_no_lora", "--reference", "enhanced_map_gallery"])
    assert "add it to --methods" in capsys.readouterr().err
    scores, same = np.array([0.9, 0.1, 0.8, 0.2]), np.array([True, False, True, False])
    with pytest.raises(ValueError, match="only fold"):
        verification_accuracy(scores, same, np.full(4, 5))
    assert verification_accuracy(scores, same, np.array([1, 1, 2, 2])).tolist() == [1.0, 1.0]


def test_fold_recipes_are_train_configs_with_the_extra_flags_last(tmp_path):
    args = argparse.Namespace(data_dir="cache", datasets="cfp", backend="insightface", work_dir=str(tmp_path), max_identities=10,
                              train_args="--voxel_resolution 4 --epochs 5")
    config = fold_config("dream_l2", 7, 3, args)
    assert config == replace(replace(TrainConfig(), **METHODS["dream_l2"]), data_dir="cache", datasets="cfp",
                             epochs=5, val_fold=0, exclude_fold=7, seed=3, quiet=True, checkpoint_every=10 ** 6,
                             max_identities=10, voxel_resolution=4, save_dir=str(tmp_path / "dream_l2_seed3_fold07"))
    assert config.model == "dream" and config.identity_weight == 0.0 and config.loss == "regression"
    ablation = fold_config("enhanced_no_gate", 1, 0, args)
    assert ablation.use_pose_gate is False and ablation.use_mirror_view is True


def test_inner_folds_follow_the_test_fold_and_skip_it():
    assert inner_folds(3, list(range(1, 11))) == [4, 5]
    assert inner_folds(10, list(range(1, 11))) == [1, 2]
    assert inner_folds(9, list(range(1, 11))) == [10, 1]


def test_a_fold_model_is_never_validated_on_its_test_fold(tmp_path):
    args = argparse.Namespace(data_dir=str(tmp_path / "no_cache"), datasets="cfp", backend="insightface", work_dir=str(tmp_path),
                              max_identities=10, train_args="")
    for method in (m for m, recipe in METHODS.items() if recipe is not None):   # the trained ones
        config = fold_config(method, 4, 0, args)
        # tested on 4: never seen; early-stopped on the next fold (the verification recipe) or not validated at all
        stop = early_stopping_fold(4) if config.loss == "verification" else 0
        assert (config.exclude_fold, config.val_fold) == (4, stop) and stop != 4, method
    assert early_stopping_fold(10) == 1 and fold_config("enhanced_map_verification", 4, 0, args).val_fold == 5
    inner = fold_config("enhanced_nested", 4, 0, args, CANDIDATES[0], val_fold=5)
    assert (inner.exclude_fold, inner.val_fold) == (4, 5)
    # not even through --train_args: train refuses before reading any data
    args.train_args = "--val_fold 4"
    with pytest.raises(ValueError, match="never be validated or chosen on its test fold"):
        train(fold_config("enhanced", 4, 0, args))


class Identities:
    """The one field `bootstrap` reads: 20 identities, 10 per fold."""
    identity = np.repeat([f"id{i}" for i in range(20)], 2)


def test_bootstrap_resamples_every_method_alike_so_paired_differences_are_tight():
    rng = np.random.default_rng(0)
    pairs = {"a": np.repeat(np.arange(0, 40, 2), 40), "b": np.repeat(np.arange(1, 40, 2), 40),
             "same": np.tile(np.r_[np.ones(20, bool), np.zeros(20, bool)], 20), "fold": np.repeat([1, 2], 400)}
    pairs["b"] = np.where(pairs["same"], pairs["a"] + 1, (pairs["a"] + 2 + 2 * rng.integers(9, size=800)) % 40 + 1)
    base = np.where(pairs["same"], rng.normal(0.5, 0.2, 800), rng.normal(0.0, 0.15, 800))
    runs = {"flip_fused": [{"fp_scores": {p: base for p in ("probe", "both", "fused")}}],
            "better": [{"fp_scores": {p: base + 0.02 * pairs["same"] for p in ("probe", "both", "fused")}}] * 2}
    boot = bootstrap(runs, Identities, pairs)
    ff, better = boot["flip_fused"]["probe"]["pauc"], boot["better"]["probe"]["pauc"]
    assert ff.shape == (BOOTSTRAP,) and (better >= ff).all()     # same resamples: never worse than the base
    lo, hi = interval(better - ff)
    assert 0 <= lo <= hi and hi - lo < np.ptp(interval(ff))
    assert np.isnan(interval(np.array([0.5, np.nan]))).all()   # NaN in (a subset without such pairs), NaN out


def test_extra_training_datasets_are_checked_before_any_training(tmp_path, data_root, analyzer, capsys):
    """--datasets: CFP first (its training folds); a folder dataset holding a CFP person is refused with the fix."""
    import shutil
    from viewdiff.training.listings import cfp_names
    from viewdiff.training.records import extract_records
    for bad in ("cplfw_train", "cfp,pointing04"):
        with pytest.raises(SystemExit):
            main(["--data_dir", str(tmp_path), "--datasets", bad, "--out", str(tmp_path / "out")])
    cplfw = data_root / "cplfw_train" / "images"
    if not cplfw.is_dir():
        pytest.skip("cplfw_train not found beside the project")
    person = cfp_names(data_root)["cfp_007"].replace(" ", "_")
    folder = tmp_path / "faces" / person
    folder.mkdir(parents=True)
    shutil.copy(next(iter(sorted(next(iter(sorted(cplfw.iterdir()))).iterdir()))), folder / "1.jpg")
    extract_records(f"folder:{tmp_path / 'faces'}", data_root, analyzer, tmp_path / "cache", progress=False)
    with pytest.raises(SystemExit):
        main(["--data_dir", str(tmp_path / "cache"), "--data_root", str(data_root), "--datasets",
              f"cfp,folder:{tmp_path / 'faces'}", "--out", str(tmp_path / "out")])
    assert "are CFP people" in capsys.readouterr().err and not (tmp_path / "out").exists()
