"""Held-out evaluation: CFP-FP 10-fold verification, profile->frontal rank-1, Pointing'04 per yaw bin.

    python -m viewdiff.training.evaluate --data_dir data/cache --backend dlib --out docs/results

For every CFP-FP fold k (official, identity-disjoint) a model is trained from scratch on the other
nine folds with a fixed recipe (no early stopping, the final epoch is used: nothing is tuned on the
test fold) and scored on fold k:
- verification: the official same/diff pairs, cosine of the two embeddings (every embedding mapped
  to frontal first); the pairs of fold k are scored by fold k's model and each fold's threshold is
  chosen on the other folds' out-of-fold scores (standard 10-fold protocol, no identity leak);
- rank-1 identification: fold k's profile photos against a gallery of all 500 identities (mean of
  each identity's frontal embeddings);
- Pointing'04 (a different dataset, never trained on): similarity of each photo to its person's
  near-frontal mean, per |yaw| bin, with the model of the first evaluated fold.
Compared: raw embeddings, the DREAM residual baseline (same split, same loss) and the enhanced model.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from viewdiff.embeddings import l2_normalize
from viewdiff.paths import shared_dir
from viewdiff.training.datasets import cfp_fp_pairs
from viewdiff.training.metrics import identity_means, rank1_accuracy, verification_accuracy
from viewdiff.training.records import FaceRecords, first_identities, load_records
from viewdiff.training.train import TrainConfig, train

YAW_BINS = (0, 15, 30, 45, 60, 75, 90)
# method name -> TrainConfig changes. "dream" uses our loss (same split, same loss as "enhanced");
# "dream_l2" uses the DREAM paper's regression-only loss (no identity term).
METHODS = {"enhanced": {"model": "enhanced"}, "dream": {"model": "dream"},
           "dream_l2": {"model": "dream", "identity_weight": 0.0}}


@torch.no_grad()
def transform(model: nn.Module, records: FaceRecords, target_pose: np.ndarray | None = None,
              batch: int = 1024) -> np.ndarray:
    """Map every record's embedding to `target_pose` [3] (default frontal) -> [N, D] unit rows."""
    model.eval()
    n = len(records)
    target = torch.zeros(n, 3) if target_pose is None else torch.as_tensor(target_pose).float().expand(n, 3)
    src = torch.as_tensor(records.embedding).float()
    source = torch.as_tensor(records.source_pose).float()
    kp = torch.as_tensor(records.keypoints_3d).float()
    out = torch.cat([model(src=src[i:i + batch], source_pose=source[i:i + batch], keypoints_3d=kp[i:i + batch],
                           target_pose=target[i:i + batch]) for i in range(0, n, batch)])
    return l2_normalize(out.numpy())


def pair_scores(emb: np.ndarray, cfp: FaceRecords, pairs: dict[str, np.ndarray]) -> np.ndarray:
    """Cosine of every CFP-FP pair [P] (-1 where a photo had no face). emb: [N, D] unit rows of `cfp`."""
    valid = cfp.found[pairs["a"]] & cfp.found[pairs["b"]]
    return np.where(valid, np.sum(emb[pairs["a"]] * emb[pairs["b"]], axis=1), -1.0)


def profile_rank1(emb: np.ndarray, cfp: FaceRecords, fold: int) -> float:
    """Rank-1 of `fold`'s profile photos against the frontal means of all CFP identities."""
    frontal = cfp.found & (cfp.view == "frontal")
    gallery, gallery_ids = identity_means(emb[frontal], cfp.identity[frontal])
    probes = cfp.found & (cfp.view == "profile") & (cfp.fold == fold)
    return rank1_accuracy(emb[probes], cfp.identity[probes], gallery, gallery_ids)


