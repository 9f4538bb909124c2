"""Run the face pipeline once over CFP / Pointing'04 and cache the records for training.

    python -m viewdiff.training.extract --data_root ../shared/data --datasets cfp,pointing04

Writes `<cache_dir>/<backend>/<dataset>.npz` (gitignored, see `viewdiff.training.records`) as it goes:
an interrupted run keeps what it computed, and a rerun only analyses new or changed images. With an
embedder that exposes its 7x7 map (the shipped w600k_mbf), `<dataset>_maps.npz` then holds the maps of
every face and of its mirror, computed from the cached crops. Shows a
progress bar unless --quiet; prints how many images had no detectable face.
"""
from __future__ import annotations

import argparse
import sys
import time

from viewdiff.faces.analyzer import FaceAnalyzer
from viewdiff.faces.errors import FaceAnalysisError
from viewdiff.paths import shared_dir
from viewdiff.training.records import DATASETS, extract_maps, extract_records


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data_root", default=str(shared_dir() / "data"),
                   help="folder holding cfp/ and pointing04/")
    p.add_argument("--datasets", default="cfp,pointing04", help=f"comma list of {', '.join(DATASETS)}")
    p.add_argument("--cache_dir", default="data/cache")
    p.add_argument("--backend", default="insightface", choices=("auto", "dlib", "insightface"))
    p.add_argument("--pack", default=None, help="insightface model pack name or folder (default: the shipped "
                   "w600k_mbf)")
    p.add_argument("--max_identities", type=int, default=None, help="only the first N identities per dataset")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        analyzer = FaceAnalyzer(backend=args.backend, pack=args.pack)
    except FaceAnalysisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"face backend: {analyzer.describe()}")
    for name in (d.strip() for d in args.datasets.split(",") if d.strip()):
        start = time.perf_counter()
        try:
            records, stats = extract_records(name, args.data_root, analyzer, args.cache_dir,
                                             args.max_identities, progress=not args.quiet)
        except (ValueError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        took = time.perf_counter() - start
        print(f"{name}: {stats['images']} images, {stats['analysed']} analysed, {stats['no_face']} without a "
              f"face, {len(set(records.identity))} identities, {took:.0f} s -> {stats['cache']}")
        for path in stats["no_face_paths"][:20]:
            print(f"  no face: {path}")
        if stats["no_face"] > 20:
            print(f"  ... and {stats['no_face'] - 20} more")
        if analyzer.feature_maps is not None:   # from the cached crops: no detection
            start = time.perf_counter()
            out = extract_maps(args.cache_dir, name, analyzer.backend, analyzer.feature_maps)
            print(f"{name}: 7x7 feature maps of every face and its mirror, {time.perf_counter() - start:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
