"""Head pose of the default face pipeline: Pointing'04 against its true pose, CFP photos, latency.

    python benchmarks/bench_pose.py              # records from data/cache/<backend>/{pointing04,cfp}.npz
    python benchmarks/bench_pose.py --backend dlib

Prints (1) per |true yaw| bin of Pointing'04 (0, 15, ..., 90 degrees): photos, detection rate, yaw
MAE, yaw bias (negative: under-read), sign right, pitch MAE (all, and at |tilt| <= 30); (2) CFP:
frontal pitch p10 / median / p90, median |pitch|, share within 15 deg of level, median |yaw|, and the
profiles' median |yaw|; (3) per-face latency of the head-pose stage alone (3DDFA_V2 + FSA-Net x2 +
solvePnP + calibration, SCRFD detection not included) and of the whole `FaceAnalyzer.analyze` on a
640x480 photo, on one core. The figures use today's calibration (`weights/headpose/calibration.json`),
which was fitted on these same photos: for held-out figures run `python -m viewdiff.training.fit_head_pose`.
The caches are written by `python -m viewdiff.training.extract`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("VIEWDIFF_ORT_THREADS", "1")   # one core, as the targets are stated
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from viewdiff.faces.analyzer import FaceAnalyzer  # noqa: E402
from viewdiff.paths import data_root  # noqa: E402
from viewdiff.training.pose_scores import (YAW_BINS, cfp_markdown, cfp_pose_scores, pointing04_markdown,  # noqa: E402
                                           pointing04_pose_scores, yaw_bin)
from viewdiff.training.records import load_records  # noqa: E402


def detection_rates(true_yaw: np.ndarray, found: np.ndarray) -> str:
    rates = [f"{b}: {found[yaw_bin(true_yaw, b)].mean():.1%}" for b in YAW_BINS]
    return "Pointing'04 detection per abs(yaw): " + ", ".join(rates) + f"; all {found.mean():.1%}"


def median_ms(fn, repeats: int) -> float:
    fn()   # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache_dir", default="data/cache")
    p.add_argument("--backend", default="insightface")
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args(argv)
    cv2.setNumThreads(1)
    p04 = load_records(args.cache_dir, "pointing04", args.backend)
    cfp = load_records(args.cache_dir, "cfp", args.backend)
    print(detection_rates(p04.true_pose[:, 0], p04.found))
    found = p04.subset(p04.found)
    print(pointing04_markdown(pointing04_pose_scores(found.source_pose, found.true_pose)))
    print()
    print(f"CFP detection: {cfp.found.mean():.1%} of {len(cfp)}")
    found = cfp.subset(cfp.found)
    print(cfp_markdown(cfp_pose_scores(found.source_pose, found.view)))

    analyzer = FaceAnalyzer(backend=args.backend)
    photo = data_root() / "pointing04/Person01/person01146+0+0.jpg"
    rgb = cv2.resize(analyzer.load_image(photo), (640, 480))
    record = analyzer.analyze(rgb)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    pose_ms = median_ms(lambda: analyzer.head_pose(bgr, record.bbox, record.keypoints), args.repeats)
    full_ms = median_ms(lambda: analyzer.analyze(rgb), args.repeats)
    print(f"\nlatency, one core (median of {args.repeats}): head-pose stage {pose_ms:.1f} ms per face; "
          f"analyze() of a 640x480 photo {full_ms:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
