"""Image decoding: any supported input -> RGB uint8 ``[H, W, 3]``, with size checks before decoding.

``image``: a path, bytes (or a binary file object), a PIL image, or a numpy array (RGB as Gradio
gives it: ``[H, W]`` grey, ``[H, W, 3]`` RGB, ``[H, W, 4]`` RGBA; uint8, uint16, bool or float in
[0, 1]). Files are decoded by Pillow (EXIF orientation applied), OpenCV for formats Pillow lacks.
Grey and palette images are converted to RGB, transparency is composited over white. Failures are
`ImageReadError` (missing, 0-byte, truncated or corrupt file, unsupported type) and
`ImageTooLargeError` (more than `MAX_PIXELS`, refused from the file header before decoding:
decompression bombs).

``min_side`` (`load_image_scaled`): a JPEG whose long side is at least twice ``min_side`` is decoded at
1/2, 1/4 or 1/8 of its size by libjpeg's DCT scaling, the smallest that keeps the long side at least
``min_side`` (a 12 MP photo: 2000 px in ~1/4 of the time of a full decode, and no resize of 12 MP);
smaller images, other formats, arrays and PIL images are decoded exactly as without it.
"""
from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path

import cv2
import numpy as np

from viewdiff.faces.errors import ImageReadError, ImageTooLargeError

MAX_PIXELS = 100_000_000         # refuse larger images, from the header (decompression-bomb guard)


def load_image(image, min_side: int | None = None) -> np.ndarray:
    """Any supported input -> RGB uint8 [H, W, 3] (contiguous).

    `image`: path (str / Path), bytes / bytearray / memoryview, a binary file object, a PIL image, or
    a numpy array [H, W], [H, W, 1], [H, W, 2] (grey + alpha), [H, W, 3] RGB, [H, W, 4] RGBA of
    uint8, uint16 (scaled to 8 bits), bool, other integers (clipped to 0..255) or floats (in [0, 1],
    or 0..255 when larger values occur). min_side: decode big JPEGs at reduced size (module doc).
    Raises `ImageReadError`, `ImageTooLargeError`.
    """
    return load_image_scaled(image, min_side)[0]


def load_image_scaled(image, min_side: int | None = None) -> tuple[np.ndarray, int]:
    """`load_image` -> (RGB uint8 [H, W, 3], factor): factor 1, 2, 4 or 8 original pixels per decoded
    pixel (1 unless a big JPEG was decoded at reduced size for ``min_side``, see the module doc)."""
    from PIL import Image
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if path.is_dir():
            raise ImageReadError(f"{path.name} is a folder, not an image file")
        try:
            image = path.read_bytes()
        except OSError as e:
            raise ImageReadError(f"cannot read the image file {path.name}: {e.strerror or type(e).__name__}") from e
        if not image:
            raise ImageReadError(f"the image file {path.name} is empty (0 bytes): use a JPEG or PNG photo")
    elif hasattr(image, "read") and not isinstance(image, np.ndarray):
        image = image.read()
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _decode(bytes(image), min_side)
    if isinstance(image, Image.Image):
        _check_size(*image.size)
        return _pil_to_rgb(image), 1
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image), 1
    raise ImageReadError(f"unsupported image type {type(image).__name__}: give a file path, bytes, "
                         "a PIL image or a numpy array")


def _too_large(w: int, h: int) -> str:
    return (f"the image is {w}x{h} = {w * h / 1e6:.0f} megapixels, above the {MAX_PIXELS / 1e6:.0f} MP "
            "limit (a guard against decompression bombs): resize it (e.g. to 4000 px on the long side) "
            "and try again")


def _check_size(w: int, h: int) -> None:
    if w * h > MAX_PIXELS:
        raise ImageTooLargeError(_too_large(w, h))


