"""Train the enhanced pose transformer (or the DREAM baseline) on cached face records.

    python -m viewdiff.training.train --data_dir data/cache --backend dlib --epochs 40 \
        --val_fold 1 --save_dir runs/fold1 --log_dir runs/fold1/tb

Each sample maps a source embedding at its estimated pose (and its mirrored view) to the frontal
mean of the same identity (see `viewdiff.training.datasets.PosePairDataset`); with --mirror_augment
every photo also trains mirrored. Losses (`viewdiff.training.losses`): ``gallery`` (default) scores
the transformed embedding against the raw frontal means of all training identities, as the product
compares a transformed probe with a raw gallery, and keeps it near the raw source (--source_weight);
``regression`` pulls it onto the identity's mean (the DREAM baseline's loss).

Outputs in `--save_dir`: `checkpoint_epoch_N_enhanced.pth` (model, optimizer, scheduler, epoch and
RNG states; loads with `torch.load(weights_only=True)`), `best_model/` (best validation cosine, only
with `--val_fold`, which may never be the test fold `--exclude_fold`) and `final_model/`
(`model.safetensors` + `config.json`, see `viewdiff.models.checkpoint`).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import random
import shlex
import subprocess
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from viewdiff.models.baselines import DreamResidual
from viewdiff.models.checkpoint import load_pretrained, save_pretrained
from viewdiff.models.config import TransformerConfig
from viewdiff.models.transformer import EnhancedTransformerDecoderOnly3D
from viewdiff.paths import data_root, repo_relative
from viewdiff.training.datasets import PosePairDataset, fold_split, model_inputs, stack_pairs
from viewdiff.training.losses import embedding_loss, frontal_gallery, gallery_loss, verification_loss
from viewdiff.training.multiview import epoch_batches
from viewdiff.training.prior import LAMBDA_PRIOR, EnhancedTransformerWithPrior, PriorPreservationDataset
from viewdiff.training.listings import refuse_shared_identities
from viewdiff.training.records import FaceRecords, first_identities, load_records
from viewdiff.training.validation import evaluate_pairs


def option(default, help: str | None = None, **cli):
    """A `TrainConfig` field: its default, its ``--help`` text and extra argparse keywords (choices, action)."""
    return field(default=default, metadata={"help": help, **cli})


def model_option(name: str, help: str | None = None, **cli):
    """A `TrainConfig` field that is the `TransformerConfig` field `name`: its default is the model's (one
    default per setting)."""
    if isinstance(getattr(TransformerConfig, name), bool):
        cli.setdefault("action", argparse.BooleanOptionalAction)
    return option(getattr(TransformerConfig, name), help, **cli)


@dataclass
class TrainConfig:
    """Everything `train` reads: one field per command-line flag ``--<field>`` (`build_parser` is generated
    from these fields). The model fields (`MODEL_FIELDS`) are `TransformerConfig` fields of the same name and
    default (`model_option`)."""

    data_dir: str = option("data/cache", "folder of the extracted face-record caches")
    backend: str = option("insightface", "face backend whose embeddings to train on (the cache folder name)")
    datasets: str = option("cfp", "comma list of record sets: cfp, pointing04, cplfw_train or folder:PATH (a "
                                  "folder dataset's identities train in every CFP-FP fold)")
    model: str = option("enhanced", choices=("enhanced", "dream"))
    batch_size: int = option(128)
    epochs: int = option(4, "epochs; with --val_fold the best of them on that fold is kept (best_model/)")
    use_lora_attention: bool = model_option("use_lora_attention")
    use_projection_layer: bool = model_option("use_projection_layer")
    use_cross_view: bool = model_option("use_cross_view")
    n_views: int = model_option("n_views", "views per identity group of a batch with --use_cross_view")
    use_prior_preservation: bool = option(False, "keep the outputs of the model training starts from (a frozen copy: "
                                                 "the fresh model, or --base_model_path) on prior samples, the "
                                                 "training photos sent to other poses (DreamBooth's prior "
                                                 "preservation; viewdiff.training.prior)")
    lambda_prior: float = option(LAMBDA_PRIOR, "weight of the prior-preservation term")
    base_model_path: str | None = option(None, "fine-tune this model (folder with model.safetensors + config.json) "
                                               "instead of a fresh one")
    rank: int = model_option("rank")
    lora_alpha: float = model_option("lora_alpha")
    num_layers: int = model_option("num_layers", "transformer blocks")
    nhead: int = model_option("nhead", "attention heads")
    token_dim: int = model_option("token_dim", "token width inside the transformer")
    map_channels: int = model_option("map_channels", "read the embedder's 7x7 map with this many channels (64: "
                                                     "the shipped w600k_mbf; its cache needs the maps, see "
                                                     "viewdiff.training.extract) instead of the embedding vector (0)")
    voxel_resolution: int = model_option("voxel_resolution", "voxel grid side R of the projection layer (cost "
                                                             "grows with R^3)")
    dropout: float = model_option("dropout")
    use_face_surface: bool = model_option("use_face_surface", "a map model's projection places the features on the "
                                                              "face's measured surface (the records' surface files: "
                                                              "viewdiff.training.extract), else on the mean face")
    use_adaptive_norm: bool = model_option("use_adaptive_norm")
    use_pose_gate: bool = model_option("use_pose_gate")
    use_mirror_view: bool = model_option("use_mirror_view")
    mirror_augment: bool = option(True, "also train on every photo mirrored (yaw and roll negated)",
                                  action=argparse.BooleanOptionalAction)
    frontal_sources: int | None = option(2, "frontal photos per identity used as sources (None: all); every "
                                            "frontal photo still enters the identity's target mean")
    loss: str = option("gallery", "verification: every flip-fused frontal photo of the identity a positive against "
                       "the hardest frontal photos of others, with --margin (+ source_weight); gallery: InfoNCE "
                       "against the raw frontal means of all training identities (+ source_weight); regression: cos "
                       "+ MSE to the frontal mean + in-batch identity term",
                       choices=("verification", "gallery", "regression"))
    hard_negatives: int = option(64, "verification loss: the most similar frontal photos of other identities each "
                                     "probe is scored against")
    source_weight: float = option(3.0, "gallery and verification losses: weight of the squared distance to the "
                                       "source (the mean of the photo's and its mirror's embeddings with "
                                       "--use_mirror_view)")
    margin: float = option(0.0, "gallery and verification losses: additive cosine margin on the own identity")
    lr: float = option(1e-3, "learning rate of the non-LoRA parameters")
    lora_lr: float = option(2e-3, "learning rate of the LoRA parameters")
    gate_lr: float = option(1e-2, "learning rate of the pose gate and the mirror weight (scalars)")
    weight_decay: float = option(0.01)
    warmup_epochs: float = option(1.0)
    identity_weight: float = option(5.0, "regression loss: weight of the in-batch identity term")
    temperature: float = option(0.1, "temperature of the verification, gallery and identity InfoNCE terms")
    use_amp: bool = option(False, "bf16 autocast on CPU, fp16 + GradScaler on CUDA")
    gradient_accumulation_steps: int = option(1)
    save_dir: str = option("runs/enhanced")
    log_dir: str | None = option(None, "TensorBoard folder (default: <save_dir>/tb)")
    export_dir: str | None = option(None, "also write the final model here (the shipped one: "
                                          "weights/transformer/<embedder fingerprint>)")
    checkpoint_every: int = option(10, "epochs between .pth checkpoints")
    resume: str | None = option(None, "checkpoint_epoch_N_enhanced.pth to continue from")
    seed: int = option(0)
    val_fold: int = option(0, "CFP-FP fold (1..10) held out for validation (best_model/ is the epoch that "
                              "validates best on it: early stopping); never the --exclude_fold; 0 trains on every "
                              "identity")
    exclude_fold: int = option(0, "CFP-FP fold (1..10) held out for testing: neither trained nor validated on (a "
                                  "--val_fold equal to it is refused); the held-out evaluation sets it for every "
                                  "fold model")
    max_identities: int | None = option(None, "use only N identities per dataset, spread over the CFP-FP folds")
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu",
                        metadata={"help": None})
    threads: int | None = option(None, "torch CPU threads")
    quiet: bool = option(False, "no progress bar")

    @classmethod
    def from_args(cls, argv: list[str] | None = None, base: "TrainConfig | None" = None) -> "TrainConfig":
        """Parse command-line flags; a flag not given keeps `base`'s value (default: the field defaults)."""
        given = argparse.Namespace(**asdict(base)) if base is not None else None
        return cls(**vars(build_parser().parse_args(argv, namespace=given)))

    def command(self) -> str:
        """The command that trains with this config: the flags that differ from the defaults, paths repo-relative."""
        defaults, flags = TrainConfig(), []
        for f in fields(self):
            value = getattr(self, f.name)
            if value == getattr(defaults, f.name):
                continue
            if isinstance(value, bool):
                flags.append(f"--{f.name}" if value else f"--no-{f.name}")
            else:
                flags += [f"--{f.name}", repo_relative(value) if f.name in PATH_FIELDS else str(value)]
        return shlex.join(["python", "-m", "viewdiff.training.train", *flags])


