"""Does the learned path learn? Where the tokens' change points on held-out profiles, and whether it needs the face.

    python -m viewdiff.training.learned_path --work_dir runs/heldout_v2 --method enhanced_map [--seeds 0]

For every fold model an evaluation left in the work dir (``<method>_seed<S>_fold<K>/`` with ``best_model/`` or
``final_model/``), the CFP photos of its held-out fold turned more than `TURNED` degrees are sent to frontal and
split into what the model computes (`EnhancedTransformerDecoderOnly3D`: ``out = src + gate * (learned + mirror
term)``):
- ``learned``: gate x the tokens' change (`last_visualization["learned_change"]`), the learned path;
- ``input``: ``out - learned``, where the photo would be without it (the photo and the gated mirror term);
- ``target``: the identity's flip-fused frontal template (the mean of its frontal photos, each averaged with its
  mirror: what the product's gallery holds), never seen in training.
Reported per model and on average: the cosine of ``learned`` with ``target - input`` (does it point where the
face should go? 0: no better than a random direction), the same cosine of their parts orthogonal to the input
(``cos_target_tangent``: only that part changes a cosine score after normalisation; shrinking the input alone, which
changes no score, already has a cosine of ~0.5 with ``target - input``), its size against that gap, and the
**shuffle test**:
the same profiles with their 7x7 maps (photo and mirror) given to other faces of the fold (poses and embeddings
kept; with a measured surface, the surface and keypoints swapped too), so the change can only use what does not
depend on the face: the cosine between the learned change with
the true maps and with shuffled ones (1: the change ignores the face), and the shuffled change's cosine with the
target direction. Issue 25's bar: a cosine with the target direction >= 0.3, and face-dependent. With a measured
surface, ``surface_share``: how much of the learned change the surface accounts for (the change with the average
face's depths instead, `projection.MEAN_CELL_DEPTH`: the size of the difference against the size of the change).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from viewdiff.embeddings import l2_normalize
from viewdiff.models.checkpoint import load_pretrained
from viewdiff.training.datasets import record_inputs
from viewdiff.training.records import FaceRecords, load_records

TURNED = 45.0
SHUFFLE_SEED = 0


def flip_fused_templates(records: FaceRecords) -> dict[str, np.ndarray]:
    """identity -> its flip-fused frontal template [D] (CFP frontal photos, each + its mirror, mean, unit)."""
    frontal = records.found & (records.view == "frontal")
    fused = l2_normalize(records.embedding[frontal] + records.embedding_mirror[frontal])
    ids = records.identity[frontal]
    return {i: l2_normalize(fused[ids == i].mean(0)) for i in np.unique(ids)}


@torch.no_grad()
def learned_change(model, rows: FaceRecords, order: np.ndarray | None = None,
                   average_face: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(out [N, D], learned [N, D]) of `rows` sent to frontal; `order` gives each row another row's maps;
    `average_face`: the average face's cell depths instead of the measured surface's."""
    model.eval()
    columns = record_inputs(rows, model)
    if average_face:
        columns.pop("cell_depth", None)
    if order is not None:   # the face's own appearance and shape swapped for another face's
        columns.update({k: columns[k][order] for k in ("feature_map", "feature_map_mirror", "cell_depth", "keypoints_3d")
                        if k in columns})
    t = {k: torch.as_tensor(np.asarray(v), dtype=torch.float32) for k, v in columns.items()}
    out = model(**t)
    return out, model.last_visualization["learned_change"]


def path_stats(model, rows: FaceRecords, templates: dict[str, np.ndarray], seed: int = SHUFFLE_SEED) -> dict:
    """The figures of the module docstring for one model on its held-out turned photos `rows`."""
    out, learned = learned_change(model, rows)
    target = torch.as_tensor(np.stack([templates[i] for i in rows.identity]))
    start = out - learned
    gap = target - F.normalize(start, dim=-1)
    order = np.random.default_rng(seed).permutation(len(rows))
    _, shuffled = learned_change(model, rows, order)
    unit = F.normalize(start, dim=-1)

    def tangent(v: torch.Tensor) -> torch.Tensor:   # the part of a change that survives normalisation
        return v - (v * unit).sum(-1, keepdim=True) * unit

    surface = {}
    if "cell_depth" in record_inputs(rows, model):
        _, average = learned_change(model, rows, average_face=True)
        surface["surface_share"] = ((learned - average).norm(dim=-1) / learned.norm(dim=-1)).mean().item()
    return {"n": len(rows), **surface,
            "cos_target": F.cosine_similarity(learned, gap, dim=-1).mean().item(),
            "cos_target_tangent": F.cosine_similarity(tangent(learned), tangent(gap), dim=-1).mean().item(),
            "size_vs_gap": (learned.norm(dim=-1) / gap.norm(dim=-1)).mean().item(),
            "cos_with_shuffled": F.cosine_similarity(learned, shuffled, dim=-1).mean().item(),
            "shuffled_cos_target": F.cosine_similarity(shuffled, gap, dim=-1).mean().item(),
            "target_cos_before": F.cosine_similarity(start, target, dim=-1).mean().item(),
            "target_cos_after": F.cosine_similarity(out, target, dim=-1).mean().item()}


def model_folder(work_dir: Path, method: str, seed: int, fold: int) -> Path | None:
    """The model the evaluation scored for this fold: best_model (early stopping) if there, else final_model."""
    run = Path(work_dir) / f"{method}_seed{seed}_fold{fold:02d}"
    for name in ("best_model", "final_model"):
        if (run / name / "config.json").is_file():
            return run / name
    return None


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work_dir", default="runs/heldout_v2")
    p.add_argument("--method", default="enhanced_map")
    p.add_argument("--seeds", default="0")
    p.add_argument("--data_dir", default="data/cache")
    p.add_argument("--out", default=None, help="also write the per-model figures to this JSON file")
    args = p.parse_args(argv)
    cfp = load_records(args.data_dir, "cfp", "insightface", maps=True, surface=True)
    templates = flip_fused_templates(cfp)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for fold in range(1, 11):
            folder = model_folder(Path(args.work_dir), args.method, seed, fold)
            if folder is None:
                continue
            model, _ = load_pretrained(folder)
            held_out = cfp.subset(cfp.found & (cfp.fold == fold) & (np.abs(cfp.source_pose[:, 0]) > TURNED))
            rows.append({"seed": seed, "fold": fold, "model": folder.name, **path_stats(model, held_out, templates)})
    if not rows:
        raise SystemExit(f"no {args.method} fold models in {args.work_dir}: run the evaluation first")
    keys = [k for k in rows[0] if k not in ("seed", "fold", "model", "n")]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    print(f"{args.method} in {args.work_dir}: {len(rows)} fold models; CFP photos turned more than {TURNED:.0f} deg "
          "of each model's held-out fold, sent to frontal")
    print("| fold | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys))
    for r in rows:
        print(f"| {r['fold']} (seed {r['seed']}) | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |")
    print("| mean | " + " | ".join(f"{mean[k]:.3f}" for k in keys) + " |")
    result = {"work_dir": args.work_dir, "method": args.method, "turned": TURNED, "models": rows, "mean": mean}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
