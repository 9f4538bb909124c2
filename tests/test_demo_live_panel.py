"""The live panel: the frame with its face box, pose, verdict and three bars, the trace of similarity against yaw,
the counters, and every visitor-typed name shown as text (never markup)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from viewdiff.demo.calibration import Threshold
from viewdiff.demo.live import FaceTracker, LiveReading, LiveSession
from viewdiff.demo.live_panel import live_html, trace_svg

THRESHOLD = Threshold(0.25, "test")
HOSTILE = '<img src=x onerror="alert(1)">'


def reading(name: str | None, turned: float | None = 0.8) -> LiveReading:
    record = SimpleNamespace(source_pose=np.array([31.0, -4.0, 2.0], np.float32),
                             bbox=np.array([100, 80, 200, 210], np.float32),
                             keypoints=np.array([[130, 130], [170, 130], [150, 160], [135, 185], [165, 185]], np.float32))
    return LiveReading(50.0, record, "tracked", name, 0.7, 0.75, turned)


def session(points=()) -> LiveSession:
    live = LiveSession(FaceTracker(None))
    live.frame = np.full((480, 640, 3), 120, np.uint8)
    live.trace.extend(points)
    return live


def test_a_match_shows_pose_verdict_bars_frame_and_counters():
    live = session([(31.0, 0.7, 0.75, 0.8)])
    live.trace_name, live.processed, live.received = "Ada", 5, 9
    page = live_html(live, reading("Ada"), THRESHOLD)
    assert 'data-match="1"' in page and 'data-yaw="31.0"' in page and 'data-found="tracked"' in page
    assert "yaw +31° · pitch -4° · roll +2°" in page and "Match" in page and "(0.80 ≥ 0.25)" in page
    assert page.count('class="vd-live-row"') == 3 and "data:image/jpeg;base64," in page
    assert "3 dropped of 9 received" in page and 'data-dropped="3"' in page   # 9 - 5 - the one waiting
    below = live_html(live, reading("Ada", turned=0.1), THRESHOLD)
    assert 'data-match="0"' in below and "is below 0.25" in below
    assert "no same-person threshold" in live_html(live, reading("Ada"), None)
    assert 'data-turned=""' in live_html(live, reading("Ada", turned=None), THRESHOLD)   # no model: fused decides


def test_no_face_an_empty_gallery_and_a_message():
    live = session()
    assert "No face in this frame" in live_html(live, LiveReading(10.0), THRESHOLD)
    assert "The gallery is empty" in live_html(live, reading(None), THRESHOLD)
    assert "Press Record" in live_html(live, None, THRESHOLD, message="Press Record") and "<img" not in \
        live_html(live, None, THRESHOLD)


def test_names_are_text_and_the_trace_is_drawn():
    live = session([(-60.0, 0.4, 0.42, 0.45), (0.0, 0.9, 0.92, 0.91), (45.0, 0.5, 0.5, None)])
    live.trace_name = HOSTILE
    page = live_html(live, reading(HOSTILE), THRESHOLD)
    assert "<img src=x" not in page and "&lt;img src=x" in page
    svg = trace_svg(live.trace, live.trace_name, 0.25, (45.0, 0.5))
    assert svg.count("h0") == 5 and 'class="vd-trace-turned"' in svg and "<circle" in svg   # 3 raw + 2 turned dots
    assert "stroke-dasharray" in svg and "stroke-dasharray" not in trace_svg(live.trace, "x", None, None)
