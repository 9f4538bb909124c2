"""Training end to end on a small real subset (10 CFP identities, 1 Pointing'04 person)."""
from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from viewdiff.embeddings import l2_normalize
from viewdiff.models.checkpoint import load_pretrained
from viewdiff.models.config import TransformerConfig
from viewdiff.training.datasets import PosePairDataset, stack_pairs
from viewdiff.training.evaluate import transform
from viewdiff.training.metrics import identity_means
from viewdiff.training.protocols import profile_rank1
from viewdiff.training.records import load_records
from viewdiff.paths import REPO_ROOT
from viewdiff.training.train import MODEL_FIELDS, TrainConfig, train
from viewdiff.training.validation import evaluate_pairs

REPO = Path(__file__).resolve().parent.parent
FAST = ["--voxel_resolution", "8", "--threads", "1", "--quiet"]


def run_train(cache: Path, save_dir: Path, *extra: str):
    config = TrainConfig.from_args(["--data_dir", str(cache), "--save_dir", str(save_dir), *FAST, *extra])
    return config, train(config)


def test_training_fits_the_frontal_regression_on_real_faces(small_cache, tmp_path):
    args, result = run_train(small_cache, tmp_path / "run", "--epochs", "30", "--batch_size", "32",
                             "--dropout", "0", "--loss", "regression", "--identity_weight", "0")
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < 0.9 * losses[0]
    cfp = load_records(small_cache, "cfp", "insightface")
    pairs = stack_pairs(PosePairDataset(cfp))
    profile = pairs["source_pose"][:, 0].abs() > 45
    scores = evaluate_pairs(result.model, {k: v[profile] for k, v in pairs.items()}, args)
    # profiles end up closer to their identity's frontal mean than the raw embeddings are
    assert scores["val_cosine"] > scores["val_cosine_raw"] + 0.01


def test_gallery_loss_separates_training_identities(small_cache, tmp_path):
    """Transformed profiles against the raw frontal gallery (the product's protocol), in-sample."""
    _, result = run_train(small_cache, tmp_path / "run", "--epochs", "20", "--batch_size", "32",
                          "--source_weight", "0", "--frontal_sources", "10")
    cfp = load_records(small_cache, "cfp", "insightface")
    raw_emb = l2_normalize(cfp.embedding)
    moved = transform(result.model, cfp)
    raw = np.mean([profile_rank1(raw_emb, raw_emb, cfp, k, "probe", among="all") for k in range(1, 11)])
    trained = np.mean([profile_rank1(raw_emb, moved, cfp, k, "probe", among="all") for k in range(1, 11)])
    assert trained >= raw, (raw, trained)   # (the strong embedder's raw rank-1 on 10 people is ~0.97 already)
    # the margin of a profile over the closest other identity (the gallery loss's job) grows
    frontal = cfp.found & (cfp.view == "frontal")
    gallery, ids = identity_means(raw_emb[frontal], cfp.identity[frontal])
    profiles = cfp.found & (cfp.view == "profile")
    own = ids[None, :] == cfp.identity[profiles][:, None]

    def margin(emb):
        sims = emb[profiles] @ gallery.T
        return float(np.mean(sims[own] - np.where(own, -np.inf, sims).max(1)))
    assert margin(moved) > margin(raw_emb) + 0.05, (margin(raw_emb), margin(moved))
    assert result.model.mirror_weight.item() != 0.5 and result.model.gate.centre.item() != 45.0   # both learned


