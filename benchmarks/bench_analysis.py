"""Photo analysis speed, stage by stage, and what a faster setting costs (prints numbers, not a test).

    python benchmarks/bench_analysis.py [--repeats 9] [--det-sizes 640,320] [--cfp-step 10] [--skip-detection]
                                        [--skip-first-photo]

Four parts, each printed with the machine's load average (``uptime``) beside it: on a shared machine
wall times are pessimistic, so each stage is also given in CPU seconds of this process (what it
costs, whatever else runs).

1. Stages of `FaceAnalyzer.analyze` (median over ``--repeats``, after one untimed call) for
   assets/t1.jpg (1280 x 886) and a 12 MP JPEG made from it (upscaled to 4000 x 2768, quality 92, in a
   temporary folder): decode, detection, embedding (alignment + the embedder on the face and its
   mirror image), head pose (3DDFA_V2 + FSA-Net + solvePnP), face mesh (MediaPipe Face Mesh: crop, model,
   the 7x7 cell depth; `FaceMesh.surface`) and the rest (downscale, region, record), for
   each ``--det-sizes`` and with onnxruntime at its default threads and at one thread per session.
2. Decoding the 12 MP photo: full size + downscale (before) against libjpeg's reduced decode (now), and
   what it changes in the records of its six faces (cosine, head pose, box).
3. First photo after load, in a fresh process: `DemoService.load()` (which warms the models up), then
   `on_photo` twice (analysis, pose transformer, figures); the first call against the second.
4. What a smaller detector input costs, against the default path (det_size 640): detection rate on
   CFP profiles (every ``--cfp-step``-th identity, 4 profiles each) and Pointing'04 pan +-90 (tilt 0, 60
   photos), mean / minimum cosine between the two paths' embeddings, mean |yaw| and |pitch| differences.
   Needs ../shared.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

PHOTO = REPO / "assets" / "t1.jpg"
STAGES = ("decode", "detect", "embed", "head pose", "face mesh")


def load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def twelve_mp_photo(folder: Path) -> Path:
    """assets/t1.jpg upscaled to 4000 px wide (12 MP at its aspect ratio), JPEG quality 92."""
    from PIL import Image
    path = folder / "t1_12mp.jpg"
    im = Image.open(PHOTO)
    im.resize((4000, round(4000 * im.size[1] / im.size[0])), Image.LANCZOS).save(path, quality=92)
    return path


class StageClock:
    """Wraps the analyzer's stages; per call of `analyze`: wall and CPU ms per stage, and the total."""

    def __init__(self, analyzer):
        import viewdiff.faces.analyzer as module
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.restore = (module, module.load_image_scaled)
        self._wrap(module, "load_image_scaled", "decode")
        self._wrap(analyzer._impl, "detect", "detect")
        self._wrap(analyzer._impl, "describe_face", "embed")
        self._wrap(analyzer, "head_pose", "head pose")
        self._wrap(analyzer.mesh, "surface", "face mesh")

    def _wrap(self, owner, name: str, stage: str) -> None:
        inner = getattr(owner, name)

        def timed(*args, **kwargs):
            w, c = time.perf_counter(), time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                self.wall[stage] = self.wall.get(stage, 0.0) + (time.perf_counter() - w) * 1000
                self.cpu[stage] = self.cpu.get(stage, 0.0) + (time.process_time() - c) * 1000
        setattr(owner, name, timed)

    def close(self) -> None:
        """Put the module's decoder back (the analyzer's own stages go with the analyzer)."""
        module, original = self.restore
        module.load_image_scaled = original

    def run(self, analyzer, photo) -> tuple[dict, dict]:
        self.wall.clear()
        self.cpu.clear()
        w, c = time.perf_counter(), time.process_time()
        analyzer.analyze(photo)
        wall, cpu = dict(self.wall), dict(self.cpu)
        wall["total"], cpu["total"] = (time.perf_counter() - w) * 1000, (time.process_time() - c) * 1000
        return wall, cpu


