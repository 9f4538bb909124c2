"""Run the face pipeline once over face datasets and cache the records for training and evaluation.

    python -m viewdiff.training.extract --datasets cfp,pointing04,cplfw_train --jobs 2
    python -m viewdiff.training.extract --datasets folder:/path/to/photos   # <root>/<person>/<photo>

Writes `<cache_dir>/<backend>/<dataset>.npz` (gitignored, see `viewdiff.training.records`) as it goes:
an interrupted run keeps what it computed, and a rerun only analyses new or changed images. With an
embedder that exposes its 7x7 map (the shipped w600k_mbf), `<dataset>_maps.npz` then holds the maps of
every face and of its mirror, computed from the cached crops, and `<dataset>_surface.npz` the measured face surface
of every face (MediaPipe Face Mesh, `viewdiff.training.surface`; the photos are read again, no detection). Shows a
progress bar (with the faces found so
far) unless --quiet; prints each dataset's detection rate and the photos without a detectable face.
"""
from __future__ import annotations

import argparse
import functools
import sys
import time

import numpy as np

from viewdiff.faces.analyzer import FaceAnalyzer
from viewdiff.faces.errors import FaceAnalysisError
from viewdiff.paths import shared_dir
from viewdiff.training.listings import DATASETS
from viewdiff.training.records import extract_maps, extract_records
from viewdiff.training.surface import extract_surface

SHOWN_MISSES = 20


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data_root", default=str(shared_dir() / "data"),
                   help="folder holding the named datasets (cfp/, pointing04/, cplfw_train/)")
    p.add_argument("--datasets", default="cfp,pointing04",
                   help=f"comma list of {', '.join(DATASETS)} or folder:PATH (<PATH>/<person>/<photo>)")
    p.add_argument("--cache_dir", default="data/cache")
    p.add_argument("--backend", default="insightface", choices=("auto", "dlib", "insightface"))
    p.add_argument("--pack", default=None, help="insightface model pack name or folder (default: the shipped "
                   "w600k_mbf)")
    p.add_argument("--max_identities", type=int, default=None, help="only the first N identities per dataset")
    p.add_argument("--jobs", type=int, default=1, help="analyse in N processes (one per core)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.jobs < 1:
        print("error: --jobs must be at least 1", file=sys.stderr)
        return 2
    make_analyzer = functools.partial(FaceAnalyzer, backend=args.backend, pack=args.pack)
    try:
        analyzer = make_analyzer()
    except FaceAnalysisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"face backend: {analyzer.describe()}")
    for name in (d.strip() for d in args.datasets.split(",") if d.strip()):
        start = time.perf_counter()
        try:
            records, stats = extract_records(name, args.data_root, analyzer, args.cache_dir, args.max_identities,
                                             progress=not args.quiet, jobs=args.jobs, make_analyzer=make_analyzer)
        except (ValueError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        took = time.perf_counter() - start
        images, missed = stats["images"], stats["no_face"]
        print(f"{name}: {images} images of {len(set(records.identity))} identities, {stats['analysed']} analysed in "
              f"{took:.0f} s; a face found in {images - missed} ({100 * (images - missed) / images:.2f}%), "
              f"none in {missed} -> {stats['cache']}")
        for path in stats["no_face_paths"][:SHOWN_MISSES]:
            print(f"  no face: {path}")
        if missed > SHOWN_MISSES:
            print(f"  ... and {missed - SHOWN_MISSES} more")
        if analyzer.feature_maps is not None and missed < images:   # from the cached crops: no detection
            start = time.perf_counter()
            out = extract_maps(args.cache_dir, name, analyzer.backend, analyzer.feature_maps)
            print(f"{name}: 7x7 feature maps of every face and its mirror, {time.perf_counter() - start:.0f} s -> {out}")
        if missed < images:
            out, surface = extract_surface(args.cache_dir, name, analyzer.backend, args.data_root, jobs=args.jobs,
                                           progress=not args.quiet)
            if not surface["skipped"]:
                measured = surface["presence"][np.isfinite(surface["presence"])]
                print(f"{name}: the face surface of {surface['measured']} faces in {surface['seconds']:.0f} s "
                      f"(face-mesh presence > 0.5: {100 * np.mean(measured > 0.5):.1f}%) "
                      f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
