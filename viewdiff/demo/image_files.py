"""Pictures the demo shows, written as whole files: a file being served is never rewritten.

gradio (6.x) caches an array it shows under the hash of its encoded bytes with a plain write (truncate, then write).
When two requests show the same picture at once (two visitors on the same example photo, or the same page's photo
analysed again), the second write truncates the file while the first request's browser is still fetching it: the
server fails with "Too little data for declared Content-Length" and the picture is drawn in part or not at all.
`write_once` encodes the picture, names the file after its bytes, writes it under a temporary name and renames it into
place, and only when no such file exists: a name, once there, always holds the whole picture. gradio's own copy of a
file path is atomic too (`save_file_to_cache`). The newest `KEEP` files are kept; gradio serves its copies.
`benchmarks/picture_write_race.py` counts the partial reads of both ways of writing.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path

import cv2
import numpy as np

KEEP = 64   # pictures kept in the folder: far more than the requests that can be between writing one and gradio's copy
JPEG_QUALITY = 90

_prune_lock = threading.Lock()


def write_once(rgb: np.ndarray, folder: str | Path, keep: int = KEEP) -> Path:
    """The JPEG of `rgb` ([H, W, 3] uint8, RGB) in `folder`, named by its bytes' sha256: written atomically
    if not there yet (then the folder is pruned to its newest `keep` pictures), else the existing file, untouched."""
    image = np.ascontiguousarray(rgb)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] uint8 RGB picture, got {image.dtype} {image.shape}")
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError(f"could not encode a {image.shape} picture as JPEG")
    data = encoded.tobytes()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:32]}.jpg"
    if path.exists():
        return path
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)   # atomic: a reader sees no file or the whole one
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    prune(folder, keep)
    return path


def prune(folder: Path, keep: int) -> None:
    """Delete all but the newest `keep` pictures in `folder` (unfinished ``.part`` files are left to their writers)."""
    with _prune_lock:
        pictures = []
        for path in folder.glob("*.jpg"):
            try:
                pictures.append((path.stat().st_mtime_ns, path))
            except FileNotFoundError:   # pruned by another process sharing the folder
                continue
        for _, path in sorted(pictures, reverse=True)[keep:]:
            path.unlink(missing_ok=True)