PATH_FIELDS = ("data_dir", "base_model_path", "save_dir", "log_dir", "export_dir", "resume")
MODEL_FIELDS = tuple(f.name for f in fields(TrainConfig) if f.name in {g.name for g in fields(TransformerConfig)})
FIELD_TYPES = {"str": str, "int": int, "float": float}


def build_parser() -> argparse.ArgumentParser:
    """The training CLI: one flag per `TrainConfig` field, with its default and help."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        cli = dict(f.metadata)
        if f.type == "bool":
            cli.setdefault("action", "store_true")
        else:
            cli["type"] = FIELD_TYPES[f.type.split(" | ")[0]]
        p.add_argument(f"--{f.name}", default=getattr(defaults, f.name), **cli)
    return p


def build_model(config: TrainConfig, embedding_dim: int, fingerprint: str = "") -> nn.Module:
    """A fresh model of `config.model` for embeddings of width `embedding_dim`; a map model gets the head of the
    embedder with this `fingerprint` (its recognition model in weights/insightface/)."""
    if config.model == "dream":
        return DreamResidual(d_model=embedding_dim)
    model = EnhancedTransformerDecoderOnly3D(d_model=embedding_dim, **{name: getattr(config, name)
                                                                       for name in MODEL_FIELDS})
    if config.map_channels:
        from viewdiff.faces.feature_map import affine_head
        from viewdiff.faces.model_files import recognition_model_file
        model.set_embedder_head(*affine_head(recognition_model_file(fingerprint)))
    return model


def source_anchor(batch: dict[str, torch.Tensor], config: TrainConfig) -> torch.Tensor:
    """What the gallery loss keeps the output near: the mean of the photo's and its mirror's embeddings
    when the model sees the mirror view (two equally valid views of the face), else the photo's own."""
    if config.model == "enhanced" and config.use_mirror_view:
        return F.normalize(batch["src"] + batch["src_mirror"], dim=-1)
    return batch["src"]


