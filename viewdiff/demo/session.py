"""Per-visitor state of the demo and the shape of every callback's answer.

`Session`: the current photo's analysis and results; `SessionRegistry`: which session each open page holds, so
that a closed page frees it; `Reply`: what a callback returns; `guarded`: bad input becomes a message, never a
traceback.
"""
from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from viewdiff.demo.engine import PoseResult
from viewdiff.demo.gallery import GalleryError
from viewdiff.demo.messages import user_message
from viewdiff.faces.errors import FaceAnalysisError
from viewdiff.faces.records import FaceRecord

log = logging.getLogger("viewdiff.demo")
PLOT_AREAS = ("results", "views", "jump")   # shown only with a photo's results (else `results_hint`); jump: the
#                                             "see the results" button (only on a narrow screen, app.CSS)


def plots_shown(shown: bool) -> dict[str, dict]:
    """Property updates that show the plot areas (a photo was analysed) or hide them behind the hint."""
    return {**{area: {"visible": shown} for area in PLOT_AREAS}, "results_hint": {"visible": not shown}}


@dataclass
class Session:
    """Per-browser-session state of the current photo: its analysis, the last pose result and the sweep cache.

    ``sweeps``: (target pitch, target roll) -> unit transformed embeddings ``[len(SWEEP_YAWS), D]`` of
    the yaw sweep; it does not depend on the target yaw, so a yaw move runs the model on one pose only.
    ``sweep_shown``: what the pose-sweep plot on the page shows (`sweep_key`): a yaw move that keeps it
    sends no new sweep figure (the page moves its target-yaw marker itself, `app.SWEEP_MARKER`).
    """

    photo_name: str
    record: FaceRecord | None   # None once released (`SessionRegistry`): the page was closed
    result: PoseResult | None = None
    sweeps: dict[tuple[float, float], np.ndarray] = field(default_factory=dict)
    sweep_shown: tuple | None = None
    image: Any = None   # the photo as given (a path in gradio's cache): analysed again for another face
    face: int = 0   # which face of the photo is used, largest first
    faces: list[FaceRecord] | None = None   # every face (`FaceAnalyzer.analyze_all`), once another one was asked for
    heads: dict[int, int] = field(default_factory=dict)   # layer -> the photo's most selective head, chosen once

    def release(self) -> None:
        """Drop the photo's analysis and results (the object itself stays in gradio's state for a while)."""
        self.record, self.result, self.sweeps, self.sweep_shown = None, None, {}, None
        self.image, self.faces, self.heads = None, None, {}


class SessionRegistry:
    """Which `Session` each browser session (gradio's session hash) holds, so that closing the page frees it.

    gradio keeps a closed page's state for an hour (in case it reconnects); with a Session of ~0.5 MB per
    visitor that grew the server by ~1 MB per visitor who had left. `track` after every callback that
    returns a session, `release` when the page unloads; `live` turns a released session into None (the
    callbacks then ask for a photo, as for a new visitor).
    """

    def __init__(self):
        self._held: dict[str, Session] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._held)

    def track(self, session_id: str | None, session: Session | None) -> None:
        if not session_id:
            return
        with self._lock:
            if session is None:
                self._held.pop(session_id, None)
            else:
                self._held[session_id] = session

    def release(self, session_id: str | None) -> None:
        with self._lock:
            session = self._held.pop(session_id, None) if session_id else None
        if session is not None:
            session.release()

    @staticmethod
    def live(session: Session | None) -> Session | None:
        return None if session is None or session.record is None else session


@dataclass
class Reply:
    values: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    infos: list[str] = field(default_factory=list)


def guarded(callback):
    """Turn bad input into a warning and anything unexpected into a logged, short message."""

    @functools.wraps(callback)
    def wrapper(*args, **kwargs) -> Reply:
        try:
            return callback(*args, **kwargs)
        except (FaceAnalysisError, GalleryError) as exc:
            return Reply(warnings=[user_message(exc)])
        except Exception as exc:
            log.exception("unexpected error in %s", callback.__name__)
            return Reply(warnings=[f"Something went wrong ({type(exc).__name__}); it was logged. "
                                   "Your previous results are kept."])

    return wrapper