def test_checkpoints_tensorboard_and_exported_weights(small_cache, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    export = tmp_path / "weights"
    _, result = run_train(small_cache, tmp_path / "run", "--epochs", "2", "--val_fold", "1", "--loss", "gallery",
                          "--checkpoint_every", "1", "--export_dir", str(export))   # (one person per fold here: the
    # verification loss's early stopping needs two, tested with its own cache below)
    for epoch in (1, 2):
        state = torch.load(tmp_path / "run" / f"checkpoint_epoch_{epoch}_enhanced.pth", weights_only=True)
        assert state["epoch"] == epoch and "optimizer" in state and "scheduler" in state
    assert (tmp_path / "run" / "best_model" / "model.safetensors").is_file()
    model, meta = load_pretrained(export, embedding_dim=512)
    assert meta["val_fold"] == 1 and meta["backend"] == "insightface" and meta["epoch"] == 2
    assert meta["embedder_fingerprint"] == "28db0b514695b5c8"   # the records' embedder (weights are found by it)
    assert meta["train_config"]["source_weight"] == 3.0 and meta["train_config"]["temperature"] == 0.1   # the recipe
    assert meta["command"].startswith("python -m viewdiff.training.train ") and str(REPO_ROOT) not in meta["command"]
    assert TrainConfig.from_args(shlex.split(meta["command"])[3:]) == TrainConfig(**meta["train_config"])
    x, angles = torch.randn(3, 512), torch.tensor([[60.0, 0, 0], [-30, 10, 0], [0, 0, 0]])
    result.model.eval()
    assert torch.allclose(model(x, angles), result.model(x, angles), atol=1e-6)
    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    assert {"Train/Loss", "Epoch/ValLoss", "Epoch/ValCosineSim"} <= set(events.Tags()["scalars"])


def test_validating_on_the_test_fold_is_refused_before_any_work(tmp_path):
    config = TrainConfig.from_args(["--data_dir", str(tmp_path / "no_cache"), "--save_dir", str(tmp_path / "run"),
                                    "--val_fold", "3", "--exclude_fold", "3", *FAST])
    with pytest.raises(ValueError, match=r"never be validated or chosen on its test fold.*--val_fold 0"):
        train(config)
    assert not (tmp_path / "run").exists()   # refused before loading records or writing anything


def test_resume_continues_exactly(small_cache, tmp_path):
    common = ["--epochs", "3", "--checkpoint_every", "1", "--seed", "3"]
    _, straight = run_train(small_cache, tmp_path / "a", *common)
    _, resumed = run_train(small_cache, tmp_path / "b", *common,
                           "--resume", str(tmp_path / "a" / "checkpoint_epoch_1_enhanced.pth"))
    for (name, p), q in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(p, q), name
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in straight.history]


def test_prior_preservation_fine_tuning_caches_prior_samples(small_cache, tmp_path, capsys):
    base = tmp_path / "base"
    run_train(small_cache, tmp_path / "pre", "--epochs", "1", "--export_dir", str(base))
    flags = ["--epochs", "1", "--use_prior_preservation", "--base_model_path", str(base), "--lambda_prior", "0.5"]
    run_train(small_cache, tmp_path / "ft", *flags)
    assert "prior samples" in capsys.readouterr().out
    assert (tmp_path / "ft" / "prior_samples.safetensors").is_file()
    run_train(small_cache, tmp_path / "ft", *flags)
    assert "cache hit" in capsys.readouterr().out


@pytest.fixture(scope="module")
def small_maps(small_cache, analyzer) -> Path:
    """`small_cache` with the shipped embedder's 7x7 maps of the CFP crops and the faces' measured surfaces (what a
    map model reads)."""
    from viewdiff.training.records import extract_maps
    from viewdiff.training.surface import extract_surface
    extract_maps(small_cache, "cfp", analyzer.backend, analyzer.feature_maps)
    extract_surface(small_cache, "cfp", analyzer.backend, progress=False)
    return small_cache


def test_prior_samples_carry_every_model_input(small_maps):
    """The prior samples are the training photos with all that the model reads (the mirror and both maps: the
    earlier prior dropped them, so a map model crashed and a vector model lost its mirror term), sent to the
    source pose of another training photo."""
    from viewdiff.training.datasets import model_inputs
    from viewdiff.training.train import prior_samples
    pairs = stack_pairs(PosePairDataset(load_records(small_maps, "cfp", "insightface", maps=True, surface=True)))
    samples = prior_samples(pairs, seed=0)
    assert set(samples) == set(model_inputs(pairs)) >= {"src_mirror", "feature_map", "feature_map_mirror", "cell_depth"}
    assert all(samples[k] is pairs[k] for k in samples if k != "target_pose")
    poses = {tuple(p) for p in pairs["source_pose"].tolist()}
    assert {tuple(p) for p in samples["target_pose"].tolist()} == poses and not (samples["target_pose"] == 0).all()
    assert torch.equal(prior_samples(pairs, seed=0)["target_pose"], samples["target_pose"])


