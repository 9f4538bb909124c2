"""Measure each cached face's 3D surface (MediaPipe Face Mesh) for training: `<dataset>_surface.npz` beside the
records cache.

    python -m viewdiff.training.extract_surface --datasets cfp,cplfw_train,pointing04 --cache_dir data/cache

Needs the records caches (`python -m viewdiff.training.extract`); re-reads the photos from the paths in them (no
new detection). See `viewdiff.training.surface` for the file's layout. Prints, per dataset, the time and the share
of faces with presence > 0.5 (CFP: frontal and profile apart).
"""
from __future__ import annotations

import argparse
import sys

from viewdiff.paths import shared_dir
from viewdiff.training.surface import extract_surface


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--datasets", default="cfp,pointing04")
    p.add_argument("--data_root", default=str(shared_dir() / "data"),
                   help="folder holding the named datasets (the records' paths are relative to it)")
    p.add_argument("--cache_dir", default="data/cache")
    p.add_argument("--backend", default="insightface")
    p.add_argument("--jobs", type=int, default=1, help="processes (one per core)")
    p.add_argument("--force", action="store_true", help="recompute even when the file is current")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from viewdiff.training.records import load_records
    for name in (d.strip() for d in args.datasets.split(",") if d.strip()):
        try:
            out, stats = extract_surface(args.cache_dir, name, args.backend, args.data_root, args.jobs,
                                         progress=not args.quiet, force=args.force)
        except FileNotFoundError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        records = load_records(args.cache_dir, name, args.backend)
        present = stats["presence"] > 0.5   # NaN (no face) counts as absent
        groups = {"all": records.found}
        if name == "cfp":
            groups.update({v: records.found & (records.view == v) for v in ("frontal", "profile")})
        shares = ", ".join(f"{g} {100 * present[m].mean():.1f}% of {m.sum()}" for g, m in groups.items() if m.any())
        took = "current, skipped" if stats["skipped"] else f"{stats['seconds']:.0f} s, {stats['unreadable']} unreadable"
        print(f"{name}: {took}; faces with presence > 0.5: {shares} -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
