"""Callback logic of the demo, free of UI code: face analysis, pose transform, galleries, model card.

Every callback returns a `Reply`: new values for named outputs (an absent name: leave it as it is;
a dict: update that component's properties) plus warnings / infos for the user. Bad input and
unexpected errors become a short message without server paths; nothing raises.

Galleries: by default each visitor has their own (``gallery`` state: an in-memory copy of the default
gallery, made on the first change; never shared, never saved on the server). With
``persistent_gallery=DIR`` (``app.py --persistent-gallery DIR``, for local use) there is one gallery,
saved in DIR and shared by every visitor of that server.

Cost model: a new photo is analysed once (face detection, landmarks, embedding, head pose) and
cached in the session; a slider move only reruns the pose transformer on the cached record (one
target pose, plus the 19-pose yaw sweep when the target pitch/roll changed) and redraws the plots
from plain plotly JSON. Model runs: `viewdiff.demo.engine`; figures: `viewdiff.demo.panels`.

    python -m viewdiff.demo.service --populate-assets-from-shared   # local Pointing'04 examples
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from viewdiff.demo import plots
from viewdiff.demo.calibration import same_person_threshold, weights_for
from viewdiff.demo.engine import PoseEngine, PoseResult
from viewdiff.demo.examples import GALLERY_ASSETS, LOCAL_ASSETS, populate_assets_from_shared
from viewdiff.demo.gallery import (Gallery, clean_name, default_gallery, default_identity_photos,
                                   open_gallery, photo_embedding, record_maps)
from viewdiff.demo.live import LiveAnalyzer, LiveRegistry
from viewdiff.demo.live_service import LIVE_COMPARE_DEFAULT, LIVE_DEFAULT_NAME, LiveCallbacks  # noqa: F401
from viewdiff.demo.messages import (TURNED_ENROL_DEG, display_path, face_info, markdown_text, photo_status,  # noqa: F401
                                     pose_gate_note, sentence, user_message)
from viewdiff.demo.model_card import model_card
from viewdiff.demo.session import PLOT_AREAS, Reply, Session, SessionRegistry, guarded, plots_shown  # noqa: F401
from viewdiff.demo.panels import Panels, ViewOptions, explanation_figure
from viewdiff.faces.analyzer import FaceAnalyzer
from viewdiff.faces.errors import FaceAnalysisError
from viewdiff.faces.records import FaceRecord
from viewdiff.models.checkpoint import WeightsError, load_pretrained
from viewdiff.paths import REPO_ROOT, shared_dir

log = logging.getLogger("viewdiff.demo")

DEFAULT_GALLERY_CACHE = REPO_ROOT / "data" / "cache" / "demo_gallery"
POSE_LIMITS = ((-90.0, 90.0), (-60.0, 60.0), (-45.0, 45.0))  # target yaw, pitch, roll (degrees)
DISPLAY_MAX_SIDE = 1024  # the annotated photo is shown at most this big
NO_PHOTO = "Drop in a photo with a face first (or pick an example)."
BEST_MATCH = "the best match"   # the explanation's default identity (`ViewOptions.explain` None)
NO_PHOTO_INFO = "No photo yet."   # the face panel before a photo and after the photo is removed
NEAR_DUPLICATE = 0.6   # cosine above which a new entry "also matches" another one, when no threshold is calibrated


def face_choices(num_faces: int) -> list[tuple[str, int]]:
    """The "Face to use" choices of a photo with ``num_faces`` faces, largest first."""
    return [(f"face {i + 1}" + (" (largest)" if i == 0 else ""), i) for i in range(num_faces)]


def target_pose(values) -> np.ndarray:
    """Slider values (yaw, pitch, roll; None when a number box is empty) -> clipped float32 [3]."""
    values = [0.0 if v is None else float(v) for v in values]
    if len(values) != 3 or not np.all(np.isfinite(values)):
        raise ValueError(f"a target pose is 3 finite angles, not {values}")
    return np.array([np.clip(v, lo, hi) for v, (lo, hi) in zip(values, POSE_LIMITS)], dtype=np.float32)


def display_image(image: np.ndarray, boxes: list, keypoints: list) -> np.ndarray:
    """The photo at most `DISPLAY_MAX_SIDE` big with every face's box (the one used first, green) and keypoints."""
    scale = min(1.0, DISPLAY_MAX_SIDE / max(image.shape[:2]))
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return plots.annotate_faces(image, [np.asarray(b)[:4] * scale for b in boxes],
                                [np.asarray(k) * scale for k in keypoints])