def stage_table(photos: list[Path], det_sizes: list[int], repeats: int) -> None:
    from viewdiff.faces.analyzer import FaceAnalyzer
    print(f"\n1. analyze() by stage, median of {repeats} (ms wall / ms CPU of this process) [{load()}]")
    print(f"   {'photo':14s} {'det':>4s} {'ORT threads':>11s}  " + "  ".join(f"{s:>13s}" for s in (*STAGES, "rest", "total")))
    for threads in ("default", "1"):
        os.environ["VIEWDIFF_ORT_THREADS"] = "0" if threads == "default" else threads
        for det in det_sizes:
            analyzer = FaceAnalyzer(det_size=det)
            analyzer.warm_up()
            clock = StageClock(analyzer)
            for photo in photos:
                clock.run(analyzer, photo)   # untimed
                runs = [clock.run(analyzer, photo) for _ in range(repeats)]
                cells = []
                for stage in (*STAGES, "rest", "total"):
                    if stage == "rest":
                        w = [r[0]["total"] - sum(r[0].get(s, 0) for s in STAGES) for r in runs]
                        c = [r[1]["total"] - sum(r[1].get(s, 0) for s in STAGES) for r in runs]
                    else:
                        w, c = [r[0].get(stage, 0) for r in runs], [r[1].get(stage, 0) for r in runs]
                    cells.append(f"{statistics.median(w):6.0f} /{statistics.median(c):5.0f}")
                print(f"   {photo.name:14s} {det:4d} {threads:>11s}  " + "  ".join(f"{x:>13s}" for x in cells))
            clock.close()
    os.environ.pop("VIEWDIFF_ORT_THREADS")
    print(f"   [{load()}]")


def decode_table(photo: Path, repeats: int) -> None:
    import cv2

    from viewdiff.faces.analyzer import WORK_MAX_SIDE
    from viewdiff.faces.images import load_image, load_image_scaled
    data = photo.read_bytes()

    def full():
        rgb = load_image(data)
        scale = WORK_MAX_SIDE / max(rgb.shape[:2])
        return cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)

    def reduced():
        rgb, _ = load_image_scaled(data, WORK_MAX_SIDE)
        scale = WORK_MAX_SIDE / max(rgb.shape[:2])
        return cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)

    print(f"\n2. the 12 MP photo ({len(data) / 1e6:.1f} MB) to the {WORK_MAX_SIDE} px detection copy, median of "
          f"{repeats} [{load()}]")
    for name, fn in (("full decode + downscale (before)", full), ("reduced decode + downscale (now)", reduced)):
        fn()
        wall, cpu = [], []
        for _ in range(repeats):
            w, c = time.perf_counter(), time.process_time()
            fn()
            wall.append((time.perf_counter() - w) * 1000)
            cpu.append((time.process_time() - c) * 1000)
        print(f"   {name:34s} {statistics.median(wall):6.0f} ms wall, {statistics.median(cpu):6.0f} ms CPU")
    from viewdiff.faces.analyzer import FaceAnalyzer
    analyzer = FaceAnalyzer()
    reduced, full = analyzer.analyze_all(data), analyzer.analyze_all(load_image(data))   # an array: full decode
    pairs = [(min(reduced, key=lambda r: np.abs(r.bbox - f.bbox).max()), f) for f in full]
    cos = [float(r.embedding @ f.embedding) for r, f in pairs]
    pose = [np.abs(r.source_pose - f.source_pose).max() for r, f in pairs]
    box = [np.abs(r.bbox - f.bbox).max() / (f.bbox[2] - f.bbox[0]) for r, f in pairs]
    print(f"   its {len(full)} faces, reduced vs full decode: cosine mean {np.mean(cos):.4f} min {np.min(cos):.4f}; "
          f"max |pose diff| {np.max(pose):.2f} deg; max box shift {100 * np.max(box):.1f}% of the face")


FIRST_PHOTO = """
import json, sys, time
start = time.perf_counter()
from viewdiff.demo.service import DemoService, ViewOptions
service = DemoService.load()
loaded = time.perf_counter()
times = []
for photo in sys.argv[1:]:
    t = time.perf_counter()
    reply = service.on_photo(photo, (0, 0, 0), ViewOptions(), None)
    assert reply.values.get("session") is not None, reply
    times.append((time.perf_counter() - t) * 1000)
print(json.dumps({"load_s": loaded - start, "photos_ms": times}))
"""