def pointing04_table(emb: np.ndarray, p04: FaceRecords) -> list[dict]:
    """Mean similarity to the person's near-frontal mean and rank-1 among persons, per |yaw| bin."""
    ok = p04.found
    yaw, pitch = np.abs(p04.true_pose[:, 0]), np.abs(p04.true_pose[:, 1])
    ref_mask = ok & (yaw <= 15) & (pitch <= 15)
    refs, ref_ids = identity_means(emb[ref_mask], p04.identity[ref_mask])
    rows = []
    for lo in YAW_BINS:
        m = ok & (np.abs(yaw - lo) < 7.5)
        if not m.any():
            continue
        own = refs[np.searchsorted(ref_ids, p04.identity[m])]
        rows.append({"yaw": lo, "n": int(m.sum()), "similarity": float(np.mean(np.sum(emb[m] * own, 1))),
                     "rank1": rank1_accuracy(emb[m], p04.identity[m], refs, ref_ids)})
    return rows


def fold_config(method: str, fold: int, args: argparse.Namespace) -> TrainConfig:
    """The training recipe of `method` (a key of METHODS) without CFP fold `fold`; `--train_args` flags win."""
    config = replace(TrainConfig(), data_dir=args.data_dir, backend=args.backend, datasets="cfp", epochs=args.epochs,
                     val_fold=fold, seed=args.seed, quiet=True, checkpoint_every=args.epochs,
                     save_dir=str(Path(args.work_dir) / f"{method}_fold{fold:02d}"),
                     max_identities=args.max_identities or None, **METHODS[method])
    return TrainConfig.from_args(args.train_args.split(), base=config)


def train_fold_model(method: str, fold: int, args: argparse.Namespace) -> tuple[nn.Module, float]:
    """Train `method` on every CFP fold but `fold`; returns (model, seconds)."""
    result = train(fold_config(method, fold, args))
    return result.model, result.seconds


def parse_folds(text: str) -> list[int]:
    """``1-10`` or ``1,2`` -> fold numbers; at least two, since each fold's threshold comes from the others' pairs."""
    lo, _, hi = text.partition("-")
    folds = list(range(int(lo), int(hi) + 1)) if hi else [int(f) for f in text.split(",")]
    if len(set(folds)) < 2:
        raise ValueError(f"--folds needs at least 2 folds for out-of-fold thresholds (each fold's verification "
                         f"threshold is chosen on the other folds' pairs), got --folds {text}: use e.g. --folds 1,2 "
                         "or 1-10")
    return folds


