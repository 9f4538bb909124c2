"""Where a map model looks on held-out profiles: the share of attention on the visible half of the face.

    python -m viewdiff.training.attention_stats --work_dir runs/nested --method enhanced_map [--seeds 0,1,2]

For every fold model an evaluation left in the work dir (``<method>_seed<S>_fold<K>/final_model``), the
profiles of its held-out fold turned more than `TURNED` degrees are run through it, and for each layer the
photo's cells (as queries, heads averaged) are asked how their attention on the photo's 49 cells splits:
the share that falls on the visible half (the 3 columns on the side the face is turned away from; the
middle column is neither) against 3/7 for attention spread evenly. Prints one row per layer (mean over
folds and seeds) and the same for the fresh, untrained model.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from viewdiff.models.checkpoint import load_pretrained
from viewdiff.models.transformer import EnhancedTransformerDecoderOnly3D
from viewdiff.training.datasets import record_inputs
from viewdiff.training.records import FaceRecords, load_records

TURNED = 60.0


def visible_columns(yaw: float, size: int = 7) -> np.ndarray:
    """Columns of the aligned crop on the visible side: a face turned to the image's left (yaw > 0) shows
    its far cheek on the image's right."""
    half = size // 2
    return np.arange(half + 1, size) if yaw > 0 else np.arange(0, half)


@torch.no_grad()
def visible_share(model: EnhancedTransformerDecoderOnly3D, rows: FaceRecords) -> np.ndarray:
    """[layers] mean share of the photo cells' attention (over the photo's cells) on the visible half."""
    model.eval()
    size = model.settings.map_size
    t = {k: torch.as_tensor(np.asarray(v), dtype=torch.float32) for k, v in record_inputs(rows, model).items()}
    model(**t)
    cells = size * size
    shares = []
    for weights in model.last_visualization["attention"]:   # [B, H, T, T]; tokens: pose, photo cells, ...
        photo = weights.mean(1)[:, 1:1 + cells, 1:1 + cells].mean(1).view(-1, size, size)   # [B, rows, cols]
        visible = torch.stack([photo[i][:, visible_columns(float(y), size)].sum()
                               for i, y in enumerate(rows.source_pose[:, 0])])
        shares.append((visible / photo.flatten(1).sum(1)).mean().item())
    return np.asarray(shares)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work_dir", default="runs/nested")
    p.add_argument("--method", default="enhanced_map")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--data_dir", default="data/cache")
    args = p.parse_args(argv)
    cfp = load_records(args.data_dir, "cfp", "insightface", maps=True, surface=True)
    found = [], []
    for seed in (int(s) for s in args.seeds.split(",")):
        for fold in range(1, 11):
            folder = Path(args.work_dir) / f"{args.method}_seed{seed}_fold{fold:02d}" / "final_model"
            if not (folder / "config.json").is_file():
                continue
            model, _ = load_pretrained(folder)
            rows = cfp.subset(cfp.found & (cfp.fold == fold) & (np.abs(cfp.source_pose[:, 0]) > TURNED))
            torch.manual_seed(seed)
            fresh = EnhancedTransformerDecoderOnly3D(**model.config)
            fresh.embedder_head.load_state_dict(model.embedder_head.state_dict())
            found[0].append(visible_share(model, rows))
            found[1].append(visible_share(fresh, rows))
    if not found[0]:
        raise SystemExit(f"no {args.method} fold models in {args.work_dir}: run the evaluation first")
    trained, fresh = np.mean(found[0], axis=0), np.mean(found[1], axis=0)
    print(f"{args.method}: {len(found[0])} fold models; profiles turned more than {TURNED:.0f} deg of each model's "
          "held-out fold. Share of the photo cells' attention on the visible half (even spread: 3/7 = 0.43)")
    print("| layer | trained | untrained |\n|---|---|---|")
    for i, (a, b) in enumerate(zip(trained, fresh)):
        print(f"| {i + 1} | {a:.3f} | {b:.3f} |")


if __name__ == "__main__":
    main()