def read_evaluation(weights: Path) -> dict | None:
    """The weights' ``evaluation.json`` (what the held-out evaluation measured for their recipe, written by
    ``python -m viewdiff.training.report RESULTS --card METHOD --card_out``), or None when there is none or it is
    unreadable (the model card then points to the report)."""
    try:
        return json.loads((Path(weights) / "evaluation.json").read_text())
    except (OSError, ValueError):
        return None

class DemoService(LiveCallbacks):
    """Models loaded once (face backend, pose transformer, default gallery) and the demo's callbacks (the live
    camera's: `LiveCallbacks`)."""

    def __init__(self, analyzer: FaceAnalyzer, gallery: Gallery, model: torch.nn.Module | None,
                 weights_dir: Path, weights_info: dict | None = None, weights_error: str | None = None,
                 persistent: bool = False):
        maps = analyzer.feature_maps   # the embedder's affine head splits every score (PoseResult.explanation)
        self.analyzer, self.gallery, self.engine = analyzer, gallery, PoseEngine(model, maps and maps.head)
        self.weights_dir, self.weights_info, self.weights_error = weights_dir, weights_info or {}, weights_error
        self.persistent = persistent
        self.fingerprint = analyzer.fingerprint
        self.threshold = same_person_threshold(self.fingerprint)
        self.sessions = SessionRegistry()
        self.panels = Panels(model is not None, self.threshold)
        self.live = LiveAnalyzer(analyzer, self.engine, self.threshold)
        self.lives = LiveRegistry(self.live.session)   # each open page's live camera (`viewdiff.demo.live`)

    @property
    def model(self) -> torch.nn.Module | None:
        """The loaded pose transformer, None when its weights are missing or do not fit."""
        return self.engine.model

    @classmethod
    def load(cls, backend: str = "auto", weights_dir: str | os.PathLike | None = None,
             persistent_gallery: str | os.PathLike | None = None, defaults_dir: str | os.PathLike | None = None,
             default_photos: dict[str, list[Path]] | None = None, torch_threads: int | None = 1) -> "DemoService":
        """Load the face backend, the transformer weights of its embedder (missing: reported, not raised) and
        the default gallery.

        persistent_gallery: a folder for one saved gallery shared by every visitor (local use); default
        None: each visitor's changes stay in their own session. default_photos: the default gallery's
        photos (default: `default_identity_photos` of assets/identities and ../shared), whose embeddings
        are cached in ``defaults_dir``.

        torch_threads: intra-op threads for the pose transformer (a few MFLOPs per pose): one thread
        avoids the thread hand-offs that cost 10-100x its run time on a busy 2-core machine. None
        leaves torch's setting alone.
        """
        if torch_threads:
            torch.set_num_threads(torch_threads)
        analyzer = FaceAnalyzer(backend=backend)
        analyzer.warm_up()   # the first visitor's photo does not pay for the models' first runs
        describe = analyzer.describe()
        fingerprint = analyzer.fingerprint
        weights = Path(weights_dir) if weights_dir else weights_for(fingerprint)
        model, info, error = None, {}, None
        try:
            model, metadata = load_pretrained(weights, embedding_dim=analyzer.embedding_dim,
                                              embedder_fingerprint=fingerprint)
            info = {"class": type(model).__name__, "config": getattr(model, "config", {}), "metadata": metadata,
                    "evaluation": read_evaluation(weights)}
        except WeightsError as exc:
            error = str(exc)
            log.warning("pose transformer not loaded: %s", error)
        photos = default_identity_photos(GALLERY_ASSETS, shared_dir()) if default_photos is None else default_photos
        gallery = default_gallery(Path(defaults_dir or DEFAULT_GALLERY_CACHE), gallery_key(analyzer),
                                  analyzer.embedding_dim, photos, analyzer.analyze,
                                  fingerprint=json.dumps(describe, sort_keys=True, default=str))
        if persistent_gallery:
            gallery = open_gallery(persistent_gallery, gallery)
        service = cls(analyzer, gallery, model, weights, info, error, persistent=bool(persistent_gallery))
        if model is not None:
            service.engine.warm_up(analyzer.embedding_dim)
        service.engine.warm_explanations(gallery)
        return service

    # ----- what the UI is built from -----
    @property
    def attention_shape(self) -> tuple[int, int]:
        """(layers, heads) of the loaded pose transformer; (0, 0) without one."""
        config = self.weights_info.get("config", {})
        return (config.get("num_layers", 0), config.get("nhead", 0)) if self.model is not None else (0, 0)

    @property
    def model_kind(self) -> str:
        """"map" when the pose transformer reads the embedder's 7x7 map, else "vector" (the panels' captions)."""
        return "map" if self.engine.reads_map else "vector"

    @property
    def voxel_resolution(self) -> int:
        return int(self.weights_info.get("config", {}).get("voxel_resolution", 16))

    @property
    def evaluation(self) -> dict | None:
        """What the held-out evaluation measured for the loaded weights' recipe (`read_evaluation`); None without."""
        return self.weights_info.get("evaluation") if self.model is not None else None

    def model_card(self) -> str:
        """Markdown: what embedder, threshold and transformer weights are loaded, or what is missing and the fix."""
        if self.persistent:
            where = f"one gallery saved in `{display_path(self.gallery.directory)}`, shared by everyone using this server"
        else:
            where = ("each visitor's additions and removals stay in their own browser session (never saved on "
                     "the server, gone when the page is closed)")
        line = f"{len(self.gallery)} default identities; {where}"
        return model_card(self.analyzer.describe(), self.analyzer.fallback_reason, line, self.threshold,
                          self.fingerprint, self.weights_dir, self.weights_info if self.model else {},
                          self.weights_error, self.analyzer.backend)

    def gallery_for(self, state: Gallery | None) -> Gallery:
        """The gallery a visitor sees: the shared saved one, their own copy, or (before any change) the defaults."""
        return self.gallery if self.persistent or state is None else state

    def gallery_rows(self, state: Gallery | None = None) -> list[list]:
        """Newest first: an entry just added is the top row, not hidden at the bottom of the table."""
        return [[e["name"], e["source"], e["count"]] for e in reversed(self.gallery_for(state).entries)]

    def gallery_names(self, state: Gallery | None = None) -> list[str]:
        """The entry dropdown's names: in the table's order (newest first)."""
        return [row[0] for row in self.gallery_rows(state)]

    # ----- computations -----
    def analyze(self, image: Any, photo_name: str) -> tuple[Session, np.ndarray, list[str]]:
        """Analyse a photo (largest face); returns the session, the annotated photo and notes for the visitor
        (several faces; a face too small to trust), shown beside the photo (`photo_status`)."""
        rgb = self.analyzer.load_image(image)
        record = self.analyzer.analyze(rgb)
        notes = []
        if record.num_faces > 1:
            notes.append(f"{record.num_faces} faces found: using the largest one (green box; the others are grey). "
                         "Pick another under \"Face to use\".")
        # the analyzer's own warning: "N faces found; ..." (said above) and/or a face too small to trust
        notes += [sentence(part) for part in (record.warning or "").split("; ")
                  if part and "faces found" not in part and "largest is used" not in part]
        session = Session(photo_name, record, image=image)
        return session, self.annotated(session, rgb), notes

    def annotated(self, session: Session, rgb: np.ndarray | None = None) -> np.ndarray:
        """The session's photo (``rgb``: already decoded) with every face's box and keypoints, the face used
        first (green)."""
        record = session.record
        others = getattr(record, "other_boxes", None)
        boxes = [record.bbox, *([] if others is None else list(others))]
        others = getattr(record, "other_keypoints", None)
        keypoints = [record.keypoints, *([] if others is None else list(others))]
        rgb = self.analyzer.load_image(session.image) if rgb is None else rgb
        return display_image(rgb, boxes, keypoints)

    def transform(self, record: FaceRecord, target: np.ndarray, gallery: Gallery | None = None,
                  sweeps: dict[tuple[float, float], np.ndarray] | None = None) -> PoseResult:
        """The pose transformer at ``target`` with gallery similarities (see `PoseEngine.transform`)."""
        return self.engine.transform(record, target, self.gallery if gallery is None else gallery, sweeps)

    # ----- callbacks -----
    def _view_plots(self, session: Session | None, view: ViewOptions) -> dict[str, Any]:
        """The panels the view controls choose what they show of (attention, voxels, explanation)."""
        result = session.result if session is not None else None
        record = session.record if session is not None else None
        return {"attention": self.panels.attention(result, view, record, session.heads if session else None),
                "voxels": self.panels.voxels(result, view, record),
                "explanation": explanation_figure(result, record, view.explain)}

    def _plots(self, session: Session | None, view: ViewOptions) -> dict[str, Any]:
        result = session.result if session is not None else None
        return {**self._view_plots(session, view), "similarity": self.panels.similarity(result),
                "sweep": self.panels.sweep(result)}

    def _rerun(self, session: Session, target, view: ViewOptions, gallery: Gallery,
               client_moves_marker: bool = False) -> dict[str, Any]:
        """Rerun the model; with ``client_moves_marker`` (a slider move), an unchanged sweep is not resent."""
        start = time.perf_counter()
        session.result = self.transform(session.record, target_pose(target), gallery, session.sweeps)
        values = {"session": session, **self._plots(session, view)}
        result = session.result
        shown = sweep_key(result, gallery)
        if client_moves_marker and shown is not None and shown == session.sweep_shown:
            del values["sweep"]  # the same curve: only its target-yaw marker moves, in the page
        session.sweep_shown = shown
        if self.model is None:
            values["status"] = "No pose-transformer weights for this embedder: raw similarity only (see the model card)."
        else:
            curve = " (the curve of every turn too)" if result.model_poses > 1 else ""
            values["status"] = f"Updated in {(time.perf_counter() - start) * 1000:.0f} ms{curve}."
            values["status"] += pose_gate_note(session.record, result.target)
        return values

    @guarded
    def on_photo(self, image: Any, target, view: ViewOptions, session: Session | None,
                 gallery: Gallery | None = None) -> Reply:
        """A new photo: analyse it once, then transform to the target pose.

        No photo (the photo box's x, after a photo with a face) and a photo that cannot be used clear every
        panel back to the no-photo state (the results would belong to the previous photo; a removed face cannot be
        enrolled). What happened is said beside the photo (`photo_status`), not in a toast that could
        outlive the next photo.
        """
        cleared = {"session": None, **self._plots(None, view), **plots_shown(False), "face_image": None,
                   "status": "", "face_choice": {"choices": [], "value": None, "visible": False}}
        if image is None:
            if session is None:   # no results on the page: keep the message of an unusable photo, which the page
                return Reply()    # removes from the photo box itself when the browser cannot show it
            return Reply({**cleared, "face_info": NO_PHOTO_INFO, "photo_status": ""})
        name = Path(image).name if isinstance(image, (str, os.PathLike)) else "photo"
        try:
            new, annotated, notes = self.analyze(image, name)
        except FaceAnalysisError as exc:
            message = markdown_text(user_message(exc, image if isinstance(image, (str, os.PathLike)) else None))
            return Reply({**cleared, "face_info": f"**Cannot use this photo.** {message}",
                          "photo_status": f"**Cannot use this photo.** {message}"})
        values = {**self._rerun(new, target, view, self.gallery_for(gallery)), **plots_shown(True)}
        values.update(face_image=annotated, face_info=face_info(new), photo_status=photo_status(new, notes),
                      face_choice={"choices": face_choices(new.record.num_faces), "value": 0,
                                   "visible": new.record.num_faces > 1})
        return Reply(values)

    @guarded
    def on_face(self, index, target, view: ViewOptions, session: Session | None,
                gallery: Gallery | None = None) -> Reply:
        """The visitor picked another face of a group photo ("Face to use", largest first)."""
        if session is None:
            return Reply({"status": NO_PHOTO})
        index = int(index or 0)
        if session.faces is None:   # every face described once, when a face other than the largest is asked for
            session.faces = self.analyzer.analyze_all(session.image)
        index = int(np.clip(index, 0, len(session.faces) - 1))
        record = session.faces[index]
        if index == session.face:
            return Reply()
        new = Session(session.photo_name, record, image=session.image, face=index, faces=session.faces)
        values = {**self._rerun(new, target, view, self.gallery_for(gallery)), **plots_shown(True)}
        values.update(face_image=self.annotated(new), face_info=face_info(new),
                      photo_status=photo_status(new, []))
        return Reply(values)

    @guarded
    def on_target(self, target, view: ViewOptions, session: Session | None, gallery: Gallery | None = None,
                  client_moves_marker: bool = False) -> Reply:
        """A slider moved: rerun only the pose transformer on the cached analysis.

        client_moves_marker: the page moved the sweep's target-yaw marker itself (a slider move), so an
        unchanged sweep is left out of the reply.
        """
        if session is None:
            return Reply({"status": NO_PHOTO})
        return Reply(self._rerun(session, target, view, self.gallery_for(gallery), client_moves_marker))

    @guarded
    def on_view(self, view: ViewOptions, session: Session | None) -> Reply:
        """Layer/head, voxel or explanation controls changed: redraw from the last result, no model run."""
        return Reply(self._view_plots(session, view))

    @guarded
    def on_load(self, gallery: Gallery | None = None) -> Reply:
        """A page (re)load: the visitor's gallery as it is now."""
        return Reply(self._gallery_values(self.gallery_for(gallery), None))

    def _own(self, gallery: Gallery | None) -> Gallery:
        """The gallery a change goes to: the shared saved one, or the visitor's own copy (made on the first change)."""
        if self.persistent:
            return self.gallery
        return gallery if gallery is not None else self.gallery.copy_to(None)

    def _changed(self, gallery: Gallery, selected: str | None, target, view: ViewOptions,
                 session: Session | None) -> dict[str, Any]:
        if self.persistent:
            gallery.save()
        values = self._gallery_values(gallery, selected)
        if session is not None:
            values |= self._rerun(session, target, view, gallery)
        return values

    @guarded
    def on_add(self, name: str, target, view: ViewOptions, session: Session | None,
               gallery: Gallery | None = None) -> Reply:
        """Add the current face to the visitor's gallery as ``name`` (any case and spacing of an existing name
        refines that entry); warns when the face is turned or already looks like another entry."""
        if session is None:
            return Reply(warnings=["Drop in a face photo first, then add it to the gallery."])
        gallery = self._own(gallery)
        embedding = photo_embedding(session.record)   # flip-fused, like every gallery photo (`gallery.TEMPLATES`)
        others = [(n, float(score)) for n, score in zip(gallery.names, gallery.similarities(embedding))
                  if gallery.find(n) != gallery.find(name)] if len(gallery) else []
        entry = gallery.add(name, embedding, maps=record_maps(session.record), fused=True,
                            crop=session.record.aligned_crop)
        info = f"Added this face to '{entry['name']}' ({entry['count']} photo{'s' * (entry['count'] > 1)})."
        warnings = []
        yaw = float(session.record.source_pose[0])
        if abs(yaw) > TURNED_ENROL_DEG:
            warnings.append(f"This face is turned (yaw {yaw:+.0f}°). It was added, but a frontal photo (looking "
                            "into the camera) makes a better gallery entry.")
        same = self.threshold.value if self.threshold is not None else NEAR_DUPLICATE
        if others and (best := max(others, key=lambda o: o[1]))[1] >= same:
            warnings.append(f"This face also matches '{best[0]}' (similarity {best[1]:.2f}): the same person under "
                            f"two names? To refine one entry, add the photo under its name.")
        # nothing pre-selected beside the Remove button: a new entry is never one click from removal
        return Reply(self._changed(gallery, None, target, view, session), warnings=warnings, infos=[info])

    @guarded
    def on_remove(self, name: str | None, target, view: ViewOptions, session: Session | None,
                  gallery: Gallery | None = None) -> Reply:
        """Remove identity ``name`` from the visitor's gallery (undo brings it back)."""
        if not name:
            return Reply(warnings=["Choose a gallery entry to remove."])
        gallery = self._own(gallery)
        name = gallery.stored_name(name) or clean_name(name)
        gallery.remove(name)
        return Reply(self._changed(gallery, None, target, view, session),
                     infos=[f"Removed '{name}' from the gallery. \"Undo remove\" brings it back."])

    @guarded
    def on_undo(self, target, view: ViewOptions, session: Session | None, gallery: Gallery | None = None) -> Reply:
        """Bring back the last removed identity."""
        gallery = self.gallery_for(gallery)
        entry = gallery.undo_remove()
        return Reply(self._changed(gallery, entry["name"], target, view, session),
                     infos=[f"'{entry['name']}' is back in the gallery."])

    def _gallery_values(self, gallery: Gallery, selected: str | None) -> dict[str, Any]:
        undo = gallery.last_removed
        return {"gallery": None if self.persistent or gallery is self.gallery else gallery,
                "gallery_table": self.gallery_rows(gallery),
                "gallery_choice": {"choices": self.gallery_names(gallery), "value": selected},
                "explain_choice": {"choices": [(BEST_MATCH, "")] + [(n, n) for n in self.gallery_names(gallery)],
                                   "value": ""},   # a changed gallery: back to its best match
                "live_compare": {"choices": self.live_choices(gallery), "value": ""},
                "undo": {"interactive": undo is not None,
                         "value": f"Undo remove '{undo}'" if undo else "Undo remove"}}


def sweep_key(result: PoseResult, gallery: Gallery) -> tuple | None:
    """What the pose-sweep curve depends on: target pitch/roll, the best identity and its template (None: no sweep)."""
    if result.sweep is None:
        return None
    best = result.best
    return (float(result.target[1]), float(result.target[2]), result.names[best],
            gallery.templates[best].tobytes(), result.sweep.tobytes())


def gallery_key(analyzer: FaceAnalyzer) -> str:
    """Gallery file key: embeddings from different embedders never mix."""
    fingerprint = analyzer.fingerprint
    pack = analyzer.describe().get("pack")
    return analyzer.backend + (f"-{Path(str(pack)).name}" if pack else "") + (f"-{fingerprint}" if fingerprint else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--populate-assets-from-shared", action="store_true",
                        help=f"copy Pointing'04 photos at yaw 0/30/60/90 from {shared_dir()} into {LOCAL_ASSETS}")
    args = parser.parse_args(argv)
    if not args.populate_assets_from_shared:
        parser.error("nothing to do (see --help)")
    for path in populate_assets_from_shared():
        print(path)


if __name__ == "__main__":
    main()
