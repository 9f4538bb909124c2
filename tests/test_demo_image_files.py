"""Pictures written as whole files (viewdiff/demo/image_files.py)."""
from __future__ import annotations

import os
import threading
import time

import cv2
import numpy as np
import pytest

from viewdiff.demo.image_files import write_once


def picture(seed: int, size: int = 160) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_the_file_decodes_to_the_picture_in_rgb_order(tmp_path):
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[..., 0] = 200   # red
    path = write_once(rgb, tmp_path)
    decoded = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert decoded.shape == rgb.shape
    assert np.abs(decoded.astype(int) - rgb).max() <= 3


def test_the_same_picture_is_never_rewritten(tmp_path):
    first = write_once(picture(0), tmp_path)
    before = first.stat()
    time.sleep(0.01)
    again = write_once(picture(0), tmp_path)
    assert again == first
    after = again.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert write_once(picture(1), tmp_path) != first


def test_a_reader_never_meets_a_partial_file_while_others_write_the_same_picture(tmp_path):
    """What gradio's in-place cache write fails: the size a server declares (stat) must be what it then reads."""
    rgb = picture(2, 400)
    path = write_once(rgb, tmp_path)
    size = path.stat().st_size
    stop, failures = threading.Event(), []

    def writer():
        while not stop.is_set():
            write_once(rgb, tmp_path)

    def reader():
        for _ in range(2000):
            declared = os.stat(path).st_size
            with open(path, "rb") as f:
                body = f.read()
            if declared != size or len(body) != size:
                failures.append((declared, len(body)))

    writers = [threading.Thread(target=writer) for _ in range(3)]
    for t in writers:
        t.start()
    reader()
    stop.set()
    for t in writers:
        t.join()
    assert failures == []


def test_the_folder_keeps_only_the_newest_pictures(tmp_path):
    paths = []
    for seed in range(6):
        paths.append(write_once(picture(seed, 32), tmp_path, keep=3))
        time.sleep(0.01)   # distinct modification times
    left = sorted(p.name for p in tmp_path.glob("*.jpg"))
    assert left == sorted(p.name for p in paths[-3:])
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize("bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8),
                                 np.zeros((8, 8, 3), np.float32)])
def test_anything_but_an_rgb_uint8_picture_is_refused(tmp_path, bad):
    with pytest.raises(ValueError, match="RGB picture"):
        write_once(bad, tmp_path)
