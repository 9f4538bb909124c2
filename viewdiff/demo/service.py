"""Callback logic of the demo, free of UI code: face analysis, pose transform, gallery, model card.

Every callback returns a `Reply`: new values for named outputs (an absent name: leave it as it is;
a dict: update that component's properties) plus warnings / infos for the user. Bad input and
unexpected errors become a short warning; nothing raises.

Cost model: a new photo is analysed once (face detection, landmarks, embedding, head pose: 0.3-2 s
on a CPU) and cached in the session; a slider move only reruns the pose transformer on the cached
record (one target pose, plus the 19-pose yaw sweep when the target pitch/roll changed) and redraws
the plots from plain plotly JSON (`viewdiff.demo.plots.PlotSpec`). The model runs live in
`viewdiff.demo.engine`, the example photos in `viewdiff.demo.examples`.

    python -m viewdiff.demo.service --populate-assets-from-shared   # local Pointing'04 examples
    python -m viewdiff.demo.service --bench [--weights DIR]         # slider-callback latency
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from viewdiff.demo import plots
from viewdiff.demo.engine import SWEEP_YAWS, PoseEngine, PoseResult
from viewdiff.demo.examples import ASSETS, LOCAL_ASSETS, example_photos, populate_assets_from_shared
from viewdiff.demo.gallery import Gallery, GalleryError, default_identity_photos, open_gallery
from viewdiff.faces.analyzer import FaceAnalyzer
from viewdiff.faces.errors import FaceAnalysisError
from viewdiff.faces.records import FaceRecord
from viewdiff.models.checkpoint import WeightsError, load_pretrained
from viewdiff.paths import REPO_ROOT, shared_dir

log = logging.getLogger("viewdiff.demo")

DEFAULT_GALLERY_CACHE = REPO_ROOT / "data" / "cache" / "demo_gallery"
VOXEL_QUANTITIES = ("channel norm", "density")
POSE_LIMITS = ((-90.0, 90.0), (-60.0, 60.0), (-45.0, 45.0))  # target yaw, pitch, roll (degrees)
DISPLAY_MAX_SIDE = 1024  # the annotated photo is shown at most this big


@dataclass
class ViewOptions:
    """What the attention / voxel panels show (the values of their controls)."""

    layer: int | None = 0
    head: int | None = 0
    quantity: str = VOXEL_QUANTITIES[0]
    axis: str = "z"
    index: int | None = 0
    as_3d: bool = False

    def __post_init__(self):  # values straight from the UI: None when a control is empty
        self.layer, self.head, self.index = (int(v or 0) for v in (self.layer, self.head, self.index))
        self.quantity = self.quantity if self.quantity in VOXEL_QUANTITIES else VOXEL_QUANTITIES[0]
        self.axis = self.axis if self.axis in plots.VOXEL_AXES else "z"
        self.as_3d = bool(self.as_3d)


@dataclass
class Session:
    """Per-browser-session state: the analysed photo, the last pose result and the sweep cache.

    ``sweeps``: (target pitch, target roll) -> transformed embeddings ``[len(SWEEP_YAWS), D]`` of the
    yaw sweep; it does not depend on the target yaw, so a yaw move runs the model on one pose only.
    """

    photo_name: str
    record: FaceRecord
    annotated: np.ndarray
    result: PoseResult | None = None
    sweeps: dict[tuple[float, float], np.ndarray] = field(default_factory=dict)


@dataclass
class Reply:
    values: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    infos: list[str] = field(default_factory=list)


def _sentence(text: str) -> str:
    text = str(text).strip()
    return text[:1].upper() + text[1:] if text else text


def _guarded(callback):
    """Turn bad input into a warning and anything unexpected into a logged, short message."""

    @functools.wraps(callback)
    def wrapper(*args, **kwargs) -> Reply:
        try:
            return callback(*args, **kwargs)
        except (FaceAnalysisError, GalleryError) as exc:
            return Reply(warnings=[_sentence(exc)])
        except Exception as exc:
            log.exception("unexpected error in %s", callback.__name__)
            return Reply(warnings=[f"Something went wrong ({type(exc).__name__}); it was logged. "
                                   "Your previous results are kept."])

    return wrapper


def target_pose(values) -> np.ndarray:
    """Slider values (yaw, pitch, roll; None when a number box is empty) -> clipped float32 [3]."""
    values = [0.0 if v is None else float(v) for v in values]
    if len(values) != 3 or not np.all(np.isfinite(values)):
        raise ValueError(f"a target pose is 3 finite angles, not {values}")
    return np.array([np.clip(v, lo, hi) for v, (lo, hi) in zip(values, POSE_LIMITS)], dtype=np.float32)


def display_image(image: np.ndarray, record: FaceRecord) -> np.ndarray:
    """The photo at most `DISPLAY_MAX_SIDE` big with the used face's box and keypoints drawn."""
    scale = min(1.0, DISPLAY_MAX_SIDE / max(image.shape[:2]))
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return plots.annotate_faces(image, [np.asarray(record.bbox) * scale], [np.asarray(record.keypoints) * scale])


