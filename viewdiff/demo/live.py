"""Live camera mode: the visitor's webcam is their own pose sweep.

Each frame the page streams (`app.py`: ``gr.Image(streaming=True).stream``) is analysed on a cheaper path than a
photo, and shows the face box, the head pose and the similarity to the enrolled face (or a gallery identity the
visitor picks): raw, flip-fused and turned to frontal by the pose transformer, on the similarity plot's scale with
the same-person threshold, plus a running trace of similarity against yaw.

The live path (`LiveAnalyzer`), measured against the photo path by ``benchmarks/bench_live.py``:

- **Tracking between detections**: the face is searched for in a square around the last frame's face
  (`TRACK_MARGIN` face sizes), scaled to `TRACK_SIDE` px for SCRFD (~6 ms instead of ~70 ms for the
  whole frame at 640); the whole frame is searched (at `LIVE_DET_SIZE`) when there is no last face, when the
  tracked search finds none, and every `REDETECT_EVERY` frames (a second person stepping closer).
- Frames wider than `LIVE_MAX_SIDE` are scaled down first (a 1280 x 720 webcam costs the same as 640 x 360).
- Everything after detection is the photo path's (`FaceAnalyzer.describe_face`: alignment, embedding and its
  mirror, 7x7 maps, head pose) and the transformer is run at one pose only (frontal: `PoseEngine.embed`).

Frames are never queued: gradio keeps only the newest frame that arrived while one was processed (a stream
event's next input replaces the waiting one), and a frame that finds its session busy is dropped here
(`LiveSession.lock`). `LiveSession.received` / ``processed`` count them; ``dropped`` is the difference.

The live panel's HTML: `viewdiff.demo.live_panel`; the page's callbacks: `viewdiff.demo.live_service`.

Privacy: a `LiveSession` holds the current frame only (what "Enrol me" enrols), in memory, replaced by the next
frame and dropped when the page closes (`LiveRegistry.release`) or `FRAME_TTL_S` after the last frame (the stream
stopped: `LiveRegistry.forget_stale`); the thumbnail the page shows
is that frame as a data URL inside the live panel's HTML, replaced with the next one. Gallery entries made by
"Enrol me" are ordinary entries of the visitor's gallery (session state).
"""
from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from viewdiff.demo.gallery import Gallery, photo_embedding
from viewdiff.faces.records import FaceRecord

LIVE_MAX_SIDE = 640   # frames are scaled down to this (largest side) first
LIVE_DET_SIZE = 320   # SCRFD input side when the whole frame is searched
TRACK_SIDE = 160      # SCRFD input side of the region around the last face (the region is scaled to this)
TRACK_MARGIN = 2.2    # that region's side, in face sizes (the box's larger side)
REDETECT_EVERY = 30   # frames between whole-frame searches while a face is tracked
TRACE_POINTS = 240    # trace points kept (the newest)
FRONTAL = np.zeros(3, np.float32)   # the live probe is turned to frontal: the pose a gallery photo is taken at
STREAM_EVERY_S = 0.1  # the page offers a frame every 0.1 s (app.py)
LIVE_TIME_LIMIT_S = 300   # a stream stops after 5 minutes (press Record again): a stream holds a worker
FRAME_TTL_S = 30.0        # a current frame no newer frame replaced for this long is dropped (the stream stopped)
NO_FRAME = "Press **Record** under the camera first: \"Enrol me\" takes the frame the camera shows."


@dataclass
class LiveReading:
    """What one processed frame gives (all None when no face was found)."""

    frame_ms: float
    record: FaceRecord | None = None
    how: str = "none"                 # "tracked" | "detected" | "none"
    name: str | None = None           # the identity compared with
    raw: float | None = None          # cosine of the frame's embedding to that identity's template
    fused: float | None = None        # ... of its flip-fused embedding (frame + mirror)
    turned: float | None = None       # ... of the transformer's embedding turned to frontal (None: no model)
    stages: dict[str, float] = field(default_factory=dict)   # ms per stage

    @property
    def score(self) -> float | None:
        """The score the verdict uses: the turned one when there is a model, else the flip-fused one."""
        return self.turned if self.turned is not None else self.fused