@pytest.mark.parametrize("loss", ["gallery", "regression"])
def test_prior_preservation_trains_a_map_model_with_each_loss(small_maps, tmp_path, loss):
    """A map model trained from scratch with the prior (its frozen start as the base): the recipe's loss is the
    task term (the earlier prior path always used the regression loss), the prior term is reported, starts
    at 0 and moves."""
    flags = ["--epochs", "2", "--batch_size", "64", "--datasets", "cfp", "--map_channels", "64", "--nhead", "4",
             "--token_dim", "32", "--loss", loss, "--use_prior_preservation", "--lambda_prior", "1.0"]
    _, with_prior = run_train(small_maps, tmp_path / "prior", *flags)
    _, without = run_train(small_maps, tmp_path / "plain", *flags[:-3])
    prior = [row["train_prior_loss"] for row in with_prior.history]
    assert all(0 < p < 1 for p in prior), prior   # non-zero once the model moves, bounded by lambda_prior
    task = [a["train_loss"] - p for a, p in zip(with_prior.history, prior)]
    # the first step of both runs sees the same batch and weights: the task terms are of one loss
    assert task[0] == pytest.approx(without.history[0]["train_loss"], rel=0.25), (task, without.history)
    assert (tmp_path / "prior" / "prior_samples.safetensors").is_file()


@pytest.mark.parametrize("flags", [["--model", "dream"], ["--use_cross_view", "--n_views", "4"],
                                   ["--no-use_lora_attention", "--no-use_projection_layer"]])
def test_variants_train(small_cache, tmp_path, flags):
    _, result = run_train(small_cache, tmp_path / "run", "--epochs", "1", *flags)
    assert np.isfinite(result.history[-1]["train_loss"])


def test_missing_cache_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m viewdiff.training.extract"):
        run_train(tmp_path, tmp_path / "run", "--epochs", "1")


@pytest.mark.parametrize("command", [["-m", "viewdiff.training.train"], ["-m", "viewdiff.train_enhanced"],
                                     ["viewdiff/train_enhanced.py"]])