class DemoService:
    """Models loaded once (face backend, pose transformer, gallery) and the demo's callbacks."""

    def __init__(self, analyzer: FaceAnalyzer, gallery: Gallery, model: torch.nn.Module | None,
                 weights_dir: Path, weights_info: dict | None = None, weights_error: str | None = None):
        self.analyzer, self.gallery, self.engine = analyzer, gallery, PoseEngine(model)
        self.weights_dir, self.weights_info, self.weights_error = weights_dir, weights_info or {}, weights_error

    @property
    def model(self) -> torch.nn.Module | None:
        """The loaded pose transformer, None when its weights are missing or do not fit."""
        return self.engine.model

    @classmethod
    def load(cls, backend: str = "auto", weights_dir: str | os.PathLike | None = None,
             gallery_dir: str | os.PathLike | None = None, defaults_dir: str | os.PathLike | None = None,
             default_photos: dict[str, list[Path]] | None = None, torch_threads: int | None = 1) -> "DemoService":
        """Load the face backend, the enhanced weights (a missing model is reported, not raised) and the gallery.

        gallery_dir: the user's gallery (default ``$VIEWDIFF_GALLERY_DIR`` or ``gallery/``), created on
        first use as a copy of the default gallery of ``default_photos`` (default:
        `default_identity_photos` of assets/ and ../shared), whose embeddings are cached in ``defaults_dir``.

        torch_threads: intra-op threads for the pose transformer (a few MFLOPs per pose): one thread
        avoids the thread hand-offs that cost 10-100x its run time on a busy 2-core machine (measured:
        one pose 5 ms with 1 thread, ~500 ms with 2 under load). None leaves torch's setting alone.
        """
        if torch_threads:
            torch.set_num_threads(torch_threads)
        analyzer = FaceAnalyzer(backend=backend)
        weights = Path(weights_dir) if weights_dir else REPO_ROOT / "weights" / analyzer.backend / "enhanced"
        model, info, error = None, {}, None
        try:
            model, metadata = load_pretrained(weights, embedding_dim=analyzer.embedding_dim)
            info = {"class": type(model).__name__, "config": getattr(model, "config", {}), "metadata": metadata}
        except WeightsError as exc:
            error = str(exc)
            log.warning("pose transformer not loaded: %s", error)
        gallery_dir = Path(gallery_dir or os.environ.get("VIEWDIFF_GALLERY_DIR") or REPO_ROOT / "gallery")
        photos = default_identity_photos(ASSETS, shared_dir()) if default_photos is None else default_photos
        gallery = open_gallery(gallery_dir, Path(defaults_dir or DEFAULT_GALLERY_CACHE), gallery_key(analyzer),
                               analyzer.embedding_dim, photos, lambda path: analyzer.analyze(path).embedding,
                               fingerprint=json.dumps(analyzer.describe(), sort_keys=True, default=str))
        service = cls(analyzer, gallery, model, weights, info, error)
        if model is not None:
            service.engine.warm_up(analyzer.embedding_dim)
        return service

    # ----- what the UI is built from -----
    @property
    def attention_shape(self) -> tuple[int, int]:
        """(layers, heads) of the loaded pose transformer; (0, 0) without one."""
        config = self.weights_info.get("config", {})
        return (config.get("num_layers", 0), config.get("nhead", 0)) if self.model is not None else (0, 0)

    @property
    def voxel_resolution(self) -> int:
        return int(self.weights_info.get("config", {}).get("voxel_resolution", 16))

    def model_card(self) -> str:
        """Markdown: what face backend and which enhanced weights are loaded, or what is missing and the fix."""
        describe = self.analyzer.describe()
        lines = ["**Face backend**"] + [f"- {k}: `{v}`" for k, v in describe.items()]
        if self.analyzer.fallback_reason:
            lines.append(f"- why not insightface: {self.analyzer.fallback_reason} (install a pack, e.g. "
                         "`~/.insightface/models/buffalo_l/`, for 512-d ArcFace embeddings)")
        lines.append(f"- gallery: {len(self.gallery)} identities in `{self.gallery.json_path}`")
        if self.model is None:
            lines += [f"\n**Pose transformer: not loaded** (looked in `{self.weights_dir}`)", "",
                      f"> {self.weights_error}", "",
                      "Face analysis and raw gallery similarity still work; the attention, voxel and "
                      "transformed-similarity plots need the weights. **Fix:** train and export weights for "
                      f"this backend, e.g. `python -m viewdiff.training.train --backend {self.analyzer.backend} "
                      f"--export_dir weights/{self.analyzer.backend}/enhanced`, then restart the demo "
                      "(or pass `--weights DIR`)."]
        else:
            config = self.weights_info["config"]
            lines += [f"\n**Pose transformer**: `{self.weights_info['class']}` from `{self.weights_dir}`",
                      "- " + ", ".join(f"{k}={v}" for k, v in config.items())]
            if self.weights_info["metadata"]:
                lines += ["\n**Training metadata**"]
                lines += [f"- {k}: `{v}`" for k, v in self.weights_info["metadata"].items()]
        return "\n".join(lines)

    def gallery_rows(self) -> list[list]:
        return [[e["name"], e["source"], e["count"]] for e in self.gallery.entries]

    # ----- computations -----
    def analyze(self, image: Any, photo_name: str) -> tuple[Session, list[str]]:
        """Analyse a photo (largest face); returns the session and notes for the user (e.g. several faces)."""
        image = self.analyzer.load_image(image)
        record = self.analyzer.analyze(image)
        notes = [_sentence(record.warning)] if record.warning else []
        if record.num_faces > 1 and not record.warning:
            notes.append(f"{record.num_faces} faces found: using the largest one (green box).")
        return Session(photo_name, record, display_image(image, record)), notes

    def transform(self, record: FaceRecord, target: np.ndarray,
                  sweeps: dict[tuple[float, float], np.ndarray] | None = None) -> PoseResult:
        """The pose transformer at ``target`` with gallery similarities (see `PoseEngine.transform`)."""
        return self.engine.transform(record, target, self.gallery, sweeps)

    # ----- figures -----
    def attention_plot(self, result: PoseResult | None, view: ViewOptions):
        if result is None or result.attention is None:
            return plots.message_figure("Attention map", self._missing("attention weights", result))
        layer = int(np.clip(view.layer, 0, result.attention.shape[0] - 1))
        head = int(np.clip(view.head, 0, result.attention.shape[1] - 1))
        return plots.attention_figure(result.attention[layer, head], result.token_labels,
                                           f"Attention: layer {layer + 1}, head {head + 1} "
                                           f"(rows attend to columns; each row sums to 1)")

    def voxel_plot(self, result: PoseResult | None, view: ViewOptions):
        volume = result.volumes.get(view.quantity) if result is not None else None
        if volume is None:
            return plots.message_figure("Voxel grid", self._missing(f"voxel {view.quantity}", result))
        if view.as_3d:
            return plots.voxel_volume_figure(volume, view.quantity)
        return plots.voxel_slice_figure(volume, view.axis, view.index, view.quantity)

    def similarity_plot(self, result: PoseResult | None):
        if result is None or not result.names:
            return plots.message_figure("Gallery similarity", "The gallery is empty: add a face below."
                                             if result is not None else "Drop in a face photo.")
        return plots.similarity_figure(result.names, result.raw, result.transformed)

    def sweep_plot(self, result: PoseResult | None):
        if result is None or result.sweep is None:
            empty = result is not None and self.model is not None and not result.names
            return plots.message_figure("Pose sweep", "No sweep: the gallery is empty." if empty
                                             else self._missing("the pose sweep", result))
        best = result.best
        return plots.pose_sweep_figure(SWEEP_YAWS, result.sweep, float(result.raw[best]),
                                            result.names[best], float(result.target[0]))

    def _missing(self, what: str, result: PoseResult | None) -> str:
        if result is None:
            return "Drop in a face photo."
        if self.model is None:
            return f"No {what}: the pose transformer is not loaded.<br>See the model card for the fix."
        return f"The loaded model ({self.weights_info['class']}) does not produce {what}."

    # ----- callbacks -----
    def _outputs(self, session: Session | None, view: ViewOptions) -> dict[str, Any]:
        result = session.result if session is not None else None
        return {"session": session, "attention": self.attention_plot(result, view),
                "voxels": self.voxel_plot(result, view), "similarity": self.similarity_plot(result),
                "sweep": self.sweep_plot(result)}

    def _rerun(self, session: Session, target, view: ViewOptions) -> dict[str, Any]:
        start = time.perf_counter()
        session.result = self.transform(session.record, target_pose(target), session.sweeps)
        values = self._outputs(session, view)
        result = session.result
        if self.model is None:
            values["status"] = "Pose transformer not loaded: raw similarity only (see the model card)."
        else:
            values["status"] = (f"Server time {(time.perf_counter() - start) * 1000:.0f} ms: pose transformer "
                                f"{result.model_ms:.0f} ms for {result.model_poses} target "
                                f"pose{'s' * (result.model_poses > 1)}, plots included.")
        return values

    @_guarded
    def on_photo(self, image: Any, target, view: ViewOptions, session: Session | None) -> Reply:
        """A new photo: analyse it once, then transform to the target pose.

        A photo that cannot be used clears the results (they would belong to the previous photo) and
        says why, both as a warning and in the face panel.
        """
        if image is None:
            return Reply()
        name = Path(image).name if isinstance(image, (str, os.PathLike)) else "photo"
        try:
            new, notes = self.analyze(image, name)
        except FaceAnalysisError as exc:
            message = _sentence(exc)
            values = self._outputs(None, view) | {"face_image": None, "face_info": f"**Cannot use this photo.** "
                                                  f"{message}", "status": ""}
            return Reply(values, warnings=[message])
        values = self._rerun(new, target, view)
        values.update(face_image=new.annotated, face_info=face_info(new))
        return Reply(values, warnings=notes)

    @_guarded
    def on_target(self, target, view: ViewOptions, session: Session | None) -> Reply:
        """A slider moved: rerun only the pose transformer on the cached analysis."""
        if session is None:
            return Reply()
        return Reply(self._rerun(session, target, view))

    @_guarded
    def on_view(self, view: ViewOptions, session: Session | None) -> Reply:
        """Layer/head or voxel controls changed: redraw from the last result, no model run."""
        result = session.result if session is not None else None
        return Reply({"attention": self.attention_plot(result, view), "voxels": self.voxel_plot(result, view)})

    @_guarded
    def on_add(self, name: str, target, view: ViewOptions, session: Session | None) -> Reply:
        """Add the current face to the gallery as ``name`` (persisted)."""
        if session is None:
            return Reply(warnings=["Drop in a face photo first, then add it to the gallery."])
        entry = self.gallery.add(name, session.record.embedding)
        self.gallery.save()
        values = self._rerun(session, target, view) | self._gallery_values(entry["name"])
        info = f"Added this face to '{entry['name']}' ({entry['count']} photo{'s' * (entry['count'] > 1)})."
        return Reply(values, infos=[info])

    @_guarded
    def on_remove(self, name: str | None, target, view: ViewOptions, session: Session | None) -> Reply:
        """Remove identity ``name`` from the gallery (persisted)."""
        if not name:
            return Reply(warnings=["Choose a gallery entry to remove."])
        self.gallery.remove(name)
        self.gallery.save()
        values = self._gallery_values(None)
        if session is not None:
            values |= self._rerun(session, target, view)
        return Reply(values, infos=[f"Removed '{name}' from the gallery."])

    def _gallery_values(self, selected: str | None) -> dict[str, Any]:
        return {"gallery_table": self.gallery_rows(),
                "gallery_choice": {"choices": self.gallery.names, "value": selected}}