class FaceTracker:
    """Where the face is in the next frame: around the last face (cheap), else the whole frame."""

    def __init__(self, analyzer, det_size: int = LIVE_DET_SIZE, track_side: int = TRACK_SIDE,
                 margin: float = TRACK_MARGIN, redetect_every: int = REDETECT_EVERY):
        self.analyzer, self.det_size, self.track_side = analyzer, det_size, track_side
        self.margin, self.redetect_every = margin, redetect_every
        self.last: np.ndarray | None = None   # the last face's box [5]
        self.since_detect = 0

    def reset(self) -> None:
        self.last, self.since_detect = None, 0

    def find(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, str, int] | None:
        """(box [5], keypoints [5, 2], "tracked" | "detected", faces seen) of the face to follow, in rgb's pixels;
        None when there is no face."""
        if self.last is not None and self.since_detect < self.redetect_every:
            found = self._around(rgb, self.last)
            if found is not None:
                self.since_detect += 1
                self.last = found[0]
                return (*found, "tracked", 1)
        boxes, kps = self.analyzer.detect(rgb, self.det_size)
        self.since_detect = 0
        if len(boxes) == 0:
            self.last = None
            return None
        i = self._pick(boxes)
        self.last = boxes[i]
        return boxes[i], None if kps is None else kps[i], "detected", len(boxes)

    def _pick(self, boxes: np.ndarray) -> int:
        """The largest face; while one is followed, the one that overlaps it most (the same person)."""
        if self.last is not None:
            overlaps = iou(boxes, self.last)
            if overlaps.max() > 0.3:
                return int(np.argmax(overlaps))
        return int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))

    def _around(self, rgb: np.ndarray, box: np.ndarray):
        """Detect in the square of `margin` face sizes around ``box``, scaled to `track_side`."""
        h, w = rgb.shape[:2]
        side = self.margin * float(max(box[2] - box[0], box[3] - box[1], 1.0))
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        x1, y1 = x0 + int(round(side)), y0 + int(round(side))
        region = rgb[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
        if region.size == 0:
            return None
        region = cv2.copyMakeBorder(region, max(0, -y0), max(0, y1 - h), max(0, -x0), max(0, x1 - w),
                                    cv2.BORDER_CONSTANT)
        scale = self.track_side / region.shape[1]
        small = cv2.resize(region, (self.track_side, self.track_side), interpolation=cv2.INTER_AREA)
        boxes, kps = self.analyzer.detect(small, self.track_side)
        if len(boxes) == 0:
            return None
        i = int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
        found = boxes[i].copy()
        found[:4] = found[:4] / scale + np.array([x0, y0, x0, y0], np.float32)
        points = None if kps is None else (kps[i] / scale + np.array([x0, y0], np.float32)).astype(np.float32)
        return found.astype(np.float32), points


def iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Intersection over union of each of ``boxes`` [N, 4+] with ``box`` [4+]."""
    x0, y0 = np.maximum(boxes[:, 0], box[0]), np.maximum(boxes[:, 1], box[1])
    x1, y1 = np.minimum(boxes[:, 2], box[2]), np.minimum(boxes[:, 3], box[3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + (box[2] - box[0]) * (box[3] - box[1]) - inter, 1e-6)


def fit_frame(rgb: np.ndarray, max_side: int = LIVE_MAX_SIDE) -> np.ndarray:
    """The frame as the live path analyses it: RGB uint8, at most ``max_side`` px."""
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = cv2.cvtColor(rgb, cv2.COLOR_GRAY2RGB)
    elif rgb.shape[2] == 4:
        rgb = rgb[..., :3]
    scale = max_side / max(rgb.shape[:2])
    if scale < 1:
        rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb, dtype=np.uint8)


@dataclass
class LiveSession:
    """One page's live camera: its tracker, the current frame and its face, the trace and the frame counters."""

    tracker: FaceTracker
    lock: threading.Lock = field(default_factory=threading.Lock)
    frame: np.ndarray | None = None    # the current frame only (what "Enrol me" enrols)
    frame_at: float = 0.0              # when it arrived (time.monotonic)
    record: FaceRecord | None = None   # its face on the live path
    enrolled: str | None = None        # the gallery name "Enrol me" last added
    trace_name: str | None = None      # whose similarity the trace shows
    trace: deque = field(default_factory=lambda: deque(maxlen=TRACE_POINTS))   # (yaw, raw, fused, turned)
    received: int = 0                  # frames that reached the server (the first of each stream, then each next)
    processed: int = 0
    busy_drops: int = 0                # frames dropped here because the session was busy
    run: object = None                 # the stream run (gradio's request object) frames now come from
    done_at: deque = field(default_factory=lambda: deque(maxlen=40))    # when each recent frame was done
    frame_ms: deque = field(default_factory=lambda: deque(maxlen=40))   # its processing time

    @property
    def dropped(self) -> int:
        """Frames received and never processed (the one waiting, if any, is not counted)."""
        return max(0, self.received - self.processed - 1) + self.busy_drops

    def rate(self) -> float:
        """Processed frames per second over the recent frames (0 with fewer than 2)."""
        if len(self.done_at) < 2:
            return 0.0
        span = self.done_at[-1] - self.done_at[0]
        return (len(self.done_at) - 1) / span if span > 0 else 0.0

    def forget_frame(self) -> None:
        """Drop the current frame and its face (the stream stopped, or the page closed)."""
        self.frame, self.record = None, None
        self.tracker.reset()


class LiveRegistry:
    """The `LiveSession` of each open page (gradio's session hash); `release` when the page closes."""

    def __init__(self, make, frame_ttl_s: float = FRAME_TTL_S):
        self._make, self._held, self._lock = make, {}, threading.Lock()
        self.frame_ttl_s = frame_ttl_s
        self._sweeper: threading.Thread | None = None

    def forget_stale(self, now: float | None = None) -> int:
        """Drop every current frame older than ``frame_ttl_s`` (its stream stopped: gradio says nothing when it
        does); returns how many were dropped. Runs every few seconds in a daemon thread once a page streams."""
        now = time.monotonic() if now is None else now
        with self._lock:
            held = list(self._held.values())
        dropped = 0
        for live in held:
            if live.frame is not None and now - live.frame_at > self.frame_ttl_s:
                with live.lock:
                    live.forget_frame()
                dropped += 1
        return dropped

    def _sweep_forever(self) -> None:
        while True:
            time.sleep(self.frame_ttl_s / 3)
            self.forget_stale()

    def __len__(self) -> int:
        return len(self._held)

    def get(self, session_id: str | None) -> LiveSession:
        with self._lock:
            if session_id not in self._held:
                self._held[session_id] = self._make()
            if self._sweeper is None:
                self._sweeper = threading.Thread(target=self._sweep_forever, name="live-frames", daemon=True)
                self._sweeper.start()
            return self._held[session_id]

    def peek(self, session_id: str | None) -> LiveSession | None:
        with self._lock:
            return self._held.get(session_id)

    def frame_arrived(self, session_id: str | None) -> None:
        """A stream sent its next frame (counted before gradio hands it over, or replaces it with a newer one)."""
        live = self.peek(session_id)
        if live is not None:
            live.received += 1

    def release(self, session_id: str | None) -> None:
        with self._lock:
            live = self._held.pop(session_id, None)
        if live is not None:
            live.forget_frame()
            live.trace.clear()


class LiveAnalyzer:
    """The live path: tracked detection, the photo path's description, one transformer pose, gallery scores."""

    def __init__(self, analyzer, engine, threshold=None):
        self.analyzer, self.engine, self.threshold = analyzer, engine, threshold

    def session(self) -> LiveSession:
        return LiveSession(FaceTracker(self.analyzer))

    def analyze(self, live: LiveSession, frame: np.ndarray) -> tuple[FaceRecord | None, str, dict[str, float]]:
        """(the face of ``frame`` on the live path or None, how it was found, ms per stage); keeps the frame as the
        session's current one."""
        stages = {}
        start = time.perf_counter()
        rgb = fit_frame(frame)
        live.frame, live.frame_at = rgb, time.monotonic()
        stages["scale"] = (time.perf_counter() - start) * 1000
        t = time.perf_counter()
        found = live.tracker.find(rgb)
        stages["detect"] = (time.perf_counter() - t) * 1000
        if found is None:
            live.record = None
            return None, "none", stages
        box, kps, how, faces = found
        t = time.perf_counter()
        record = self.analyzer.describe_face(rgb, box, kps, num_faces=faces)
        stages["describe"] = (time.perf_counter() - t) * 1000
        live.record = record
        return record, how, stages

    def scores(self, record: FaceRecord, gallery: Gallery, name: str | None) -> tuple[str | None, float, float,
                                                                                    float | None, float]:
        """(identity, raw, flip-fused, turned to frontal, model ms) for ``name`` (None or absent: the best match by the
        verdict's score)."""
        t = time.perf_counter()
        turned = self.engine.embed(record, FRONTAL)
        model_ms = (time.perf_counter() - t) * 1000
        if not len(gallery):
            return None, float("nan"), float("nan"), None, model_ms
        templates = gallery.templates
        probes = [record.embedding, photo_embedding(record)] + ([] if turned is None else [turned])
        table = np.stack(probes) @ templates.T   # [2 or 3, N]
        index = gallery.find(name) if name else None
        if index is None:
            index = int(np.argmax(table[-1]))
        turned_score = None if turned is None else float(table[2, index])
        return gallery.names[index], float(table[0, index]), float(table[1, index]), turned_score, model_ms

    def process(self, live: LiveSession, frame: np.ndarray, gallery: Gallery, name: str | None) -> LiveReading:
        """One frame: its face, pose and similarity to ``name`` (None: the enrolled face if any, else the best match);
        appends to the trace (cleared when the identity compared with changes)."""
        start = time.perf_counter()
        record, how, stages = self.analyze(live, frame)
        reading = LiveReading(0.0, record, how, stages=stages)
        if record is not None:
            wanted = name or (live.enrolled if live.enrolled and gallery.find(live.enrolled) is not None else None)
            reading.name, reading.raw, reading.fused, reading.turned, stages["transformer"] = \
                self.scores(record, gallery, wanted)
            if reading.name is not None:
                if reading.name != live.trace_name:
                    live.trace.clear()
                    live.trace_name = reading.name
                live.trace.append((float(record.source_pose[0]), reading.raw, reading.fused, reading.turned))
        reading.frame_ms = (time.perf_counter() - start) * 1000
        live.processed += 1
        live.done_at.append(time.perf_counter())
        live.frame_ms.append(reading.frame_ms)
        return reading


# ----- frames counted as they arrive -----

STREAM_PATH = re.compile(r"/stream/([^/]+)$")   # POST {root}/gradio_api/stream/{event_id}: a stream's next input


class FrameCounter:
    """ASGI middleware (``demo.launch(app_kwargs={"middleware": [Middleware(FrameCounter, registry=...)]})``) that
    counts each frame a page's live stream sends after its first, before gradio hands it to the running stream or
    replaces a waiting one with it: `LiveSession.received`, so ``dropped`` is measured, not assumed. Which page an
    event belongs to is read from gradio's queue (a private attribute: if a gradio release moves it, frames are
    not counted and ``dropped`` reads 0; nothing else changes)."""

    def __init__(self, app, registry: LiveRegistry):
        self.app, self.registry = app, registry

    async def __call__(self, scope, receive, send):
        if scope.get("type") == "http" and scope.get("method") == "POST":
            match = STREAM_PATH.search(scope.get("path", ""))
            if match:
                try:
                    event = scope["app"].get_blocks()._queue.event_ids_to_events.get(match.group(1))
                    self.registry.frame_arrived(getattr(event, "session_hash", None))
                except Exception:   # noqa: BLE001 - counting must never break a request
                    logging.getLogger("viewdiff.demo").debug("a live frame was not counted", exc_info=True)
        await self.app(scope, receive, send)


# ----- a fake camera for tests and benchmarks -----

def write_y4m(frames, path: str | Path, fps: int = 10) -> Path:
    """Write RGB frames (one size, even sides) as a YUV4MPEG2 (C420) file: what Chromium's fake camera plays
    (``--use-file-for-fake-video-capture``), in a loop."""
    path = Path(path)
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420\n".encode("ascii"))
        for rgb in frames:
            if rgb.shape[:2] != (h, w):
                raise ValueError(f"every frame must be {w}x{h}, not {rgb.shape[1]}x{rgb.shape[0]}")
            out.write(b"FRAME\n")
            out.write(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420).tobytes())
    return path
