"""Train the enhanced pose transformer (or the DREAM baseline) on cached face records.

    python -m viewdiff.training.train --data_dir data/cache --backend dlib --epochs 40 \
        --val_fold 1 --save_dir runs/fold1 --log_dir runs/fold1/tb

Each sample maps a source embedding at its estimated pose to the mean frontal embedding of the same
identity (see `viewdiff.training.datasets.PosePairDataset`). Loss: (1 - cosine) + squared error to the target,
plus an in-batch identity term (InfoNCE over the batch's identities) so a transformed profile lands
closer to its own frontal than to the others'.

Outputs in `--save_dir`: `checkpoint_epoch_N_enhanced.pth` (model, optimizer, scheduler, epoch and
RNG states; loads with `torch.load(weights_only=True)`), `best_model/` (best validation cosine, only
with `--val_fold`) and `final_model/` (`model.safetensors` + `config.json`, see `viewdiff.models.checkpoint`).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from viewdiff.models.baselines import DreamResidual
from viewdiff.models.checkpoint import load_pretrained, save_pretrained
from viewdiff.models.transformer import EnhancedTransformerDecoderOnly3D
from viewdiff.training.datasets import PosePairDataset, fold_split, stack_pairs
from viewdiff.training.multiview import epoch_batches
from viewdiff.training.prior import EnhancedTransformerWithPrior, PriorPreservationDataset
from viewdiff.training.records import FaceRecords, first_identities, load_records

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data_dir", default="data/cache", help="folder of the extracted face-record caches")
    p.add_argument("--backend", default="dlib", help="face backend whose embeddings to train on")
    p.add_argument("--datasets", default="cfp", help="comma list of record sets: cfp, pointing04")
    p.add_argument("--model", choices=("enhanced", "dream"), default="enhanced")
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--use_lora_attention", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--use_projection_layer", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--use_cross_view", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--n_views", type=int, default=4)
    p.add_argument("--use_prior_preservation", action="store_true",
                   help="fine-tune from --base_model_path while keeping its outputs on prior samples")
    p.add_argument("--lambda_prior", type=float, default=0.1)
    p.add_argument("--base_model_path", default=None, help="folder with model.safetensors + config.json")
    p.add_argument("--rank", type=int, default=4)
    p.add_argument("--lora_alpha", type=float, default=1.0)
    p.add_argument("--num_layers", type=int, default=None, help="transformer blocks (default: model's)")
    p.add_argument("--voxel_resolution", type=int, default=8,
                   help="voxel grid side R of the projection layer (cost grows with R^3: 8 keeps CPU training "
                        "at ~1 min per CFP fold; the model class defaults to 16)")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate of the non-LoRA parameters")
    p.add_argument("--lora_lr", type=float, default=2e-3, help="learning rate of the LoRA parameters")
    p.add_argument("--weight_decay", type=float, default=0.01)
    p.add_argument("--warmup_epochs", type=float, default=1.0)
    p.add_argument("--identity_weight", type=float, default=5.0, help="weight of the in-batch identity term")
    p.add_argument("--input_noise", type=float, default=0.0,
                   help="augmentation: Gaussian noise of this expected norm added to the unit source embeddings")
    p.add_argument("--temperature", type=float, default=0.05, help="temperature of the identity term")
    p.add_argument("--use_amp", action="store_true", help="bf16 autocast on CPU, fp16 + GradScaler on CUDA")
    p.add_argument("--gradient_accumulation_steps", type=int, default=1)
    p.add_argument("--save_dir", default="runs/enhanced")
    p.add_argument("--log_dir", default=None, help="TensorBoard folder (default: <save_dir>/tb)")
    p.add_argument("--export_dir", default=None,
                   help="also write the final model here (e.g. weights/dlib/enhanced)")
    p.add_argument("--checkpoint_every", type=int, default=10, help="epochs between .pth checkpoints")
    p.add_argument("--resume", default=None, help="checkpoint_epoch_N_enhanced.pth to continue from")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val_fold", type=int, default=0,
                   help="CFP-FP fold (1..10) held out for validation; 0 trains on every identity")
    p.add_argument("--max_identities", type=int, default=None, help="use only N identities per dataset, spread over the CFP-FP folds")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def build_model(args: argparse.Namespace, embedding_dim: int) -> nn.Module:
    """A fresh model of `args.model` for embeddings of width `embedding_dim`."""
    if args.model == "dream":
        return DreamResidual(d_model=embedding_dim)
    kwargs = dict(d_model=embedding_dim, use_lora_attention=args.use_lora_attention,
                  use_projection_layer=args.use_projection_layer, use_cross_view=args.use_cross_view,
                  n_views=args.n_views, rank=args.rank, lora_alpha=args.lora_alpha, dropout=args.dropout)
    for name in ("num_layers", "voxel_resolution"):  # None: the model's default
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    return EnhancedTransformerDecoderOnly3D(**kwargs)


def model_inputs(batch: dict[str, torch.Tensor], multiview: bool = False) -> dict:
    """Forward kwargs of a pair batch (shared by the transformer and the DREAM baseline)."""
    out = dict(src=batch["src"], source_pose=batch["source_pose"], keypoints_3d=batch["keypoints_3d"],
               target_pose=batch["target_pose"])
    if multiview:
        out["multiview_input"] = True
    return out


def embedding_loss(out: torch.Tensor, target: torch.Tensor, identity: torch.Tensor,
                   identity_weight: float, temperature: float) -> tuple[torch.Tensor, dict[str, float]]:
    """(1 - cos) + squared error to the target + in-batch identity InfoNCE.

    out, target: [B, D]; identity: [B] int. Targets are per-identity means, so the batch's distinct
    identities give the classes of the identity term.
    """
    o = F.normalize(out, dim=-1)
    t = F.normalize(target, dim=-1)
    cos = (o * t).sum(-1)
    loss_cos = (1.0 - cos).mean()
    loss_mse = (out - t).pow(2).sum(-1).mean()
    loss = loss_cos + loss_mse
    parts = {"cos": loss_cos.item(), "mse": loss_mse.item()}
    if identity_weight > 0:
        ids, first = np.unique(identity.cpu().numpy(), return_index=True)
        if len(ids) > 1:
            labels = torch.as_tensor(np.searchsorted(ids, identity.cpu().numpy()), device=out.device)
            logits = o @ t[torch.as_tensor(first, device=out.device)].T / temperature
            loss_id = F.cross_entropy(logits, labels)
            loss = loss + identity_weight * loss_id
            parts["identity"] = loss_id.item()
    return loss, parts


def cosine_schedule(total_steps: int, warmup_steps: int):
    """Linear warm-up then cosine decay to 0 (a plain function, so LambdaLR's state saves cleanly)."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def param_groups(model: nn.Module, args: argparse.Namespace) -> list[dict]:
    """Two groups: LoRA parameters at `lora_lr`, the rest at `lr` (trainable ones only)."""
    lora_ids = {id(p) for p in getattr(model, "get_lora_parameters", lambda: [])()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    lora = [p for p in trainable if id(p) in lora_ids]
    rest = [p for p in trainable if id(p) not in lora_ids]
    groups = [{"params": rest, "lr": args.lr, "name": "base"}]
    if lora:
        groups.append({"params": lora, "lr": args.lora_lr, "name": "lora"})
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


def select_records(args: argparse.Namespace) -> FaceRecords:
    """The face records of `args.datasets`, each optionally cut to `max_identities` (see `first_identities`)."""
    return FaceRecords.concatenate([first_identities(load_records(args.data_dir, name.strip(), args.backend),
                                                     args.max_identities)
                                    for name in args.datasets.split(",") if name.strip()])


@torch.no_grad()
def evaluate_pairs(model: nn.Module, pairs: dict[str, torch.Tensor], args: argparse.Namespace) -> dict:
    """Validation loss and mean cosine to the target, in eval mode."""
    model.eval()
    out = torch.cat([model(**model_inputs({k: v[i:i + 512] for k, v in pairs.items()}))
                     for i in range(0, len(pairs["src"]), 512)])
    loss, _ = embedding_loss(out, pairs["target"], pairs["identity"], args.identity_weight, args.temperature)
    cos = F.cosine_similarity(out, pairs["target"], dim=-1).mean().item()
    raw = F.cosine_similarity(pairs["src"], pairs["target"], dim=-1).mean().item()
    return {"val_loss": loss.item(), "val_cosine": cos, "val_cosine_raw": raw}


def train(args: argparse.Namespace) -> TrainResult:
    """Train as `args` says; returns the final model and the per-epoch history."""
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    if args.threads:
        torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    device = torch.device(args.device)
    save_dir = Path(args.save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)

    records = select_records(args)
    train_mask, val_mask = fold_split(records, args.val_fold)
    train_pairs = stack_pairs(PosePairDataset(records.subset(train_mask)))
    val_pairs = stack_pairs(PosePairDataset(records.subset(val_mask))) if val_mask.any() else None
    embedding_dim = train_pairs["src"].shape[1]

    base_model = None
    if args.use_prior_preservation or args.base_model_path:
        if not args.base_model_path:
            raise SystemExit("--use_prior_preservation needs --base_model_path (the model to fine-tune)")
        base_model, _ = load_pretrained(args.base_model_path, embedding_dim=embedding_dim)
        model, _ = load_pretrained(args.base_model_path, embedding_dim=embedding_dim)
    else:
        model = build_model(args, embedding_dim)
    model.to(device)
    prior = None
    if args.use_prior_preservation:
        base_model.to(device)
        prior = EnhancedTransformerWithPrior(model, base_model, lambda_prior=args.lambda_prior)
        prior_data = PriorPreservationDataset(
            base_model, {k: train_pairs[k] for k in ("src", "source_pose", "keypoints_3d", "target_pose")},
            cache_path=save_dir / "prior_samples.safetensors")
        print(f"prior samples: {len(prior_data)} ({'cache hit' if prior_data.cache_hit else 'built'})")

    optimizer = torch.optim.AdamW(param_groups(model, args), weight_decay=args.weight_decay)
    multiview = args.model == "enhanced" and args.use_cross_view
    n = len(train_pairs["src"])
    steps_per_epoch = math.ceil(len(epoch_batches(n, args.batch_size, np.random.default_rng(0),
                                                  train_pairs["identity"].numpy(),
                                                  train_pairs["source_pose"][:, 0].numpy(),
                                                  args.n_views if multiview else 0))
                                / args.gradient_accumulation_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_schedule(steps_per_epoch * args.epochs, int(steps_per_epoch * args.warmup_epochs)))
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=args.use_amp and device.type == "cuda")

    start_epoch, best, history = 1, -float("inf"), []
    if args.resume:
        state = torch.load(args.resume, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best, history = state["epoch"] + 1, state["best"], state["history"]
        torch.set_rng_state(state["rng"]["torch"])
        rng.bit_generator.state = state["rng"]["numpy"]
        print(f"resumed from {args.resume} at epoch {state['epoch']}")

    writer = SummaryWriter(args.log_dir or str(save_dir / "tb"))
    metadata = {"backend": args.backend, "embedding_dim": embedding_dim, "datasets": args.datasets,
                "val_fold": args.val_fold, "train_pairs": n, "epochs": args.epochs, "seed": args.seed,
                "commit": git_commit(), "command": " ".join(sys.argv)}
    t0 = time.time()
    for epoch in range(start_epoch, args.epochs + 1):
        model.train()
        batches = epoch_batches(n, args.batch_size, rng, train_pairs["identity"].numpy(),
                                train_pairs["source_pose"][:, 0].numpy(), args.n_views if multiview else 0)
        bar = tqdm(batches, desc=f"epoch {epoch}/{args.epochs}", disable=args.quiet, leave=False)
        running = 0.0
        for step, idx in enumerate(bar):
            batch = {k: v[torch.as_tensor(idx)].to(device) for k, v in train_pairs.items()}
            if args.input_noise > 0:
                noise = torch.randn_like(batch["src"]) * (args.input_noise / math.sqrt(batch["src"].shape[1]))
                batch["src"] = F.normalize(batch["src"] + noise, dim=-1)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=args.use_amp):
                if prior is not None:
                    prior_batch = prior_data.sample(len(idx), rng)
                    loss, parts = prior.compute_loss(
                        model_inputs(batch, multiview), prior_batch, batch["target"],
                        lambda out, tgt: embedding_loss(out, tgt, batch["identity"], args.identity_weight,
                                                        args.temperature)[0])
                else:
                    out = model(**model_inputs(batch, multiview))
                    loss, parts = embedding_loss(out.float(), batch["target"], batch["identity"],
                                                 args.identity_weight, args.temperature)
            scaler.scale(loss / args.gradient_accumulation_steps).backward()
            if (step + 1) % args.gradient_accumulation_steps == 0 or step + 1 == len(batches):
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
        if val_pairs is not None:
            row.update(evaluate_pairs(model, val_pairs, args))
            writer.add_scalar("Epoch/ValLoss", row["val_loss"], epoch)
            writer.add_scalar("Epoch/ValCosineSim", row["val_cosine"], epoch)
            if row["val_cosine"] > best:
                best = row["val_cosine"]
                save_pretrained(model, save_dir / "best_model", {**metadata, "epoch": epoch, **row})
        history.append(row)
        if not args.quiet:
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
        if epoch % args.checkpoint_every == 0 or epoch == args.epochs:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "epoch": epoch, "best": best,
                        "history": history, "args": vars(args),
                        "rng": {"torch": torch.get_rng_state(), "numpy": rng.bit_generator.state}},
                       save_dir / f"checkpoint_epoch_{epoch}_enhanced.pth")
    writer.close()
    seconds = time.time() - t0
    final_meta = {**metadata, "epoch": args.epochs, "train_seconds": round(seconds, 1),
                  **(history[-1] if history else {})}
    save_pretrained(model, save_dir / "final_model", final_meta)
    if args.export_dir:
        save_pretrained(model, args.export_dir, final_meta)
    return TrainResult(model=model, history=history, save_dir=save_dir, seconds=seconds)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    result = train(args)
    print(f"trained {args.model} in {result.seconds:.1f} s; final model: {result.save_dir / 'final_model'}"
          + (f" and {args.export_dir}" if args.export_dir else ""))


if __name__ == "__main__":
    main()
