"""The region-by-region split of a score (`viewdiff.demo.explain`) against reality, on real CFP photos.

    python benchmarks/explain_check.py                 # 30 CFP identities from ../shared/data/cfp
    python benchmarks/explain_check.py --identities 60 --weights weights/transformer/28db0b514695b5c8
    python benchmarks/explain_check.py --slider-cost    # what the split adds to a slider move on the server

For each identity i: the gallery is its frontal photo 01 (one unit embedding, with its map); the probes are
its profile photo 01 (same person, frontal-profile), its frontal photo 02 (same person, frontal-frontal)
and identity i+1's profile photo 01 (different people). Every probe goes through the demo's own data path
(`PoseEngine.transform` to the frontal pose, `PoseResult.explanation`). Prints

1. exactness: the largest |sum of terms - score| over every split (raw and transformed, both sides);
2. occlusion: for each frontal-profile pair, each of the 49 regions of the probe's aligned 112x112 crop
   (16x16 px) is greyed out and the crop re-embedded by the shipped embedder; the score's drop is ranked
   against the region's term (Spearman, per pair: median and quartiles over pairs; and pooled). The same
   for the gallery photo's regions. A term is the region's exact share of the score given the rest of the
   map; occlusion also moves the neighbouring cells (the network's receptive fields overlap), so the two
   agree in rank, not in value;
3. the average split (7x7, the probe's regions; profiles flipped so that the nose points to the crop's
   left) of frontal-frontal, frontal-profile and different-person pairs, raw and transformed: what the
   pose costs (frontal-frontal minus frontal-profile, raw) and what the transformer wins back
   (transformed minus raw, frontal-profile), by region and by face zone.

The shipped transformer was trained on every CFP identity (``val_fold`` 0): its figures here are in-sample.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("VIEWDIFF_ORT_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from viewdiff.demo.engine import PoseEngine  # noqa: E402
from viewdiff.demo.gallery import Gallery, record_maps  # noqa: E402
from viewdiff.embeddings import l2_normalize  # noqa: E402
from viewdiff.faces.analyzer import FaceAnalyzer  # noqa: E402
from viewdiff.models.checkpoint import load_pretrained  # noqa: E402
from viewdiff.paths import shared_dir  # noqa: E402

SHIPPED = "weights/transformer/28db0b514695b5c8"
GREY = 128
ZONES = {"eyes (rows 1-2)": (slice(1, 3), slice(None)), "nose (rows 3-4, cols 2-4)": (slice(3, 5), slice(2, 5)),
         "mouth and chin (rows 5-6)": (slice(5, 7), slice(None)),
         "nose side (cols 0-2)": (slice(None), slice(0, 3)), "far side (cols 4-6)": (slice(None), slice(4, 7))}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation of two [K] vectors (ties broken by order: the terms are continuous)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def occlusion_drops(maps_model, crop: np.ndarray, template: np.ndarray, size: int = 7) -> np.ndarray:
    """[S, S] score drop (original cosine - occluded cosine) when each region of the crop is greyed out."""
    cell = crop.shape[0] // size
    crops = [crop]
    for r in range(size):
        for c in range(size):
            grey = crop.copy()
            grey[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = GREY
            crops.append(grey)
    emb, _ = maps_model.run(np.stack(crops))
    scores = l2_normalize(emb) @ template
    return (scores[0] - scores[1:]).reshape(size, size)


def table(grid: np.ndarray, title: str) -> str:
    rows = [" ".join(f"{v:+.4f}" for v in row) for row in grid]
    return f"{title} (sum {grid.sum():+.4f})\n  " + "\n  ".join(rows)


def zones(grid: np.ndarray) -> str:
    return ", ".join(f"{name} {grid[index].sum():+.3f}" for name, index in ZONES.items())


def slider_cost(moves: int) -> None:
    """Median / p90 ms of the split per slider move (`PoseResult.explain_ms`), of the panel's figure, and of the
    whole slider callback, in the demo service as app.py loads it (default gallery, shipped weights)."""
    from viewdiff.demo.panels import explanation_figure
    from viewdiff.demo.service import DemoService, ViewOptions
    service = DemoService.load()
    rng = np.random.default_rng(0)
    split, figure, callback = [], [], []
    for photo in ("astronaut.jpg", "t1_face_yaw55.jpg", "cameraman_gray.png"):
        session = service.on_photo(str(Path(__file__).resolve().parent.parent / "assets" / photo), (0, 0, 0),
                                   ViewOptions(), None).values["session"]
        for i in range(moves):
            pose = (float(rng.integers(-90, 91)), float(rng.integers(-30, 31)) if i % 3 == 0 else 0.0, 0.0)
            start = time.perf_counter()
            service.on_target(pose, ViewOptions(), session, client_moves_marker=True)
            callback.append((time.perf_counter() - start) * 1000)
            split.append(session.result.explain_ms)
            start = time.perf_counter()
            explanation_figure(session.result, session.record).to_json()
            figure.append((time.perf_counter() - start) * 1000)
    for name, values in (("split (PoseResult.explanation)", split), ("panel figure + JSON", figure),
                         ("whole slider callback (without the panel)", callback)):
        print(f"{name}: median {np.median(values):.2f} ms, p90 {np.percentile(values, 90):.2f} ms ({len(values)} moves)")
    print(f"{len(service.gallery)} gallery identities")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--identities", type=int, default=30)
    parser.add_argument("--cfp", default=str(shared_dir() / "data" / "cfp"))
    parser.add_argument("--weights", default=SHIPPED)
    parser.add_argument("--slider-cost", type=int, nargs="?", const=20, default=0, metavar="MOVES",
                        help="time the split in the demo's slider callback instead (MOVES per example photo)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.slider_cost:
        slider_cost(args.slider_cost)
        return
    images = Path(args.cfp) / "Data" / "Images"
    if not images.is_dir():
        raise SystemExit(f"no CFP photos at {images}: pass --cfp DIR (the folder holding Data/Images)")
    start = time.perf_counter()
    analyzer = FaceAnalyzer()
    maps_model = analyzer.feature_maps
    if maps_model is None:
        raise SystemExit("the default face pack exposes no 7x7 map: run with the shipped w600k_mbf")
    model, _ = load_pretrained(args.weights, embedding_dim=analyzer.embedding_dim,
                               embedder_fingerprint=analyzer.fingerprint)
    engine = PoseEngine(model.eval(), maps_model.head)
    people = sorted(p.name for p in images.iterdir() if p.is_dir())[: args.identities + 1]
    records = {}
    for person in people:
        for view, number in (("frontal", "01"), ("frontal", "02"), ("profile", "01")):
            try:
                records[person, view, number] = analyzer.analyze(images / person / view / f"{number}.jpg")
            except Exception as exc:   # a photo with no face found: its pairs are left out
                print(f"skipped {person}/{view}/{number}: {exc}")
    print(f"{len(records)} photos analysed in {time.perf_counter() - start:.0f} s")

    worst, kinds = 0.0, {"frontal-frontal": [], "frontal-profile": [], "different people": []}
    rho_probe, rho_gallery, pooled = [], [], ([], [])
    for i, person in enumerate(people[:-1]):
        gallery_record = records.get((person, "frontal", "01"))
        if gallery_record is None:
            continue
        gallery = Gallery(None, "check", analyzer.embedding_dim)
        gallery.add(person, gallery_record.embedding, maps=record_maps(gallery_record))
        template = gallery.templates[0]
        probes = {"frontal-frontal": records.get((person, "frontal", "02")),
                  "frontal-profile": records.get((person, "profile", "01")),
                  "different people": records.get((people[i + 1], "profile", "01"))}
        for kind, probe in probes.items():
            if probe is None:
                continue
            result = engine.transform(probe, np.zeros(3, np.float32), gallery)
            e = result.explanation
            for split, score in ((e.raw, result.raw), (e.transformed, result.transformed),
                                 (e.gallery_raw, result.raw), (e.gallery_transformed, result.transformed)):
                worst = max(worst, float(np.abs(split.total - score).max()))
            flip = (lambda g: g[:, ::-1]) if probe.source_pose[0] < 0 else (lambda g: g)   # nose to the left
            kinds[kind].append({"raw": flip(e.raw.regions[0]), "transformed": flip(e.transformed.regions[0]),
                                "raw constant": float(e.raw.constant[0]),
                                "transformed constant": float(e.transformed.constant[0]),
                                "raw score": float(result.raw[0]), "transformed score": float(result.transformed[0]),
                                **{f"part {k}": float(v[0].sum()) for k, v in e.transformed.parts.items()}})
            if kind == "frontal-profile":
                drops = occlusion_drops(maps_model, probe.aligned_crop, template)
                rho_probe.append(spearman(e.raw.regions[0].ravel(), drops.ravel()))
                pooled[0].extend(e.raw.regions[0].ravel())
                pooled[1].extend(drops.ravel())
                g_drops = occlusion_drops(maps_model, gallery_record.aligned_crop, l2_normalize(probe.embedding))
                rho_gallery.append(spearman(e.gallery_raw.regions[0].ravel(), g_drops.ravel()))

    print(f"\n1. exactness: largest |sum of terms - score| over {sum(map(len, kinds.values())) * 4} splits: {worst:.2e}")
    q = np.percentile(rho_probe, [25, 50, 75])
    qg = np.percentile(rho_gallery, [25, 50, 75])
    print(f"\n2. occlusion vs term, Spearman over the 49 regions, {len(rho_probe)} frontal-profile pairs (raw score):")
    print(f"   probe (profile) regions:  median {q[1]:+.3f} (quartiles {q[0]:+.3f} .. {q[2]:+.3f}), "
          f"mean {np.mean(rho_probe):+.3f}; pooled over pairs {spearman(np.array(pooled[0]), np.array(pooled[1])):+.3f}")
    print(f"   gallery (frontal) regions: median {qg[1]:+.3f} (quartiles {qg[0]:+.3f} .. {qg[2]:+.3f}), "
          f"mean {np.mean(rho_gallery):+.3f}")
    print("\n3. average split of the probe's regions (profiles flipped: nose to the crop's left; row 0 = top)")
    means = {}
    for kind, rows in kinds.items():
        if not rows:
            continue
        m = {k: np.mean([r[k] for r in rows], 0) for k in rows[0]}
        means[kind] = m
        print(f"\n-- {kind} ({len(rows)} pairs): raw {m['raw score']:.3f} = regions {m['raw'].sum():+.3f} + constant "
              f"{m['raw constant']:+.3f};  transformed {m['transformed score']:.3f} = regions "
              f"{m['transformed'].sum():+.3f} + constant {m['transformed constant']:+.3f}")
        print("   transformed, by part: " + ", ".join(f"{k[5:]} {v:+.3f}" for k, v in m.items() if k.startswith("part ")))
        print("   raw by zone:         " + zones(m["raw"]))
        print("   transformed by zone: " + zones(m["transformed"]))
    if "frontal-frontal" in means and "frontal-profile" in means:
        ff, fp = means["frontal-frontal"], means["frontal-profile"]
        cost = ff["raw"] - fp["raw"]
        won = fp["transformed"] - fp["raw"]
        print("\n" + table(cost, "what the pose costs, per region (frontal-frontal minus frontal-profile, raw)"))
        print(f"   constant: {ff['raw constant'] - fp['raw constant']:+.4f}; by zone: " + zones(cost))
        print("\n" + table(won, "what the transformer wins back, per region (frontal-profile, transformed minus raw)"))
        print(f"   constant: {fp['transformed constant'] - fp['raw constant']:+.4f}; by zone: " + zones(won))
        if "different people" in means:
            dp = means["different people"]
            print("\n" + table(dp["transformed"] - dp["raw"], "for different people (transformed minus raw)"))
            print(f"   constant: {dp['transformed constant'] - dp['raw constant']:+.4f}; by zone: "
                  + zones(dp["transformed"] - dp["raw"]))
    print(f"\n{time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
