"""The live camera's callbacks, mixed into `viewdiff.demo.service.DemoService`: a streamed frame -> the live panel, and
"Enrol me" (the camera's current frame enrolled like a photo, and made the page's photo session).

They use the service's face analysis, gallery and "Add" (`DemoService.analyze`, `gallery_for`, `on_add`), its
`LiveAnalyzer` (``self.live``) and its threshold; the live path itself is `viewdiff.demo.live`, the panel
`viewdiff.demo.live_panel`.
"""
from __future__ import annotations

import logging

from viewdiff.demo.gallery import Gallery, clean_name
from viewdiff.demo.live import NO_FRAME, LiveSession
from viewdiff.demo.live_panel import live_html
from viewdiff.demo.messages import face_info, markdown_text
from viewdiff.demo.panels import ViewOptions
from viewdiff.demo.session import Reply, guarded, plots_shown
from viewdiff.faces.errors import FaceAnalysisError

log = logging.getLogger("viewdiff.demo")

LIVE_DEFAULT_NAME = "You"   # the name "Enrol me" uses when none is typed
LIVE_COMPARE_DEFAULT = "your enrolled face (else the best match)"   # the live "Compare with" default (value "")


class LiveCallbacks:
    """The live camera's callbacks (a mixin of `DemoService`)."""

    def live_choices(self, state: Gallery | None = None) -> list[tuple[str, str]]:
        """The live camera's "Compare with" choices: the default (value "") and every gallery name."""
        return [(LIVE_COMPARE_DEFAULT, "")] + [(n, n) for n in self.gallery_names(state)]

    def on_live_frame(self, frame, compare: str | None, live: LiveSession, gallery: Gallery | None = None) -> str | None:
        """One streamed camera frame -> the live panel's HTML; None when the frame is dropped (the session is busy
        with another frame: never queued). Never raises: an unexpected error is logged and said in the panel."""
        if frame is None:
            return None
        if not live.lock.acquire(blocking=False):
            live.busy_drops += 1
            return None
        try:
            reading = self.live.process(live, frame, self.gallery_for(gallery), compare or None)
            return live_html(live, reading, self.threshold)
        except Exception as exc:
            log.exception("unexpected error in the live camera")
            return live_html(live, None, self.threshold, message=f"Something went wrong with this frame "
                             f"({type(exc).__name__}); it was logged. The next frames are tried again.")
        finally:
            live.lock.release()

    @guarded
    def on_live_enrol(self, name: str | None, target, view: ViewOptions, live: LiveSession | None,
                      gallery: Gallery | None = None) -> Reply:
        """"Enrol me": the camera's current frame, analysed on the full photo path, added to the visitor's gallery
        (like "Add" on the photo page, with its warnings) and made the page's photo, so the slider page shows it too.
        The frame itself is not kept: the session holds its analysis, as for a photo."""
        frame = None
        if live is not None:
            with live.lock:
                frame = None if live.frame is None else live.frame.copy()
        if frame is None:
            return Reply({"live_status": NO_FRAME}, warnings=[NO_FRAME.replace("**", "")])
        try:
            session, _, notes = self.analyze(frame, "live camera")
        except FaceAnalysisError:
            text = ("No face in the camera's current frame: look straight into the camera, in good light, and press "
                    "Enrol me again.")
            return Reply({"live_status": text}, warnings=[text])
        session.image = None   # the frame is not kept; "Face to use" is for photos
        name = clean_name(name) or LIVE_DEFAULT_NAME
        reply = self.on_add(name, target, view, session, gallery)
        if "gallery_table" not in reply.values:   # the gallery refused it (the warning says why)
            return reply
        own = self.gallery if self.persistent else reply.values["gallery"]
        stored = own.stored_name(name) or name
        live.enrolled, live.trace_name = stored, None
        live.trace.clear()
        yaw = float(session.record.source_pose[0])
        text = (f"Enrolled this frame as '{stored}' (head yaw {yaw:+.0f}°). Now turn your head slowly to one side, "
                "then the other: the trace draws how your similarity holds up.")
        reply.values.update({**plots_shown(True), "face_image": None, "photo_status": "",
                             "face_info": "Enrolled from the live camera (the frame itself is not kept).\n\n"
                                          + face_info(session),
                             "face_choice": {"choices": [], "value": None, "visible": False},
                             "live_status": markdown_text(text)})
        return reply