def summarize(values: list[float]) -> str:
    return f"{100 * np.mean(values):.2f} +- {100 * np.std(values):.2f}"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", default="data/cache")
    p.add_argument("--data_root", default=None, help="folder holding cfp/ (default: ../shared/data)")
    p.add_argument("--backend", default="dlib")
    p.add_argument("--folds", default="1-10", help="CFP-FP folds to hold out, e.g. 1-10 or 1,2")
    p.add_argument("--methods", default="dream_l2,dream,enhanced", help=f"comma list of {', '.join(METHODS)}")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max_identities", type=int, default=None)
    p.add_argument("--train_args", default="", help="extra viewdiff.training.train flags for every fold, e.g. "
                   "'--voxel_resolution 8 --threads 2'")
    p.add_argument("--work_dir", default="runs/evaluate", help="per-fold training outputs")
    p.add_argument("--out", default="docs/results", help="results.json, tables and figure go here")
    args = p.parse_args(argv)
    folds = parse_folds(args.folds)
    methods = [m for m in args.methods.split(",") if m]
    if unknown := [m for m in methods if m not in METHODS]:
        p.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")

    t0 = time.time()
    cfp = load_records(args.data_dir, "cfp", args.backend)
    cfp = first_identities(cfp, args.max_identities)
    pairs = cfp_fp_pairs(cfp, args.data_root or shared_dir() / "data", allow_missing=bool(args.max_identities))
    try:
        p04 = load_records(args.data_dir, "pointing04", args.backend)
    except FileNotFoundError:
        p04 = None
    in_folds = np.isin(pairs["fold"], folds)
    pairs = {k: v[in_folds] for k, v in pairs.items()}
    raw = l2_normalize(cfp.embedding)
    # Out-of-fold scores: the pairs of fold k are scored by the model trained without fold k, and
    # each fold's threshold is then chosen on the other folds' (also out-of-fold) scores.
    scores = {"raw": pair_scores(raw, cfp, pairs)}
    rank1 = {"raw": [profile_rank1(raw, cfp, k) for k in folds]}
    seconds: dict[str, list[float]] = {}
    p04_rows = {"raw": pointing04_table(l2_normalize(p04.embedding), p04)} if p04 is not None else {}
    for method in methods:
        scores[method], rank1[method] = np.zeros(len(pairs["same"])), []
        for i, k in enumerate(folds):
            model, secs = train_fold_model(method, k, args)
            seconds.setdefault(method, []).append(secs)
            emb = transform(model, cfp)
            test = pairs["fold"] == k
            scores[method][test] = pair_scores(emb, cfp, pairs)[test]
            rank1[method].append(profile_rank1(emb, cfp, k))
            print(f"fold {k:2d} {method:9s} rank-1 {100 * rank1[method][-1]:.2f} "
                  f"(raw {100 * rank1['raw'][i]:.2f}), trained in {secs:.0f} s", flush=True)
            if p04 is not None and i == 0:
                p04_rows[method] = pointing04_table(transform(model, p04), p04)
    accuracy = {m: verification_accuracy(s, pairs["same"], pairs["fold"]).tolist() for m, s in scores.items()}

    results = {
        "folds": folds, "epochs": args.epochs, "backend": args.backend, "train_args": args.train_args,
        "seconds": round(time.time() - t0, 1),
        "coverage": {"cfp": f"{int(cfp.found.sum())}/{len(cfp)}",
                     "pointing04": f"{int(p04.found.sum())}/{len(p04)}" if p04 is not None else None},
        "cfp_fp": {m: {"accuracy": accuracy[m], "rank1": rank1[m], "accuracy_mean_std": summarize(accuracy[m]),
                       "rank1_mean_std": summarize(rank1[m])} for m in scores},
        "train_seconds_per_fold": {m: round(float(np.mean(v)), 1) for m, v in seconds.items()},
        "pointing04": p04_rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    table = ["| method | CFP-FP verification acc. (%) | profile->frontal rank-1 (%) |", "|---|---|---|"]
    table += [f"| {m} | {r['accuracy_mean_std']} | {r['rank1_mean_std']} |" for m, r in results["cfp_fp"].items()]
    if p04_rows:
        table += ["", "| |yaw| | n | " + " | ".join(f"{m} sim / rank-1" for m in p04_rows) + " |",
                  "|---|---|" + "---|" * len(p04_rows)]
        for i, row in enumerate(p04_rows["raw"]):
            table.append(f"| {row['yaw']} | {row['n']} | " + " | ".join(
                f"{p04_rows[m][i]['similarity']:.3f} / {100 * p04_rows[m][i]['rank1']:.1f}" for m in p04_rows) + " |")
        write_pointing04_figure(p04_rows, out / "pointing04_similarity.html")
    (out / "tables.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    print(f"results: {out / 'results.json'} ({results['seconds']:.0f} s)")
    return results


def write_pointing04_figure(rows: dict[str, list[dict]], path: Path) -> None:
    """Plotly line chart of similarity-to-frontal per |yaw| bin, one line per method (HTML)."""
    import plotly.graph_objects as go

    fig = go.Figure([go.Scatter(x=[r["yaw"] for r in v], y=[r["similarity"] for r in v], name=m,
                                mode="lines+markers") for m, v in rows.items()])
    fig.update_layout(title="Pointing'04: similarity to the person's frontal mean",
                      xaxis_title="|yaw| (deg, ground truth)", yaxis_title="cosine similarity")
    fig.write_html(str(path), include_plotlyjs="cdn")


if __name__ == "__main__":
    main()
