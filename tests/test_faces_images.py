"""Image decoding (`viewdiff.faces.images`): the reduced decode of big JPEGs, and that nothing else changes.

The analyzer's other decoding cases (broken, huge, grey, RGBA files through `FaceAnalyzer`) are in
test_faces_analyzer.py. Real photo: assets/t1.jpg (1280 x 886); a small ``min_side`` makes it "big" here.
"""
from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from viewdiff.faces.images import load_image, load_image_scaled

T1 = Path(__file__).resolve().parent.parent / "assets" / "t1.jpg"


def test_images_under_twice_min_side_are_decoded_exactly_as_without_it():
    full = load_image(T1)
    for min_side in (None, 641, 1280, 4000):
        rgb, factor = load_image_scaled(T1, min_side)
        assert factor == 1 and np.array_equal(rgb, full)


def test_a_big_jpeg_is_decoded_at_the_smallest_scale_that_keeps_min_side():
    full = load_image(T1)
    for min_side, factor in ((640, 2), (320, 4), (200, 4), (160, 8)):
        rgb, got = load_image_scaled(T1.read_bytes(), min_side)
        assert got == factor and max(rgb.shape[:2]) >= min_side
        assert rgb.shape[:2] == (-(-886 // factor), 1280 // factor)   # libjpeg rounds sizes up
        small = cv2.resize(full, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_AREA)
        assert np.abs(rgb.astype(int) - small).mean() < 4   # the same picture (DCT scaling vs resize)
    assert np.array_equal(load_image(T1, min_side=640), load_image_scaled(T1, 640)[0])


def test_other_formats_are_never_reduced(tmp_path):
    png = tmp_path / "t1.png"
    Image.open(T1).save(png)
    rgb, factor = load_image_scaled(png, 200)
    assert factor == 1 and np.array_equal(rgb, load_image(png))


def test_exif_orientation_is_applied_to_the_reduced_decode():
    im = Image.open(T1)
    exif = Image.Exif()
    exif[0x0112] = 6   # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    rotated, factor = load_image_scaled(buf.getvalue(), 320)
    upright, _ = load_image_scaled(buf.getvalue(), None)
    assert factor == 4 and upright.shape[:2] == (1280, 886) and rotated.shape[:2] == (320, 222)
