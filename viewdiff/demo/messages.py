"""Messages for the visitor: no server paths, no library wording, first letter upper case."""
from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from viewdiff.demo.session import Session
    from viewdiff.faces.records import FaceRecord

# parenthesised details from image libraries, e.g. "(image file is truncated (85 bytes not processed))"
# or "(SyntaxError: not a JPEG file)": they mean nothing to a visitor
_LIBRARY_DETAIL = re.compile(r"\s*\((?:[^()]|\([^()]*\))*(?:Error|not processed|cannot identify|broken|image file)"
                             r"(?:[^()]|\([^()]*\))*\)")
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[^\s/:'\"]+/)+([^\s/:'\"]+)")


def sentence(text: str) -> str:
    text = str(text).strip()
    return text[:1].upper() + text[1:] if text else text


def user_message(error: Exception | str, path: str | os.PathLike | None = None) -> str:
    """``error`` as a sentence for the visitor: ``path`` (a server temp file) becomes its file name,
    any other absolute path its last part, library details in parentheses are dropped."""
    text = str(error)
    if path is not None:
        text = text.replace(str(path), Path(path).name)
    text = _ABSOLUTE_PATH.sub(r"\1", text)
    while (shorter := _LIBRARY_DETAIL.sub("", text)) != text:
        text = shorter
    return sentence(text)


def display_path(path: str | os.PathLike) -> str:
    """A path for the model card: relative to the repository or the shared folder (shown as ../shared),
    else just its last two parts. Compared as given and with links resolved (../shared may be a link)."""
    from viewdiff.paths import REPO_ROOT, shared_dir
    path = Path(path)
    for root, prefix in ((REPO_ROOT, ""), (shared_dir(), "../shared/")):
        for inner, outer in ((path, root), (path.resolve(), root.resolve())):
            try:
                return prefix + str(inner.relative_to(outer))
            except (ValueError, OSError):
                continue
    return str(Path(*path.parts[-2:])) if path.is_absolute() else str(path)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]#!|~>])")


def markdown_text(text: str) -> str:
    """``text`` (a visitor's name, a file name) shown literally in gradio Markdown, which renders HTML and
    Markdown: HTML escaped, Markdown's special characters backslash-escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(str(text), quote=False))


TURNED_ENROL_DEG = 20   # |yaw| above this: the enrolled photo is turned, and a frontal one would make a better entry


def face_info(session: Session) -> str:
    """Markdown about the face used: its estimated head pose in words, size and detector confidence."""
    r = session.record
    yaw, pitch, roll = (float(v) for v in r.source_pose)
    width, height = r.bbox[2] - r.bbox[0], r.bbox[3] - r.bbox[1]
    which = f", face {session.face + 1} of {r.num_faces}" if r.num_faces > 1 else ""
    return (f"**{markdown_text(session.photo_name)}**{which}: estimated head pose: turned **{yaw:+.0f}°** "
            f"sideways (yaw; + = towards the image's left), **{pitch:+.0f}°** up or down (pitch; + = up), tilted "
            f"**{roll:+.0f}°** (roll); 0, 0, 0 faces the camera.  \n"
            f"Face {width:.0f}×{height:.0f} px, detector confidence {float(r.det_score):.2f}, "
            f"{r.num_faces} face{'s' * (r.num_faces != 1)} in the photo.")


def photo_status(session: Session, notes: list[str]) -> str:
    """The line beside the photo box: what was found, and the notes of this photo only (no stale toasts)."""
    r = session.record
    yaw = float(r.source_pose[0])
    facing = "facing the camera" if abs(yaw) <= TURNED_ENROL_DEG else f"turned {abs(yaw):.0f}° to the side"
    text = f"**Face found** ({facing})."
    return " ".join([text, *notes])   # notes are ours (no visitor text in them)


POSE_GATE_DEG = 10   # near the photo's own yaw the model barely changes the face (its PoseGate is 0 there)


def pose_gate_note(record: FaceRecord, target: np.ndarray) -> str:
    """What the status line adds when target pitch or roll are set but do nothing: the model changes a face only
    together with a left-right turn away from the photo's own yaw."""
    if abs(float(target[0]) - float(record.source_pose[0])) >= POSE_GATE_DEG or not np.any(target[1:]):
        return ""
    return (f" Pitch and roll change little until the target yaw moves away from the photo's own "
            f"({float(record.source_pose[0]):+.0f}°): the model learned from faces turned sideways.")
