"""The live camera's server path: frame rate, latency and dropped frames, and what its shortcuts cost.

    nice -n 10 .venv/bin/python benchmarks/bench_live.py [--seconds 20] [--camera-fps 15] [--persons 1-15]

1. **Stream**: a simulated camera offers a frame every 1/camera-fps s (Pointing'04 head turns, 640 x 480, or a
   shipped photo without ../shared) into a one-frame slot, as gradio's stream does (a frame that arrives while one is
   processed replaces the waiting one); one worker runs the page's callback (`DemoService.on_live_frame`: the live
   path, the transformer, the panel's HTML with its thumbnail). Prints processed frames/s, latency (frame offered ->
   panel ready, waiting included) p50 / p95, and frames dropped.
2. **Cost of the shortcuts** against the photo path (`FaceAnalyzer.analyze`: SCRFD det_2.5g at 640 on the whole
   frame) on Pointing'04 head turns (tilt 0, pans -90..90, each person's pans in order, as a head turns): per path,
   detection ms, the head pose's difference (yaw / pitch / roll, mean and max), the embedding's cosine to the photo
   path's, the difference of the turned-to-frontal similarity to the person's frontal entry, and verdict agreement at
   the demo's threshold. Paths: tracked (the live default), whole frame at 320, and the other SCRFD of ../shared
   (det_500m, not shipped) at 320.

Stage times are medians; the machine's load is printed (a 2-core VM shared with other jobs: run it niced).
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("VIEWDIFF_ORT_THREADS", "1")   # as app.py
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from viewdiff.demo.gallery import photo_embedding  # noqa: E402
from viewdiff.demo.live import FRONTAL, FaceTracker  # noqa: E402
from viewdiff.demo.service import DemoService  # noqa: E402
from viewdiff.paths import REPO_ROOT, shared_dir  # noqa: E402

PANS = tuple(range(-90, 91, 15))
P04 = shared_dir() / "data" / "pointing04"


def persons(spec: str) -> list[int]:
    lo, _, hi = spec.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def head_turn(person: int) -> list[tuple[int, np.ndarray]]:
    """(true pan, 640 x 480 RGB frame) for one Pointing'04 person's series-1 pans at tilt 0, -90 -> +90."""
    folder = P04 / f"Person{person:02d}"
    return [(pan, cv2.resize(cv2.imread(str(next(folder.glob(f"person{person:02d}1??+0{pan:+d}.jpg"))))[..., ::-1],
                             (640, 480))) for pan in PANS]


def asset_frames() -> list[tuple[float, np.ndarray]]:
    from PIL import Image
    face = np.asarray(Image.open(REPO_ROOT / "assets" / "astronaut.jpg").convert("RGB").resize((480, 480)))
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, 80:560] = face
    return [(float("nan"), frame)]


def stream(service: DemoService, frames: list[np.ndarray], seconds: float, camera_fps: float) -> dict:
    """A camera offering frames at ``camera_fps`` into a one-frame slot; one worker processing the newest."""
    live = service.live.session()
    gallery = service.gallery.copy_to(None)
    slot: dict = {}
    cond = threading.Condition()
    stop = time.perf_counter() + seconds
    offered = dropped = 0
    latencies, done = [], []

    def camera():
        nonlocal offered, dropped
        i, next_at = 0, time.perf_counter()
        while next_at < stop:
            time.sleep(max(0.0, next_at - time.perf_counter()))
            with cond:
                if "frame" in slot:
                    dropped += 1   # replaced before the worker took it
                slot["frame"] = (time.perf_counter(), frames[i % len(frames)])
                offered += 1
                cond.notify()
            i += 1
            next_at += 1 / camera_fps

    def worker():
        while True:
            with cond:
                while "frame" not in slot and time.perf_counter() < stop:
                    cond.wait(0.05)
                if "frame" not in slot:
                    return
                at, frame = slot.pop("frame")
            live.received += 1
            service.on_live_frame(frame, None, live, gallery)
            now = time.perf_counter()
            latencies.append((now - at) * 1000)
            done.append(now)

    threads = [threading.Thread(target=camera), threading.Thread(target=worker)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    span = done[-1] - done[0] if len(done) > 1 else float("nan")
    return {"offered": offered, "processed": len(done), "dropped": dropped, "fps": (len(done) - 1) / span,
            "p50": float(np.percentile(latencies, 50)), "p95": float(np.percentile(latencies, 95)),
            "frame_ms": float(np.median(live.frame_ms))}


def other_scrfd(analyzer):
    """The analyzer with ../shared's det_500m as its detector (None when absent)."""
    from viewdiff.faces.detectors import ScrfdDetector
    path = shared_dir() / "models" / "scrfd" / "det_500m.onnx"
    if not path.is_file():
        return None
    alt = copy.copy(analyzer)
    alt._impl = copy.copy(analyzer._impl)
    alt._impl.detector = ScrfdDetector.from_file(path, 640)
    return alt