def _decode(data: bytes, min_side: int | None = None) -> tuple[np.ndarray, int]:
    """Encoded image bytes -> (RGB uint8, factor); the size is checked from the header before decoding."""
    from PIL import Image, UnidentifiedImageError
    if not data:
        raise ImageReadError("the image is empty (0 bytes): upload a JPEG or PNG photo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)   # our own limit applies
        try:
            im = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as e:   # beyond Pillow's own limit (2x ~89 MP)
            m = re.search(r"\((\d+) pixels\)", str(e))
            size = f"{int(m.group(1)) / 1e6:.0f} megapixels" if m else "too many pixels"
            raise ImageTooLargeError(f"the image has {size}, above the {MAX_PIXELS / 1e6:.0f} MP limit (a "
                                     "guard against decompression bombs): resize it (e.g. to 4000 px on "
                                     "the long side) and try again") from e
        except UnidentifiedImageError:
            im = None
        except Exception as e:  # a recognised header that is broken
            raise ImageReadError(f"the image data is corrupt ({type(e).__name__}: {e}): use another "
                                 "JPEG or PNG photo") from e
        if im is None:
            return _decode_cv2(data), 1
        _check_size(*im.size)
        factor = _draft(im, min_side)
        try:
            im.load()
        except Exception as e:  # truncated files, bad compressed data
            raise ImageReadError(f"the {im.format or 'image'} file is truncated or corrupt ({e}): "
                                 "use another copy of the photo") from e
        return _pil_to_rgb(im), factor


def _draft(im, min_side: int | None) -> int:
    """Ask libjpeg for a reduced decode of a JPEG of at least 2 x `min_side` px (module doc) -> the factor."""
    w, h = im.size
    if not min_side or im.format != "JPEG" or max(w, h) < 2 * min_side:
        return 1
    ratio = min_side / max(w, h)
    im.draft(im.mode, (max(1, int(w * ratio)), max(1, int(h * ratio))))   # Pillow: scale = min(w // w', h // h')
    return int(2 ** round(np.log2(w / im.size[0])))   # libjpeg scales by 1/2, 1/4 or 1/8 (sizes rounded up)


def _decode_cv2(data: bytes) -> np.ndarray:
    """Formats Pillow does not know (OpenCV's list), else ImageReadError."""
    arr = None
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        pass
    if arr is None:
        raise ImageReadError("the data is not a readable image (corrupt or unsupported format): "
                             "use a JPEG or PNG photo")
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return _array_to_rgb(arr)


def _pil_to_rgb(im) -> np.ndarray:
    """PIL image (any mode, EXIF orientation applied) -> RGB uint8."""
    from PIL import ImageOps
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block: keep the pixels as stored
        pass
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):   # 16/32-bit grey, float
        arr = np.asarray(im)
        if im.mode == "I" and arr.size and int(arr.max()) > 255:   # 16-bit data held as int32
            arr = np.clip(arr, 0, 65535).astype(np.uint16)
        return _array_to_rgb(arr)
    has_alpha = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
    if has_alpha:
        return _array_to_rgb(np.asarray(im.convert("RGBA")))
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im, np.uint8))


def _array_to_rgb(arr: np.ndarray) -> np.ndarray:
    """numpy image (see `load_image`) -> RGB uint8 [H, W, 3]."""
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 2, 3, 4)) or 0 in arr.shape[:2]:
        raise ImageReadError(f"unsupported image array shape {arr.shape}: expected [H, W], [H, W, 3] "
                             "(RGB) or [H, W, 4] (RGBA)")
    _check_size(arr.shape[1], arr.shape[0])
    arr = _to_uint8(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    channels = arr.shape[2]
    if channels in (2, 4):   # composite over white
        color, alpha = arr[..., :channels - 1], arr[..., channels - 1:]
        if alpha.min() < 255:
            a = alpha.astype(np.float32) / 255.0
            color = np.rint(color * a + 255.0 * (1.0 - a)).astype(np.uint8)
        arr = color
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        arr = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        if arr.size and float(arr.max()) <= 1.0:
            arr = arr * 255.0
        return np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        return np.clip(arr, 0, 255).astype(np.uint8)
    raise ImageReadError(f"unsupported image array dtype {arr.dtype}: use uint8 RGB")