def gallery_key(analyzer: FaceAnalyzer) -> str:
    """Gallery file key: embeddings from different backends (or packs) never mix."""
    pack = analyzer.describe().get("pack")
    return analyzer.backend + (f"-{Path(str(pack)).name}" if pack else "")


def face_info(session: Session) -> str:
    """Markdown line about the detected face: estimated source pose and how it was estimated."""
    r = session.record
    yaw, pitch, roll = (float(v) for v in r.source_pose)
    width, height = r.bbox[2] - r.bbox[0], r.bbox[3] - r.bbox[1]
    return (f"**{session.photo_name}**: estimated source pose yaw **{yaw:+.1f}°**, pitch **{pitch:+.1f}°**, "
            f"roll **{roll:+.1f}°** (method: `{r.pose_source}`)  \n"
            f"face {width:.0f}×{height:.0f} px, detector score {float(r.det_score):.2f}, "
            f"{r.num_faces} face{'s' * (r.num_faces != 1)} in the photo")


def bench(weights: str | None, repeats: int = 30) -> dict[str, float]:
    """Median milliseconds of the slider callback (model + plots) on the committed example photos."""
    service = DemoService.load(weights_dir=weights, gallery_dir=DEFAULT_GALLERY_CACHE.parent / "bench_gallery")
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {"yaw move": [], "pitch move": []}
    for photo in example_photos():
        reply = service.on_photo(photo, (0, 0, 0), ViewOptions(), None)
        session = reply.values.get("session")
        if session is None:
            continue
        for i in range(repeats):
            kind = "pitch move" if i % 3 == 0 else "yaw move"
            pose = (float(rng.integers(-90, 91)), float(rng.integers(-30, 31)) if kind == "pitch move" else 0.0, 0.0)
            if kind == "pitch move":  # a new pitch/roll: the sweep is recomputed
                session.sweeps.clear()
            start = time.perf_counter()
            service.on_target(pose, ViewOptions(), session)
            times[kind].append((time.perf_counter() - start) * 1000)
    return {f"{kind} median ms": float(np.median(v)) for kind, v in times.items() if v} | \
           {f"{kind} p90 ms": float(np.percentile(v, 90)) for kind, v in times.items() if v}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--populate-assets-from-shared", action="store_true",
                        help=f"copy Pointing'04 photos at yaw 0/30/60/90 from {shared_dir()} into {LOCAL_ASSETS}")
    parser.add_argument("--bench", action="store_true", help="time the slider callback on the example photos")
    parser.add_argument("--weights", default=None, help="enhanced weights folder for --bench")
    args = parser.parse_args(argv)
    if not (args.populate_assets_from_shared or args.bench):
        parser.error("nothing to do (see --help)")
    if args.populate_assets_from_shared:
        for path in populate_assets_from_shared():
            print(path)
    if args.bench:
        for key, value in bench(args.weights).items():
            print(f"{key}: {value:.1f}")


if __name__ == "__main__":
    main()
