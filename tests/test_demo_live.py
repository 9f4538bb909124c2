"""The live camera's path on real faces: the tracker follows the face between detections, each frame gives pose and
the three similarities to the enrolled face (or the one picked) close to the photo path's, the trace follows, frames
arriving are counted per page, a stopped stream's frame is dropped, and the fake camera file is valid YUV4MPEG2."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest

from viewdiff.demo import live as live_module
from viewdiff.demo.gallery import photo_embedding, record_maps
from viewdiff.demo.live import FaceTracker, FrameCounter, LiveRegistry, fit_frame, iou, write_y4m


def test_tracker_follows_the_face_between_whole_frame_searches(service, frontal):
    tracker = FaceTracker(service.analyzer, redetect_every=3)
    full = service.analyzer.analyze(frontal)
    hows = []
    for _ in range(5):
        box, kps, how, faces = tracker.find(frontal)
        hows.append(how)
        assert iou(box[None], full.bbox)[0] > 0.8 and kps.shape == (5, 2)
        assert np.abs(kps - full.keypoints).max() < 0.05 * (full.bbox[2] - full.bbox[0])
    assert hows == ["detected", "tracked", "tracked", "tracked", "detected"]   # a whole-frame search every 3
    assert tracker.find(np.full_like(frontal, 128)) is None and tracker.last is None   # no face: lost


def test_a_frame_gives_pose_and_the_three_similarities_to_the_enrolled_face(service, frontal):
    gallery = service.gallery.copy_to(None)
    live = service.live.session()
    reading = service.live.process(live, frontal, gallery, None)
    assert reading.record is not None and reading.how == "detected" and reading.name == "Tom Hanks"  # best match
    full = service.analyzer.analyze(frontal)
    assert np.abs(reading.record.source_pose - full.source_pose).max() < 5   # the photo path's pose, within degrees
    assert float(reading.record.embedding @ full.embedding) > 0.97
    assert live.frame is not None and live.record is reading.record   # the current frame, for "Enrol me"
    gallery.add("Eileen", photo_embedding(full), maps=record_maps(full), fused=True, crop=full.aligned_crop)
    live.enrolled = "eileen"   # "Enrol me" sets it (`viewdiff.demo.live_service`); any case finds the entry
    reading = service.live.process(live, frontal, gallery, None)
    assert reading.name == "Eileen" and reading.how == "tracked"
    assert reading.raw > 0.9 and reading.fused > 0.9 and reading.turned > 0.9
    assert live.trace_name == "Eileen" and len(live.trace) == 1
    picked = service.live.process(live, frontal, gallery, "tom hanks")   # any case: the gallery's name
    assert picked.name == "Tom Hanks" and picked.turned < service.threshold.value
    assert len(live.trace) == 1 and live.processed == 3   # a new identity starts a new trace
    assert set(picked.stages) == {"scale", "detect", "describe", "transformer"} and picked.frame_ms > 0


def test_frames_are_scaled_and_converted():
    assert fit_frame(np.zeros((720, 1280, 3), np.uint8)).shape == (360, 640, 3)
    assert fit_frame(np.zeros((480, 640, 4), np.uint8)).shape == (480, 640, 3)
    assert fit_frame(np.zeros((100, 80), np.uint8)).shape == (100, 80, 3)


def test_frames_sent_to_a_stream_are_counted_per_page():
    registry = LiveRegistry(lambda: live_module.LiveSession(FaceTracker(None)))
    live = registry.get("page-1")
    events = {"e1": SimpleNamespace(session_hash="page-1")}
    blocks = SimpleNamespace(_queue=SimpleNamespace(event_ids_to_events=events))
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["path"])
    counter = FrameCounter(app, registry)
    for path, method in (("/gradio_api/stream/e1", "POST"), ("/gradio_api/stream/e1/close", "POST"),
                         ("/gradio_api/stream/e2", "POST"), ("/gradio_api/stream/e1", "GET")):
        scope = {"type": "http", "method": method, "path": path, "app": SimpleNamespace(get_blocks=lambda: blocks)}
        asyncio.run(counter(scope, None, None))
    assert live.received == 1 and len(seen) == 4   # only a frame of page-1's stream; every request passes on
    asyncio.run(counter({"type": "http", "method": "POST", "path": "/gradio_api/stream/e1", "app": None}, None, None))
    assert live.received == 1   # no gradio app in the scope: not counted, not broken
    live.frame, live.frame_at = np.zeros((4, 4, 3), np.uint8), 100.0
    assert registry.forget_stale(now=100.0 + registry.frame_ttl_s / 2) == 0 and live.frame is not None
    assert registry.forget_stale(now=101.0 + registry.frame_ttl_s) == 1 and live.frame is None   # the stream stopped
    live.frame = np.zeros((4, 4, 3), np.uint8)
    registry.release("page-1")
    assert live.frame is None and registry.peek("page-1") is None


def test_the_fake_camera_file_is_yuv4mpeg2(tmp_path):
    frames = [np.full((48, 64, 3), v, np.uint8) for v in (0, 255)]
    path = write_y4m(frames, tmp_path / "cam.y4m", fps=5)
    data = path.read_bytes()
    header = b"YUV4MPEG2 W64 H48 F5:1 Ip A1:1 C420\n"
    assert data.startswith(header) and data.count(b"FRAME\n") == 2
    assert len(data) == len(header) + 2 * (6 + 64 * 48 * 3 // 2)
    with pytest.raises(ValueError, match="64x48"):
        write_y4m([frames[0], np.zeros((50, 64, 3), np.uint8)], tmp_path / "bad.y4m")