def prior_samples(pairs: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Forward kwargs of the prior samples [N, ...]: every training pair's inputs (the photo, its mirror, its
    keypoints and, for a map model, both maps: all the model reads, `model_inputs`) sent to the source pose of
    another training photo (a shuffle seeded by `seed`) instead of its task target: poses the task loss does not
    train, where the model should keep the behaviour it started with."""
    order = torch.as_tensor(np.random.default_rng(seed).permutation(len(pairs["src"])))
    return model_inputs({**pairs, "target_pose": pairs["source_pose"][order]})


def cosine_schedule(total_steps: int, warmup_steps: int):
    """Linear warm-up then cosine decay to 0 (a plain function, so LambdaLR's state saves cleanly)."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def param_groups(model: nn.Module, config: TrainConfig) -> list[dict]:
    """LoRA parameters at `lora_lr`; the pose gate and the mirror weight (a few scalars that set how far
    a face moves) at `gate_lr` without weight decay; the rest at `lr` (trainable ones only)."""
    lora_ids = {id(p) for p in getattr(model, "get_lora_parameters", lambda: [])()}
    scalar_ids = {id(p) for name, p in model.named_parameters() if name.startswith(("gate.", "mirror_weight"))}
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in trainable if id(p) not in lora_ids | scalar_ids], "lr": config.lr, "name": "base"},
              {"params": [p for p in trainable if id(p) in lora_ids], "lr": config.lora_lr, "name": "lora"},
              {"params": [p for p in trainable if id(p) in scalar_ids], "lr": config.gate_lr, "weight_decay": 0.0,
               "name": "gate"}]
    return [g for g in groups if g["params"]]


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict]
    save_dir: Path
    seconds: float


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def select_records(config: TrainConfig) -> FaceRecords:
    """The face records of `config.datasets`, each optionally cut to `max_identities` (see `first_identities`).

    With CFP and a folder dataset together, an identity of the folder dataset that is a CFP person is refused
    (`refuse_shared_identities`): the folder dataset trains in every CFP-FP fold.
    """
    names = [name.strip() for name in config.datasets.split(",") if name.strip()]
    parts = {name: first_identities(load_records(config.data_dir, name, config.backend, maps=bool(config.map_channels),
                                                 surface=reads_surface(config)), config.max_identities)
             for name in names}
    if "cfp" in parts:
        for name, part in parts.items():
            if name not in ("cfp", "pointing04"):
                refuse_shared_identities(part, data_root())
    return FaceRecords.concatenate(list(parts.values()))


