"""The live camera's callbacks: "Enrol me" adds the camera's current frame like a photo (the page's session becomes
it, the frame itself is not kept; a turned head warns; no frame says what to do), a frame that finds its page busy is
dropped instead of queued, and an unexpected error is said in the panel without a server path."""

from __future__ import annotations

import numpy as np

from viewdiff.demo.live_service import LIVE_COMPARE_DEFAULT
from viewdiff.demo.service import ViewOptions


def test_enrol_me_adds_the_current_frame_and_becomes_the_pages_photo(service, frontal):
    live = service.live.session()
    service.on_live_frame(frontal, None, live, None)
    reply = service.on_live_enrol("Eileen <b>Collins</b>", (0, 0, 0), ViewOptions(), live, None)
    assert reply.warnings == [] and live.enrolled == "Eileen <b>Collins</b>"
    gallery = reply.values["gallery"]
    assert gallery.names[-1] == "Eileen <b>Collins</b>" and reply.values["session"].record is not None
    assert reply.values["session"].image is None   # the frame is not kept with the page's session
    assert reply.values["face_image"] is None and "live camera" in reply.values["face_info"]
    assert reply.values["results"] == {"visible": True} and "similarity" in reply.values   # the slider page shows it
    assert "as 'Eileen &lt;b&gt;Collins&lt;/b&gt;'" in reply.values["live_status"]   # Markdown shows it as text
    assert [c[1] for c in reply.values["live_compare"]["choices"]][:2] == ["", "Eileen <b>Collins</b>"]
    page = service.on_live_frame(frontal, "", live, gallery)
    assert 'data-match="1"' in page and "&lt;b&gt;Collins" in page and "<b>Collins" not in page


def test_a_turned_enrolment_warns_and_no_frame_says_what_to_do(service, asset_rgb):
    live = service.live.session()
    reply = service.on_live_enrol("Me", (0, 0, 0), ViewOptions(), live, None)
    assert "Record" in reply.values["live_status"] and reply.warnings and "gallery" not in reply.values
    service.live.process(live, asset_rgb("t1_face_yaw55.jpg"), service.gallery, None)
    reply = service.on_live_enrol("", (0, 0, 0), ViewOptions(), live, None)
    assert reply.values["gallery"].names[-1] == "You"   # no name typed
    assert any("turned" in w for w in reply.warnings)


def test_a_busy_session_drops_the_frame_instead_of_queueing_it(service, frontal):
    live = service.live.session()
    with live.lock:   # another frame of this page is being processed
        assert service.on_live_frame(frontal, None, live, None) is None
    assert live.busy_drops == 1 and live.processed == 0 and live.dropped == 1
    page = service.on_live_frame(frontal, "", live, None)
    assert live.processed == 1 and 'data-processed="1"' in page
    assert service.on_live_frame(None, "", live, None) is None


def test_no_face_and_errors_are_said_in_the_panel(service, monkeypatch):
    live = service.live.session()
    page = service.on_live_frame(np.full((480, 640, 3), 90, np.uint8), None, live, None)
    assert "No face in this frame" in page and 'data-found="none"' in page
    reply = service.on_live_enrol("Me", (0, 0, 0), ViewOptions(), live, None)
    assert "No face in the camera's current frame" in reply.values["live_status"]

    def broken(*args):
        raise RuntimeError("/secret/server/path")
    monkeypatch.setattr(service.live, "process", broken)
    page = service.on_live_frame(np.zeros((480, 640, 3), np.uint8), None, live, None)
    assert "Something went wrong" in page and "RuntimeError" in page and "/secret" not in page


def test_live_choices_start_with_the_default(service):
    assert service.live_choices()[0] == (LIVE_COMPARE_DEFAULT, "")
    assert ("Tom Hanks", "Tom Hanks") in service.live_choices()