def test_train_command_and_its_old_paths(command):
    out = subprocess.run([sys.executable, *command, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--use_prior_preservation" in out.stdout


def test_train_config_is_the_cli_and_its_command_round_trips(tmp_path):
    assert set(MODEL_FIELDS) <= {f.name for f in fields(TransformerConfig)}
    assert {"use_lora_attention", "rank", "voxel_resolution", "dropout", "num_layers"} <= set(MODEL_FIELDS)
    switches = {f.name for f in fields(TransformerConfig) if f.name.startswith("use_")}
    assert switches <= set(MODEL_FIELDS)   # every module can be switched off from the CLI (the ablations)
    # one default per setting: a model flag defaults to the model's own default
    train_defaults, model_defaults = TrainConfig(), TransformerConfig()
    assert ({n: getattr(train_defaults, n) for n in MODEL_FIELDS}
            == {n: getattr(model_defaults, n) for n in MODEL_FIELDS})
    assert TrainConfig.from_args([]) == TrainConfig()
    config = TrainConfig.from_args(["--no-use_lora_attention", "--use_amp", "--rank", "8", "--identity_weight", "0",
                                    "--save_dir", str(REPO_ROOT / "runs" / "x"), "--export_dir", str(tmp_path)])
    assert (config.use_lora_attention, config.use_amp, config.rank, config.identity_weight) == (False, True, 8, 0.0)
    command = config.command()
    assert "--save_dir runs/x" in command and str(tmp_path) in command  # repo paths relative, others as given
    assert TrainConfig.from_args(shlex.split(command)[3:]) == replace(config, save_dir="runs/x")
    assert TrainConfig.from_args(["--epochs", "3"], base=config) == replace(config, epochs=3)



def test_a_folder_dataset_joins_the_training_set(small_cache, analyzer, tmp_path):
    """``--datasets cfp,cplfw_train``: the folder dataset's people train beside CFP's (each in the folds but its
    own), a map model reads their maps and measured surfaces too; a folder dataset holding a CFP person is refused."""
    import shutil
    from viewdiff.training.listings import cfp_names
    from viewdiff.training.records import extract_maps, extract_records
    from viewdiff.training.surface import extract_surface
    from viewdiff.paths import data_root
    if not (data_root() / "cplfw_train").is_dir():
        pytest.skip("cplfw_train not found beside the project")
    extract_records("cplfw_train", data_root(), analyzer, small_cache, max_identities=4, progress=False)
    for name in ("cfp", "cplfw_train"):
        extract_maps(small_cache, name, "insightface", analyzer.feature_maps)
        extract_surface(small_cache, name, "insightface", progress=False)
    config, result = run_train(small_cache, tmp_path / "run", "--epochs", "1", "--datasets", "cfp,cplfw_train",
                               "--map_channels", "64")
    assert np.isfinite(result.history[-1]["train_loss"])
    cplfw = load_records(small_cache, "cplfw_train", "insightface")
    sources = PosePairDataset(cplfw)
    assert len(sources) > 0   # the folder's estimated-frontal photos are targets, its photos sources
    # a folder dataset with a CFP person in it is refused before any training
    shared = tmp_path / "faces"
    person = next(iter(cfp_names(data_root()).values())).replace(" ", "_")
    shutil.copytree(data_root() / "cplfw_train" / "images" / cplfw.identity[0].split(":")[1], shared / person)
    extract_records(f"folder:{shared}", data_root(), analyzer, small_cache, progress=False)
    with pytest.raises(ValueError, match="CFP people"):
        run_train(small_cache, tmp_path / "refused", "--epochs", "1", "--datasets", f"cfp,folder:{shared}")


def test_verification_recipe_trains_on_the_measured_surface_and_stops_early_on_an_inner_fold(small_maps, tmp_path):
    """The verification loss with a map model that places its features on the measured surface: the surface
    reaches the model (mirrored pairs get the mirrored surface), best_model is the epoch with the best inner-fold
    val_score, and the learned path moves: the gate's centre and the fold leave their start."""
    import shutil
    cache = tmp_path / "cache"   # the small cache with two people in fold 3 (one per fold there): early stopping
    shutil.copytree(small_maps, cache)   # needs different-person pairs in its fold
    records_file = cache / "insightface" / "cfp.npz"
    with np.load(records_file, allow_pickle=False) as z:
        cols = dict(z)
    second = np.unique(cols["identity"][cols["fold"] == 4])
    cols["fold"] = np.where(np.isin(cols["identity"], second), 3, cols["fold"])
    np.savez(records_file, **cols)
    flags = ["--epochs", "3", "--batch_size", "64", "--datasets", "cfp", "--map_channels", "64", "--nhead", "4",
             "--token_dim", "32", "--loss", "verification", "--margin", "0.1", "--val_fold", "3"]
    with pytest.raises(ValueError, match="different-person pairs"):
        run_train(small_maps, tmp_path / "one", *flags)
    config, result = run_train(cache, tmp_path / "ver", *flags)
    rows = result.history
    assert all({"val_score", "val_tar_far1", "val_tar_far01"} <= set(r) for r in rows)
    best = max(rows, key=lambda r: r["val_score"])
    _, meta = load_pretrained(tmp_path / "ver" / "best_model")
    assert meta["epoch"] == best["epoch"] and meta["val_score"] == pytest.approx(best["val_score"])
    model = result.model
    assert model.settings.use_face_surface and model.gate.centre.item() != pytest.approx(45.0)
    assert model.map_tokenizer.fold.weight.abs().sum() > 0


def test_the_dataset_mirrors_the_measured_surface_with_the_photo(small_maps):
    from viewdiff.faces.face_mesh import mirror_arrays
    records = load_records(small_maps, "cfp", "insightface", maps=True, surface=True)
    data = PosePairDataset(records, mirror=True, frontal_sources=None)
    n = len(data) // 2
    depth, keypoints = mirror_arrays(data.cell_depth[:n], data.keypoints_3d[:n])
    np.testing.assert_array_equal(data.cell_depth[n:], depth)
    np.testing.assert_allclose(data.keypoints_3d[n:], keypoints)
    found = records.subset(records.found)
    np.testing.assert_allclose(data.keypoints_3d[:n][0], found.keypoints_3d[0])   # measured, not the template