def reads_surface(config) -> bool:
    """Whether a model of `config` (a TrainConfig or TransformerConfig) reads the measured face surface: a map
    model's projection layer with `use_face_surface` (its records are loaded with their surfaces)."""
    return bool(getattr(config, "map_channels", 0) and config.use_projection_layer and config.use_face_surface)


def train(config: TrainConfig) -> TrainResult:
    """Train as `config` says; returns the final model and the per-epoch history."""
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    if config.exclude_fold and config.val_fold == config.exclude_fold:
        raise ValueError(f"--val_fold {config.val_fold} is the fold held out for testing (--exclude_fold "
                         f"{config.exclude_fold}): a model must never be validated or chosen on its test fold. "
                         "Validate on one of the training folds (--val_fold k, k != "
                         f"{config.exclude_fold}) or not at all (--val_fold 0)")

    if config.threads:
        torch.set_num_threads(config.threads)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = torch.device(config.device)
    save_dir = Path(config.save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)

    records = select_records(config)
    train_mask, val_mask = fold_split(records, config.val_fold, config.exclude_fold)
    train_set = PosePairDataset(records.subset(train_mask), mirror=config.mirror_augment,
                                frontal_sources=config.frontal_sources)
    train_pairs = stack_pairs(train_set)
    val_set = PosePairDataset(records.subset(val_mask)) if val_mask.any() else None
    val_pairs = stack_pairs(val_set) if val_set is not None else None
    val_bank = (torch.as_tensor(val_set.bank), torch.as_tensor(val_set.bank_identity)) if val_set is not None else None
    if config.loss == "verification" and val_set is not None and len(val_set.identities) < 2:
        raise ValueError(f"early stopping on --val_fold {config.val_fold} needs different-person pairs, and that fold "
                         f"has {len(val_set.identities)} identity with a face in these records: validate on a fold "
                         "with at least two people (more records: a larger --max_identities) or not at all (--val_fold 0)")
    gallery = frontal_gallery(train_pairs).to(device)
    bank = torch.as_tensor(train_set.bank).to(device), torch.as_tensor(train_set.bank_identity).to(device)
    embedding_dim = train_pairs["src"].shape[1]

    if config.base_model_path:
        model, _ = load_pretrained(config.base_model_path, embedding_dim=embedding_dim)
    else:
        model = build_model(config, embedding_dim, records.fingerprint)
    model.to(device)
    prior = None
    if config.use_prior_preservation:   # the base: a frozen copy of the model training starts from
        prior = EnhancedTransformerWithPrior(model, copy.deepcopy(model), lambda_prior=config.lambda_prior)
        prior_data = PriorPreservationDataset(prior.base_model, prior_samples(train_pairs, config.seed),
                                              cache_path=save_dir / "prior_samples.safetensors")
        print(f"prior samples: {len(prior_data)} ({'cache hit' if prior_data.cache_hit else 'built'})")

    def task_loss(out: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """The recipe's loss (`--loss`) of the outputs [B, D] of a pair batch."""
        if config.loss == "verification":
            return verification_loss(out.float(), source_anchor(batch, config), batch["identity"], bank[0], bank[1],
                                     config.temperature, config.margin, config.hard_negatives, config.source_weight)
        if config.loss == "gallery":
            return gallery_loss(out.float(), source_anchor(batch, config), batch["target"], batch["target_pose"],
                                batch["identity"], gallery, config.temperature, config.source_weight, config.margin)
        return embedding_loss(out.float(), batch["target"], batch["identity"], config.identity_weight,
                              config.temperature)

    optimizer = torch.optim.AdamW(param_groups(model, config), weight_decay=config.weight_decay)
    multiview = config.model == "enhanced" and config.use_cross_view
    n = len(train_pairs["src"])
    steps_per_epoch = math.ceil(len(epoch_batches(n, config.batch_size, np.random.default_rng(0),
                                                  train_pairs["identity"].numpy(),
                                                  train_pairs["source_pose"][:, 0].numpy(),
                                                  config.n_views if multiview else 0))
                                / config.gradient_accumulation_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_schedule(steps_per_epoch * config.epochs, int(steps_per_epoch * config.warmup_epochs)))
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=config.use_amp and device.type == "cuda")

    start_epoch, best, history = 1, -float("inf"), []
    if config.resume:
        state = torch.load(config.resume, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best, history = state["epoch"] + 1, state["best"], state["history"]
        torch.set_rng_state(state["rng"]["torch"])
        rng.bit_generator.state = state["rng"]["numpy"]
        print(f"resumed from {config.resume} at epoch {state['epoch']}")

    writer = SummaryWriter(config.log_dir or str(save_dir / "tb"))
    metadata = {"backend": config.backend, "embedder_fingerprint": records.fingerprint,
                "embedding_dim": embedding_dim, "datasets": config.datasets,
                "val_fold": config.val_fold, "train_pairs": n, "epochs": config.epochs, "seed": config.seed,
                "commit": git_commit(), "command": config.command(), "train_config": asdict(config)}
    t0 = time.time()
    for epoch in range(start_epoch, config.epochs + 1):
        model.train()
        batches = epoch_batches(n, config.batch_size, rng, train_pairs["identity"].numpy(),
                                train_pairs["source_pose"][:, 0].numpy(), config.n_views if multiview else 0)
        bar = tqdm(batches, desc=f"epoch {epoch}/{config.epochs}", disable=config.quiet, leave=False)
        running, running_prior = 0.0, 0.0
        for step, idx in enumerate(bar):
            batch = {k: v[torch.as_tensor(idx)].to(device) for k, v in train_pairs.items()}
            with torch.autocast(device.type, dtype=amp_dtype, enabled=config.use_amp):
                if prior is not None:
                    loss, parts = prior.compute_loss(model_inputs(batch, multiview), prior_data.sample(len(idx), rng),
                                                     batch["target"], lambda out, _: task_loss(out, batch)[0])
                    running_prior += parts["prior_loss"]
                    writer.add_scalar("Train/PriorLoss", parts["prior_loss"], (epoch - 1) * len(batches) + step)
                else:
                    loss, parts = task_loss(model(**model_inputs(batch, multiview)), batch)
            scaler.scale(loss / config.gradient_accumulation_steps).backward()
            if (step + 1) % config.gradient_accumulation_steps == 0 or step + 1 == len(batches):
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
            running += loss.item()
            global_step = (epoch - 1) * len(batches) + step
            writer.add_scalar("Train/Loss", loss.item(), global_step)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        row = {"epoch": epoch, "train_loss": running / max(1, len(batches))}
        if prior is not None:   # the weighted prior term's mean (part of train_loss)
            row["train_prior_loss"] = running_prior / max(1, len(batches))
        if val_pairs is not None:
            row.update(evaluate_pairs(model, val_pairs, config, val_bank))
            writer.add_scalar("Epoch/ValLoss", row["val_loss"], epoch)
            writer.add_scalar("Epoch/ValCosineSim", row["val_cosine"], epoch)
            criterion = row["val_score"] if config.loss == "verification" else row["val_cosine"]
            if criterion > best:
                best = criterion
                save_pretrained(model, save_dir / "best_model", {**metadata, "epoch": epoch, **row})
        history.append(row)
        if not config.quiet:
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
        if epoch % config.checkpoint_every == 0 or epoch == config.epochs:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "epoch": epoch, "best": best,
                        "history": history, "args": asdict(config),
                        "rng": {"torch": torch.get_rng_state(), "numpy": rng.bit_generator.state}},
                       save_dir / f"checkpoint_epoch_{epoch}_enhanced.pth")
    writer.close()
    seconds = time.time() - t0
    final_meta = {**metadata, "epoch": config.epochs, "train_seconds": round(seconds, 1),
                  **(history[-1] if history else {})}
    save_pretrained(model, save_dir / "final_model", final_meta)
    if config.export_dir:
        save_pretrained(model, config.export_dir, final_meta)
    return TrainResult(model=model, history=history, save_dir=save_dir, seconds=seconds)


def main(argv: list[str] | None = None) -> None:
    config = TrainConfig.from_args(argv)
    result = train(config)
    print(f"trained {config.model} in {result.seconds:.1f} s; final model: {result.save_dir / 'final_model'}"
          + (f" and {config.export_dir}" if config.export_dir else ""))


if __name__ == "__main__":
    main()
