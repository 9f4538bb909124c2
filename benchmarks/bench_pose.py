"""Head-pose accuracy of the face pipeline on Pointing'04 ground truth, and per-image latency.

    python benchmarks/bench_pose.py                      # records from data/cache/<backend>/pointing04.npz
    python benchmarks/bench_pose.py --direct --max_people 2   # analyse the photos now (no cache)

Prints, per |true yaw| bin (0, 15, ..., 90 degrees; Pointing'04 pans are multiples of 15), the
number of photos, the detection rate, yaw and pitch mean absolute error (MAE, degrees, over the
photos with a face) and the mean signed yaw error (negative: yaw under-estimated in magnitude),
then pitch MAE per |true pitch|, then the latency of `FaceAnalyzer.analyze` per photo (file read,
decode, detection, landmarks, embedding, pose) measured on `--latency_images` photos.
The cache is written by `python -m viewdiff.training.extract --datasets pointing04`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from viewdiff.training.records import FaceRecords, cache_path, extract_records, list_pointing04, load_records  # noqa: E402
from viewdiff.faces.analyzer import FaceAnalyzer  # noqa: E402
from viewdiff.faces.errors import FaceAnalysisError  # noqa: E402
from viewdiff.paths import shared_dir  # noqa: E402

YAW_BINS = (0, 15, 30, 45, 60, 75, 90)
PITCH_BINS = (0, 15, 30, 60, 90)


def pose_table(records: FaceRecords) -> tuple[list[str], dict]:
    """Markdown lines of the per-|yaw| table and per-|pitch| table; summary numbers."""
    true_yaw, true_pitch = records.true_pose[:, 0], records.true_pose[:, 1]
    err = records.source_pose[:, :2] - records.true_pose[:, :2]
    signed = np.sign(true_yaw) * err[:, 0]        # > 0: more turned than the truth, < 0: less
    lines = ["| abs(yaw) | photos | detected | yaw MAE | pitch MAE | yaw bias | yaw sign ok |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    summary = {}

    def row(label, sel):
        found = sel & records.found
        n, k = int(sel.sum()), int(found.sum())
        turned = found & (np.abs(true_yaw) > 0)
        sign_ok = (np.sign(records.source_pose[turned, 0]) == np.sign(true_yaw[turned])).mean() if turned.any() else np.nan
        yaw_mae = float(np.abs(err[found, 0]).mean()) if k else np.nan
        pitch_mae = float(np.abs(err[found, 1]).mean()) if k else np.nan
        bias = float(signed[turned].mean()) if turned.any() else np.nan
        lines.append(f"| {label} | {n} | {k / max(n, 1):.1%} | {yaw_mae:.1f} | {pitch_mae:.1f} | "
                     f"{'-' if np.isnan(bias) else f'{bias:+.1f}'} | {'-' if np.isnan(sign_ok) else f'{sign_ok:.1%}'} |")
        summary[label] = {"photos": n, "detected": k, "yaw_mae": yaw_mae, "pitch_mae": pitch_mae}

    for b in YAW_BINS:
        row(str(b), np.isclose(np.abs(true_yaw), b))
    row("all", np.ones(len(records), bool))
    lines += ["", "| abs(pitch) | photos | detected | pitch MAE | yaw MAE |", "|---:|---:|---:|---:|---:|"]
    for b in PITCH_BINS:
        sel = np.isclose(np.abs(true_pitch), b)
        found = sel & records.found
        lines.append(f"| {b} | {int(sel.sum())} | {found.sum() / max(sel.sum(), 1):.1%} | "
                     f"{np.abs(err[found, 1]).mean():.1f} | {np.abs(err[found, 0]).mean():.1f} |")
    return lines, summary


def measure_latency(analyzer: FaceAnalyzer, paths: list[Path]) -> dict:
    """Seconds per `analyze` call (after one warm-up call), NoFaceError calls included."""
    try:
        analyzer.analyze(paths[0])
    except FaceAnalysisError:
        pass
    times = []
    for p in paths:
        start = time.perf_counter()
        try:
            analyzer.analyze(p)
        except FaceAnalysisError:
            pass
        times.append(time.perf_counter() - start)
    t = np.array(times) * 1000
    return {"n": len(t), "mean_ms": float(t.mean()), "median_ms": float(np.median(t)),
            "p90_ms": float(np.percentile(t, 90)), "max_ms": float(t.max())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data_root", default=str(shared_dir() / "data"), help="folder holding pointing04/")
    p.add_argument("--cache_dir", default="data/cache")
    p.add_argument("--backend", default="dlib", choices=("auto", "dlib", "insightface"))
    p.add_argument("--pack", default=None, help="insightface pack name or folder")
    p.add_argument("--direct", action="store_true",
                   help="analyse the photos now instead of reading the extraction cache")
    p.add_argument("--max_people", type=int, default=None,
                   help="with --direct (or without a cache): only the first N of the 15 people (default 2)")
    p.add_argument("--latency_images", type=int, default=30, help="photos timed for the latency line")
    args = p.parse_args(argv)

    data_root = Path(args.data_root)
    if not (data_root / "pointing04").is_dir():
        print(f"error: {data_root / 'pointing04'} not found (pass --data_root)", file=sys.stderr)
        return 2
    try:
        analyzer = FaceAnalyzer(backend=args.backend, pack=args.pack)
    except FaceAnalysisError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    desc = analyzer.describe()
    cache = cache_path(args.cache_dir, "pointing04", analyzer.backend)
    start = time.perf_counter()
    if cache.is_file() and not args.direct:
        records = load_records(args.cache_dir, "pointing04", analyzer.backend)
        with np.load(cache, allow_pickle=False) as z:
            cached_models = json.loads(json.loads(str(z["meta"]))["model_key"])
        if cached_models != json.loads(json.dumps(desc, sort_keys=True, default=str)):
            print(f"note: the cache was made with {cached_models}, not with the models loaded now "
                  f"({desc}); use --direct to measure these", file=sys.stderr)
        if args.max_people:
            keep = sorted(set(records.identity))[: args.max_people]
            records = records.subset(np.isin(records.identity, keep))
        source = f"cache {cache} ({len(records)} photos)"
    else:
        people = args.max_people or 2
        with tempfile.TemporaryDirectory() as cache_dir:
            records, stats = extract_records("pointing04", data_root, analyzer, cache_dir, people,
                                             progress=sys.stderr.isatty())
        source = (f"analysed now: first {people} of the people, {stats['images']} photos, "
                  f"{time.perf_counter() - start:.0f} s")
    lines, _ = pose_table(records)

    rng = np.random.default_rng(0)
    items = list_pointing04(data_root, args.max_people)
    pick = rng.choice(len(items), min(args.latency_images, len(items)), replace=False)
    lat = measure_latency(analyzer, [items[i].path for i in pick])

    print(f"# Head pose on Pointing'04 (true pose from file names) - {source}")
    print(f"backend: {analyzer.backend}, detector: {desc.get('detector', desc.get('tasks'))}, "
          f"pose: {'landmark_3d_68' if 'landmark_3d_68' in str(desc) else 'pnp5 (solvePnP of the 5 keypoints)'}")
    print("MAE in degrees over photos with a face; yaw bias = mean of sign(true yaw) x (est - true) "
          "(negative: under-estimated turn); sign ok = estimated yaw sign equals the pan sign.\n")
    print("\n".join(lines))
    print(f"\nlatency per photo (analyze(path), {lat['n']} photos 384x288, {platform.machine()}, "
          f"{os.cpu_count()} CPUs): mean {lat['mean_ms']:.0f} ms, median {lat['median_ms']:.0f} ms, "
          f"p90 {lat['p90_ms']:.0f} ms, max {lat['max_ms']:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