def shortcut_costs(service: DemoService, people: list[int]) -> None:
    analyzer, engine, threshold = service.analyzer, service.engine, service.threshold.value
    paths = {"tracked (live default)": ("tracked", analyzer), "whole frame at 320": (320, analyzer)}
    alt = other_scrfd(analyzer)
    if alt is not None:
        paths["det_500m at 320"] = (320, alt)
    rows = {name: {"pose": [], "cos": [], "sim": [], "agree": [], "det_ms": [], "yaw_err": []} for name in paths}
    full_rows = {"det_ms": [], "yaw_err": [], "total_ms": []}
    for person in people:
        frames = head_turn(person)
        full = {}
        for pan, frame in frames:
            t = time.perf_counter()
            full[pan] = analyzer.analyze(frame)
            full_rows["total_ms"].append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            analyzer.detect(frame)
            full_rows["det_ms"].append((time.perf_counter() - t) * 1000)
            full_rows["yaw_err"].append(abs(float(full[pan].source_pose[0]) - pan))
        template = photo_embedding(full[0])   # the person enrolled from the frontal photo, as "Enrol me" does
        full_sim = {pan: float(engine.embed(r, FRONTAL) @ template) for pan, r in full.items()}
        for name, (how, who) in paths.items():
            tracker = FaceTracker(who, det_size=320)
            tracker.find(frames[0][1])   # the stream's first frame: a whole-frame search
            row = rows[name]
            for pan, frame in frames:
                t = time.perf_counter()
                if how == "tracked":
                    found = tracker.find(frame)
                    box, kps = found[:2]
                else:
                    boxes, points = who.detect(frame, how)
                    i = int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
                    box, kps = boxes[i], points[i]
                row["det_ms"].append((time.perf_counter() - t) * 1000)
                rec = who.describe_face(frame, box, kps)
                ref = full[pan]
                row["pose"].append(np.abs(rec.source_pose - ref.source_pose))
                row["cos"].append(float(rec.embedding @ ref.embedding))
                sim = float(engine.embed(rec, FRONTAL) @ template)
                row["sim"].append(abs(sim - full_sim[pan]))
                row["agree"].append((sim >= threshold) == (full_sim[pan] >= threshold))
                row["yaw_err"].append(abs(float(rec.source_pose[0]) - pan))
    n = len(full_rows["yaw_err"])
    print(f"\n2. cost of the shortcuts vs the photo path, Pointing'04 persons {people[0]}-{people[-1]}, tilt 0, "
          f"pans -90..90 ({n} frames, 640 x 480)")
    print(f"   photo path (SCRFD det_2.5g at 640, whole frame): detection {np.median(full_rows['det_ms']):.1f} ms, "
          f"whole analysis {np.median(full_rows['total_ms']):.1f} ms; yaw MAE vs the true pan "
          f"{np.mean(full_rows['yaw_err']):.1f} deg")
    print("   | path | detection ms | yaw / pitch / roll diff, mean (max) deg | cosine to the photo path's embedding, "
          "mean (min) | turned similarity diff, mean (max) | verdict agrees | yaw MAE vs true pan |")
    print("   |---|---|---|---|---|---|---|")
    for name, row in rows.items():
        pose = np.array(row["pose"])
        print(f"   | {name} | {np.median(row['det_ms']):.1f} | "
              + " / ".join(f"{pose[:, k].mean():.1f} ({pose[:, k].max():.1f})" for k in range(3))
              + f" | {np.mean(row['cos']):.4f} ({np.min(row['cos']):.4f}) | {np.mean(row['sim']):.4f} "
              f"({np.max(row['sim']):.4f}) | {np.mean(row['agree']):.1%} | {np.mean(row['yaw_err']):.1f} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the simulated stream")
    parser.add_argument("--camera-fps", type=float, default=15.0, help="frames the simulated camera offers per second")
    parser.add_argument("--persons", default="1-15", help="Pointing'04 persons for the shortcuts' cost (e.g. 1-15)")
    parser.add_argument("--skip-costs", action="store_true", help="the stream only")
    args = parser.parse_args(argv)
    service = DemoService.load()
    print(f"load average {os.getloadavg()[0]:.1f}; threshold {service.threshold.value if service.threshold else None}")
    if P04.is_dir():
        frames = [f for person in persons(args.persons)[:3] for _, f in head_turn(person) for _ in range(3)]
        source = "Pointing'04 head turns (3 frames per pan)"
    else:
        frames, source = [f for _, f in asset_frames()], "a shipped photo (no ../shared)"
    service.on_live_frame(frames[0], None, service.live.session(), None)   # first-call costs out of the numbers
    result = stream(service, frames, args.seconds, args.camera_fps)
    print(f"\n1. stream: {source}, camera {args.camera_fps:g} frames/s for {args.seconds:g} s, one worker")
    print(f"   processed {result['processed']} of {result['offered']} frames offered: {result['fps']:.1f} frames/s; "
          f"server time per frame {result['frame_ms']:.0f} ms (median); latency (offered -> panel ready) p50 "
          f"{result['p50']:.0f} ms, p95 {result['p95']:.0f} ms; dropped {result['dropped']} "
          f"({result['dropped'] / max(result['offered'], 1):.0%}), queued 0")
    if not args.skip_costs and P04.is_dir():
        shortcut_costs(service, persons(args.persons))
    elif not P04.is_dir():
        print(f"\n2. cost of the shortcuts: needs Pointing'04 at {P04}")
    print(f"\nload average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