def first_photo(photos: list[Path], runs: int = 3) -> None:
    print(f"\n3. first photo after load (fresh process, DemoService.load() then on_photo), {runs} runs [{load()}]")
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", FIRST_PHOTO, *map(str, photos)], cwd=REPO, capture_output=True,
                             text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
        if out.returncode:
            print("   failed:", out.stderr[-800:])
            return
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"   load {r['load_s']:.1f} s; " + ", ".join(f"{p.name} {ms:.0f} ms" for p, ms in zip(photos, r["photos_ms"]))
              + f"  [{load()}]")


def detection_cost(det_sizes: list[int], cfp_step: int) -> None:
    from viewdiff.faces.analyzer import FaceAnalyzer
    from viewdiff.faces.errors import NoFaceError
    from viewdiff.paths import shared_dir
    data = shared_dir() / "data"
    p04 = sorted([*data.glob("pointing04/Person*/*+0+90.jpg"), *data.glob("pointing04/Person*/*+0-90.jpg")])
    cfp = [p for d in sorted((data / "cfp/Data/Images").glob("*"))[::cfp_step] for p in sorted(d.glob("profile/*.jpg"))]
    if not p04 or not cfp:
        print(f"\n4. detection cost: skipped (no CFP / Pointing'04 photos under {data})")
        return
    print(f"\n4. smaller detector input against det_size 640 on {len(cfp)} CFP profiles and {len(p04)} Pointing'04 "
          f"pan +-90 photos [{load()}]")

    def run(det):
        analyzer = FaceAnalyzer(det_size=det)
        out = {}
        for path in p04 + cfp:
            try:
                r = analyzer.analyze(path)
                out[path] = (r.embedding, r.source_pose)
            except NoFaceError:
                out[path] = None
        return out

    base = run(640)
    for det in det_sizes:
        got = base if det == 640 else run(det)
        for name, paths in (("Pointing'04 pan +-90", p04), ("CFP profiles", cfp)):
            both = [p for p in paths if got[p] is not None and base[p] is not None]
            cos = [float(got[p][0] @ base[p][0]) for p in both]
            dyaw = [abs(float(got[p][1][0] - base[p][1][0])) for p in both]
            dpitch = [abs(float(got[p][1][1] - base[p][1][1])) for p in both]
            found = sum(got[p] is not None for p in paths)
            print(f"   det {det:3d} {name:21s} found {found:3d}/{len(paths):3d} (640: "
                  f"{sum(base[p] is not None for p in paths)}); cosine to 640 mean {np.mean(cos):.4f} min "
                  f"{np.min(cos):.4f}; |yaw diff| mean {np.mean(dyaw):.2f} max {np.max(dyaw):.1f}; |pitch diff| mean "
                  f"{np.mean(dpitch):.2f} max {np.max(dpitch):.1f} deg")
    print(f"   [{load()}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--det-sizes", default="640,320", help="detector input sizes to compare (640 = default)")
    parser.add_argument("--cfp-step", type=int, default=10, help="every N-th CFP identity for the detection check")
    parser.add_argument("--skip-detection", action="store_true", help="skip part 4 (minutes)")
    parser.add_argument("--skip-first-photo", action="store_true", help="skip part 3")
    args = parser.parse_args()
    det_sizes = [int(v) for v in args.det_sizes.split(",")]
    print(f"bench_analysis on {os.cpu_count()} CPUs [{load()}]")
    with tempfile.TemporaryDirectory(prefix="bench-analysis-") as tmp:
        big = twelve_mp_photo(Path(tmp))
        stage_table([PHOTO, big], det_sizes, args.repeats)
        decode_table(big, args.repeats)
        if not args.skip_first_photo:
            first_photo([PHOTO, REPO / "assets" / "astronaut.jpg", big])
        if not args.skip_detection:
            detection_cost([d for d in det_sizes if d != 640] or [640], args.cfp_step)


if __name__ == "__main__":
    main()
