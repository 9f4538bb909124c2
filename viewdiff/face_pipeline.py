"""Face analysis: detection, 5 keypoints, embedding, aligned crop and head pose of a photo.

`FaceAnalyzer` runs one of two backends behind the same interface:

- ``dlib`` (offline, public-domain models from ``face_recognition_models``): detection by SCRFD
  (ONNX, when a detector file is found) or else dlib HOG then dlib's CNN detector; dlib's 5-point
  shape predictor aligns the face for the 128-d ResNet descriptor and the 112x112 crop (measured on
  CFP: profile-to-frontal rank-1 0.88 with 5-point alignment vs 0.56 with 68-point); the 68-point
  predictor gives `landmarks_68`.
- ``insightface``: a model pack (``buffalo_l`` ...) run by ``insightface.app.FaceAnalysis``, 512-d.

Conventions
- Angles are degrees ``(yaw, pitch, roll)``, ``(0, 0, 0)`` frontal. The signs follow Pointing'04's
  labels (checked on the data): yaw > 0 = the face turns towards the image's left (the subject's
  own right, pan > 0 in Pointing'04 file names); pitch > 0 = tilt > 0 in Pointing'04 (head up).
- Head pose (``pose_source``): ``landmark_3d_68`` (the pack's 3D-landmark model) when present,
  else ``pnp5``: ``cv2.solvePnP`` of the 5 keypoints against `TEMPLATE_5` under a near-orthographic
  camera, else ``pnp68``: the 68 dlib landmarks against insightface's ``meanshape_68``. On
  Pointing'04 the 5-point fit is far better than the 68-point one beyond 30 deg of yaw (dlib's
  68 landmarks do not follow profiles); see ``benchmarks/bench_pose.py``.
- `TEMPLATE_5` [5, 3]: x, y of insightface's ArcFace 5-point template (the layout SCRFD keypoints
  follow) with the depth of the matching ``meanshape_68`` points (eye centres, nose tip, mouth
  corners), in a right-handed face frame: x to the image right, y up, z towards the camera,
  centred and scaled so the largest coordinate is 1.
- ``keypoints_3d`` [5, 3] = `TEMPLATE_5` rotated by the estimated head pose (same frame, no
  translation): a frontal face gives `TEMPLATE_5` itself.
- ``keypoints`` [5, 2] order: eye, eye, nose, mouth corner, mouth corner; "left" and "right" are
  the image's left and right.

Inputs and errors
- ``image``: a path, bytes (or a binary file object), a PIL image, or a numpy array (RGB as Gradio
  gives it: ``[H, W]`` grey, ``[H, W, 3]`` RGB, ``[H, W, 4]`` RGBA; uint8, uint16, bool or float in
  [0, 1]). Files are decoded by Pillow (EXIF orientation applied), OpenCV for formats Pillow lacks.
  Grey and palette images are converted to RGB, transparency is composited over white.
- Every failure is a `FaceAnalysisError` with a message meant for the user: `ImageReadError`
  (missing, 0-byte, truncated or corrupt file, unsupported type), `ImageTooLargeError` (more than
  `MAX_PIXELS`, refused from the file header before decoding: decompression bombs), `NoFaceError`,
  `ModelNotFoundError` (a model file or pack is missing; the message says where it looked and how
  to fix it).
- Images larger than `WORK_MAX_SIDE` are downscaled for detection only; each face is then
  described (landmarks, embedding, crop) on a full-resolution region of the original, and every
  coordinate is returned in original-image pixels. Faces that fill the frame are found by retrying
  detection with a border. Several faces: `analyze` returns the largest (box area) with
  ``num_faces`` and a ``warning``; faces under `TINY_FACE_PX` get a warning too.

InsightFace packs (`resolve_pack`): ``model_dir`` argument (or a ``pack`` given as a folder), then
``$VIEWDIFF_MODELS`` (the pack itself or a folder holding ``<pack>/``), ``weights/insightface/<pack>``,
``../shared/models/<pack>``, ``~/.insightface/models/<pack>``; only then insightface's own download
into ``~/.insightface``, which is off when ``allow_download=False``, ``$VIEWDIFF_OFFLINE=1`` or under
pytest (tests never touch the network). ONNX providers: CUDA when onnxruntime offers it, else CPU.
"""
from __future__ import annotations

import importlib.util
import io
import os
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from viewdiff.embeddings import l2_normalize

MAX_PIXELS = 100_000_000         # refuse larger images, from the header (decompression-bomb guard)
WORK_MAX_SIDE = 1280             # bigger images are downscaled for detection, coordinates mapped back
DESCRIBE_MAX_FACE = 512          # faces of huge images are described at most this big (pixels)
TINY_FACE_PX = 40                # smaller boxes are accepted with a warning
DEFAULT_PACK = "buffalo_l"
REPO_ROOT = Path(__file__).resolve().parent.parent


class FaceAnalysisError(Exception):
    """Base class of the face pipeline's errors; the message says what to do."""


class ImageReadError(FaceAnalysisError):
    """The input is not a readable image (0 bytes, corrupt, unsupported)."""


class ImageTooLargeError(FaceAnalysisError):
    """The image has more than `MAX_PIXELS` pixels."""


class NoFaceError(FaceAnalysisError):
    """No face was detected."""


class ModelNotFoundError(FaceAnalysisError):
    """A model file or pack is missing; the message names it and the fix."""


@dataclass
class FaceRecord:
    """One analysed face. Coordinates are pixels of the original image."""
    bbox: np.ndarray              # [4] x1, y1, x2, y2
    det_score: float
    keypoints: np.ndarray         # [5, 2]
    embedding: np.ndarray         # [D] float32, unit length
    pose: np.ndarray              # [3] yaw, pitch, roll (degrees)
    pose_source: str
    keypoints_3d: np.ndarray      # [5, 3] canonical face frame, rotated by `pose`
    aligned_crop: np.ndarray      # [112, 112, 3] uint8 RGB
    num_faces: int = 1
    warning: str | None = None
    landmarks_68: np.ndarray | None = None   # [68, 2] when the backend gives them
    backend: str = ""


@dataclass
class _Face:
    """Backend output in working-image coordinates."""
    bbox: np.ndarray              # [4]
    det_score: float
    keypoints: np.ndarray         # [5, 2]
    embedding: np.ndarray = None  # [D]
    aligned_crop: np.ndarray = None
    landmarks_68: np.ndarray | None = None
    pose: np.ndarray | None = None  # [3] from a 3D-landmark model
    keypoints_from_detector: bool = True   # else derived from the 68 landmarks


# ----------------------------------------------------------------------------- paths

def shared_dir() -> Path:
    """`$VIEWDIFF_SHARED`, else ``../shared`` beside the repository."""
    return Path(os.environ.get("VIEWDIFF_SHARED", REPO_ROOT.parent / "shared"))


def dlib_model_dir() -> Path:
    """Folder of the ``face_recognition_models`` files (without importing its pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError("dlib models not found: pip install face_recognition_models==0.3.0")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def find_scrfd() -> Path | None:
    """SCRFD detector file: `$VIEWDIFF_MODELS`, weights/insightface/scrfd, ../shared/models/scrfd."""
    env = os.environ.get("VIEWDIFF_MODELS")
    dirs = [Path(env) / "scrfd", Path(env)] if env else []
    dirs += [REPO_ROOT / "weights/insightface/scrfd", shared_dir() / "models/scrfd"]
    for d in dirs:
        for name in ("det_2.5g.onnx", "det_10g.onnx", "det_500m.onnx"):
            if (d / name).is_file():
                return d / name
    return None


def _has_onnx(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.onnx"))


def _is_path_like(pack: str) -> bool:
    return any(sep in pack for sep in ("/", "\\", os.sep)) or pack.startswith((".", "~"))


def insightface_home() -> Path:
    """Where insightface keeps (and downloads) packs: ``~/.insightface``."""
    return Path("~/.insightface").expanduser()


def pack_search_dirs(pack: str | None = None, model_dir: str | Path | None = None) -> list[Path]:
    """The folders `resolve_pack` tries, in order (for messages and tests)."""
    pack = pack or DEFAULT_PACK
    dirs: list[Path] = []
    if model_dir:
        dirs += [Path(model_dir).expanduser(), Path(model_dir).expanduser() / pack]
    if _is_path_like(pack):
        dirs.append(Path(pack).expanduser())
    else:
        if os.environ.get("VIEWDIFF_MODELS"):
            env = Path(os.environ["VIEWDIFF_MODELS"]).expanduser()
            dirs += [env / pack, env]
        dirs += [REPO_ROOT / "weights" / "insightface" / pack, shared_dir() / "models" / pack,
                 insightface_home() / "models" / pack]
    return dirs


def resolve_pack(pack: str | None = DEFAULT_PACK, model_dir: str | Path | None = None) -> Path | None:
    """Local folder holding the .onnx files of an insightface pack, or None (not on this machine).

    Order: `model_dir` (the pack itself or a folder holding ``<pack>/``), or `pack` given as a folder
    path; then ``$VIEWDIFF_MODELS`` (``<pack>/`` in it, or itself), ``weights/insightface/<pack>``,
    ``../shared/models/<pack>``, ``~/.insightface/models/<pack>``. An explicit folder (`model_dir`
    or a path as `pack`) without .onnx files raises `ModelNotFoundError` instead of searching on.
    """
    pack = pack or DEFAULT_PACK
    dirs = pack_search_dirs(pack, model_dir)
    for d in dirs:
        if _has_onnx(d):
            return d
    if model_dir or _is_path_like(pack):
        where = " nor ".join(str(d) for d in dirs[:2 if model_dir else 1])
        raise ModelNotFoundError(
            f"no .onnx model files in {where}: put an insightface pack there (e.g. buffalo_l: "
            "det_10g.onnx, w600k_r50.onnx, 1k3d68.onnx ...), or use backend='dlib', which runs offline")
    return None


def downloads_allowed(allow_download: bool | None = None) -> bool:
    """`allow_download`, else False when ``$VIEWDIFF_OFFLINE`` is set (1/true/yes) or under pytest."""
    if allow_download is not None:
        return bool(allow_download)
    if os.environ.get("VIEWDIFF_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    return "PYTEST_CURRENT_TEST" not in os.environ


def download_pack(pack: str) -> Path:
    """insightface's own download of `pack` into ``~/.insightface/models/<pack>``; the folder with its .onnx."""
    from insightface.utils import storage
    root = insightface_home()
    target = root / "models" / pack
    try:   # insightface skips the download when the folder exists, even empty (an interrupted download)
        folder = Path(storage.download("models", pack, force=target.is_dir() and not _has_onnx(target),
                                       root=str(root)))
    except Exception as e:  # network, HTTP or zip errors
        raise ModelNotFoundError(
            f"downloading the insightface pack {pack!r} into {target} failed ({type(e).__name__}: {e}). "
            f"Without internet, copy the pack's .onnx files to weights/insightface/{pack}/ or set "
            "VIEWDIFF_MODELS to a folder holding it; or use backend='dlib', which runs offline") from e
    for d in (folder, folder / pack):   # some zips hold a folder named after the pack
        if _has_onnx(d):
            return d
    raise ModelNotFoundError(f"the download of the insightface pack {pack!r} left no .onnx files in {folder}")


def _ctx_id(providers: list[str]) -> int:
    """insightface's ctx_id: 0 (keep the session's providers, CUDA) or -1 (CPU only)."""
    return 0 if "CUDAExecutionProvider" in providers else -1


def onnx_providers(providers=None) -> list[str]:
    """CUDA first when onnxruntime offers it, else CPU."""
    if providers:
        return list(providers)
    import onnxruntime
    avail = onnxruntime.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in avail]


# ----------------------------------------------------------------------------- images

def load_image(image) -> np.ndarray:
    """Any supported input -> RGB uint8 [H, W, 3] (contiguous).

    `image`: path (str / Path), bytes / bytearray / memoryview, a binary file object, a PIL image, or
    a numpy array [H, W], [H, W, 1], [H, W, 2] (grey + alpha), [H, W, 3] RGB, [H, W, 4] RGBA of
    uint8, uint16 (scaled to 8 bits), bool, other integers (clipped to 0..255) or floats (in [0, 1],
    or 0..255 when larger values occur). Raises `ImageReadError`, `ImageTooLargeError`.
    """
    from PIL import Image
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if path.is_dir():
            raise ImageReadError(f"{path} is a folder, not an image file")
        try:
            image = path.read_bytes()
        except OSError as e:
            raise ImageReadError(f"cannot read image file {path}: {e.strerror or e}") from e
        if not image:
            raise ImageReadError(f"the image file {path} is empty (0 bytes): use a JPEG or PNG photo")
    elif hasattr(image, "read") and not isinstance(image, np.ndarray):
        image = image.read()
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _decode(bytes(image))
    if isinstance(image, Image.Image):
        _check_size(*image.size)
        return _pil_to_rgb(image)
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image)
    raise ImageReadError(f"unsupported image type {type(image).__name__}: give a file path, bytes, "
                         "a PIL image or a numpy array")


def _too_large(w: int, h: int) -> str:
    return (f"the image is {w}x{h} = {w * h / 1e6:.0f} megapixels, above the {MAX_PIXELS / 1e6:.0f} MP "
            "limit (a guard against decompression bombs): resize it (e.g. to 4000 px on the long side) "
            "and try again")


def _check_size(w: int, h: int) -> None:
    if w * h > MAX_PIXELS:
        raise ImageTooLargeError(_too_large(w, h))


def _decode(data: bytes) -> np.ndarray:
    """Encoded image bytes -> RGB uint8; the size is checked from the header before decoding."""
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
            return _decode_cv2(data)
        _check_size(*im.size)
        try:
            im.load()
        except Exception as e:  # truncated files, bad compressed data
            raise ImageReadError(f"the {im.format or 'image'} file is truncated or corrupt ({e}): "
                                 "use another copy of the photo") from e
        return _pil_to_rgb(im)


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


# ----------------------------------------------------------------------------- pose

def _load_meanshape() -> np.ndarray:
    """insightface's 68-point 3D mean face [68, 3] (x right, y down, z towards the camera)."""
    import insightface
    path = Path(insightface.__file__).parent / "data/objects/meanshape_68.pkl"
    with open(path, "rb") as f:
        return np.asarray(pickle.load(f), np.float64)


def _template_5(meanshape: np.ndarray) -> np.ndarray:
    """[5, 3] ArcFace 2D layout + meanshape depth, x right, y up, z towards camera, max |.| = 1."""
    from insightface.utils.face_align import arcface_dst
    ms5 = np.stack([meanshape[36:42].mean(0), meanshape[42:48].mean(0), meanshape[30],
                    meanshape[48], meanshape[54]])
    a = arcface_dst.astype(np.float64)
    scale = np.linalg.norm(ms5[1, :2] - ms5[0, :2]) / np.linalg.norm(a[1] - a[0])
    xy = (a - a.mean(0)) * scale
    t = np.c_[xy[:, 0], -xy[:, 1], ms5[:, 2] - ms5[:, 2].mean()]
    return t / np.abs(t).max()


MEANSHAPE_68 = _load_meanshape()
TEMPLATE_5 = _template_5(MEANSHAPE_68)
_FLIP = np.diag([1.0, -1.0, -1.0])   # face frame (y up, z to camera) <-> OpenCV camera (y down, z away)


def _solve_pose(obj_face: np.ndarray, pts: np.ndarray, bbox: np.ndarray) -> np.ndarray:
    """Rotation [3, 3] (face frame -> face frame, posed) from 2D points [N, 2] and 3D points [N, 3].

    Near-orthographic pinhole camera: focal length 25x the face box width, centred on the box
    (on Pointing'04 this beat focal lengths tied to the image size).
    """
    w = max(float(bbox[2] - bbox[0]), 1.0)
    f = 25.0 * w
    cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
    k = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]], np.float64)
    obj = (obj_face @ _FLIP).astype(np.float64)
    pts = np.ascontiguousarray(pts, np.float64)
    ok, rv, tv = cv2.solvePnP(obj, pts, k, None, flags=cv2.SOLVEPNP_EPNP)
    if not ok:
        rv, tv = np.zeros((3, 1)), np.array([[0.0], [0.0], [f / w * 2]])
    ok, rv, tv = cv2.solvePnP(obj, pts, k, None, rv, tv, True, cv2.SOLVEPNP_ITERATIVE)
    r_cam, _ = cv2.Rodrigues(rv)
    return _FLIP @ r_cam @ _FLIP


def rotation_to_angles(r: np.ndarray) -> np.ndarray:
    """Face-frame rotation [3, 3] -> (yaw, pitch, roll) degrees in the Pointing'04 sign convention."""
    (rx, ry, rz), *_ = cv2.RQDecomp3x3(_FLIP @ r @ _FLIP)
    return np.array([ry, -rx, rz], np.float32)


def angles_to_rotation(angles) -> np.ndarray:
    """(yaw, pitch, roll) degrees -> face-frame rotation [3, 3] (inverse of `rotation_to_angles`)."""
    yaw, pitch, roll = np.deg2rad(np.asarray(angles, np.float64))
    rx, ry, rz = -pitch, yaw, roll
    mx = np.array([[1, 0, 0], [0, np.cos(rx), -np.sin(rx)], [0, np.sin(rx), np.cos(rx)]])
    my = np.array([[np.cos(ry), 0, np.sin(ry)], [0, 1, 0], [-np.sin(ry), 0, np.cos(ry)]])
    mz = np.array([[np.cos(rz), -np.sin(rz), 0], [np.sin(rz), np.cos(rz), 0], [0, 0, 1]])
    return _FLIP @ (mz @ my @ mx) @ _FLIP


def estimate_pose(keypoints: np.ndarray | None, landmarks_68: np.ndarray | None,
                  bbox: np.ndarray) -> tuple[np.ndarray, str]:
    """(yaw, pitch, roll) [3] and its source: ``pnp5`` from 5 keypoints, else ``pnp68``."""
    if keypoints is not None:
        return rotation_to_angles(_solve_pose(TEMPLATE_5, keypoints, bbox)), "pnp5"
    ms = MEANSHAPE_68 * np.array([1.0, -1.0, 1.0])   # to the face frame (y up)
    return rotation_to_angles(_solve_pose(ms, landmarks_68, bbox)), "pnp68"


def insightface_pose_to_angles(pose) -> np.ndarray:
    """insightface's ``face.pose`` (pitch, yaw, roll from its 3D-landmark model) -> our (yaw, pitch, roll).

    insightface fits its landmarks to ``meanshape_68`` (x right, y down) with `P2sRt` and
    `matrix2angle`; in our convention that is yaw = -its yaw, pitch = its pitch, roll = its roll
    (checked in tests by posing the mean shape and running insightface's own fit).
    """
    p_pitch, p_yaw, p_roll = (float(v) for v in pose)
    return np.array([-p_yaw, p_pitch, p_roll], np.float32)


def keypoints_3d_from_pose(angles) -> np.ndarray:
    """`TEMPLATE_5` rotated by (yaw, pitch, roll): [5, 3] float32."""
    return (TEMPLATE_5 @ angles_to_rotation(angles).T).astype(np.float32)


# ----------------------------------------------------------------------------- detectors

class ScrfdDetector:
    """SCRFD (insightface model_zoo) boxes + 5 keypoints; input size adapts to the image."""

    def __init__(self, model, det_size: int = 640, name: str = "scrfd", ctx_id: int = -1):
        self.model, self.det_size, self.name = model, det_size, name
        # ctx_id < 0 makes insightface pin the session to the CPU; >= 0 keeps its providers (CUDA)
        model.prepare(ctx_id, input_size=(det_size, det_size), det_thresh=0.5)

    @classmethod
    def from_file(cls, path: Path, det_size: int = 640, providers=None) -> "ScrfdDetector":
        from insightface.model_zoo import model_zoo
        import onnxruntime
        providers = onnx_providers(providers)
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = int(os.environ.get("VIEWDIFF_ORT_THREADS", "0"))
        try:
            model = model_zoo.get_model(str(path), providers=providers, sess_options=opts)
        except Exception as e:
            raise ModelNotFoundError(f"cannot load the SCRFD detector {path} ({type(e).__name__}: {e}): "
                                     "replace the file (see ../shared/models/README.md) or remove it "
                                     "to use dlib's own detectors") from e
        if model is None:
            raise ModelNotFoundError(f"{path} is not a face detector insightface recognises")
        return cls(model, det_size, f"scrfd:{Path(path).name}", _ctx_id(providers))

    def __call__(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """-> boxes [N, 5] (x1, y1, x2, y2, score), keypoints [N, 5, 2]."""
        # No upsampling: SCRFD misses faces that become larger than its biggest anchors.
        side = int(np.clip(np.ceil(max(bgr.shape[:2]) / 32) * 32, 160, self.det_size))
        boxes, kps = self.model.detect(bgr, input_size=(side, side))
        return boxes, kps


class DlibDetector:
    """dlib HOG, then the CNN (mmod) detector on a downscaled copy when HOG finds nothing."""

    name = "dlib_hog+cnn"

    def __init__(self, model_dir: Path, cnn_max_side: int = 400):
        import dlib
        self.hog = dlib.get_frontal_face_detector()
        self.cnn = dlib.cnn_face_detection_model_v1(str(model_dir / "mmod_human_face_detector.dat"))
        self.cnn_max_side = cnn_max_side

    def __call__(self, bgr: np.ndarray) -> tuple[np.ndarray, None]:
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        dets, scores, _ = self.hog.run(rgb, 1, 0.0)
        rects = [(d, s) for d, s in zip(dets, scores)]
        scale = 1.0
        if not rects:
            scale = min(1.0, self.cnn_max_side / max(rgb.shape[:2]))
            small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else rgb
            rects = [(d.rect, d.confidence) for d in self.cnn(small, 1)]
        boxes = np.array([[r.left() / scale, r.top() / scale, r.right() / scale, r.bottom() / scale,
                           float(s)] for r, s in rects], np.float32).reshape(-1, 5)
        return boxes, None


# ----------------------------------------------------------------------------- backends

class DlibBackend:
    """SCRFD or dlib detection + dlib 5/68-point landmarks + 128-d dlib ResNet descriptor."""

    name = "dlib"
    embedding_dim = 128

    def __init__(self, det_size: int = 640, providers=None):
        import dlib
        self.dlib = dlib
        d = dlib_model_dir()
        files = {k: d / f for k, f in [("sp5", "shape_predictor_5_face_landmarks.dat"),
                                       ("sp68", "shape_predictor_68_face_landmarks.dat"),
                                       ("rec", "dlib_face_recognition_resnet_model_v1.dat"),
                                       ("cnn", "mmod_human_face_detector.dat")]}
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            raise ModelNotFoundError(f"dlib model files missing: {missing}; "
                                     "reinstall with pip install --force-reinstall face_recognition_models==0.3.0")
        self.sp5 = dlib.shape_predictor(str(files["sp5"]))
        self.sp68 = dlib.shape_predictor(str(files["sp68"]))
        self.rec = dlib.face_recognition_model_v1(str(files["rec"]))
        scrfd = find_scrfd()
        self.detector = ScrfdDetector.from_file(scrfd, det_size, providers) if scrfd else DlibDetector(d)
        self.detector_path = str(scrfd) if scrfd else str(files["cnn"])

    def describe(self) -> dict:
        return {"backend": "dlib", "embedding_dim": 128, "detector": self.detector.name,
                "detector_file": self.detector_path, "landmarks": "dlib shape_predictor_5 + 68",
                "recognition": "dlib_face_recognition_resnet_model_v1 (face_recognition_models 0.3.0)"}

    def detect(self, bgr: np.ndarray):
        return self.detector(bgr)

    def describe_face(self, rgb: np.ndarray, box: np.ndarray, kps: np.ndarray | None) -> _Face:
        x1, y1, x2, y2 = (int(round(v)) for v in box[:4])
        rect = self.dlib.rectangle(x1, y1, x2, y2)
        s5 = self.sp5(rgb, rect)
        lm68 = np.array([[p.x, p.y] for p in self.sp68(rgb, rect).parts()], np.float32)
        emb = np.asarray(self.rec.compute_face_descriptor(rgb, s5), np.float32)
        from_detector = kps is not None
        if not from_detector:   # eye centres, nose tip, mouth corners from the 68 landmarks
            kps = np.stack([lm68[36:42].mean(0), lm68[42:48].mean(0), lm68[30], lm68[48], lm68[54]])
        return _Face(bbox=box[:4].astype(np.float32), det_score=float(box[4]), keypoints=kps.astype(np.float32),
                     embedding=emb, aligned_crop=np.asarray(self.dlib.get_face_chip(rgb, s5, size=112)),
                     landmarks_68=lm68, keypoints_from_detector=from_detector)


class InsightFaceBackend:
    """An insightface model pack (detection + ArcFace recognition [+ 3D landmarks]), 512-d."""

    name = "insightface"

    def __init__(self, pack: str | None = None, model_dir=None, det_size: int = 640, providers=None,
                 allow_download: bool | None = None):
        from insightface.app import FaceAnalysis
        self.pack = pack or DEFAULT_PACK
        local = resolve_pack(self.pack, model_dir)
        if local is None:
            searched = ", ".join(str(d) for d in pack_search_dirs(self.pack, model_dir))
            if not downloads_allowed(allow_download):
                raise ModelNotFoundError(
                    f"insightface pack {self.pack!r} not found (looked in {searched}) and downloads are "
                    "off here (offline, VIEWDIFF_OFFLINE=1 or tests). Fix: copy the pack's .onnx files to "
                    f"weights/insightface/{self.pack}/ or set VIEWDIFF_MODELS to a folder holding "
                    f"{self.pack}/, or use backend='dlib', which runs offline")
            local = download_pack(self.pack)
        self.providers = onnx_providers(providers)
        try:
            self.app = FaceAnalysis(name=str(local), providers=self.providers,
                                    allowed_modules=["detection", "recognition", "landmark_3d_68"])
        except AssertionError as e:   # insightface asserts that a detection model was found
            raise ModelNotFoundError(
                f"the insightface pack folder {local} has no face-detection model (det_*.onnx): put a "
                "full pack there, or use backend='dlib', which runs offline") from e
        except Exception as e:  # corrupt / unsupported .onnx files
            raise ModelNotFoundError(
                f"cannot load the insightface pack in {local} ({type(e).__name__}: {e}): replace its "
                ".onnx files with a complete copy of the pack, or use backend='dlib'") from e
        self.model_dir = self.app.model_dir
        if "recognition" not in self.app.models:
            raise ModelNotFoundError(
                f"the insightface pack folder {self.model_dir} has no recognition model (found: "
                f"{sorted(self.app.models)}). Put a full pack there (e.g. buffalo_l with w600k_r50.onnx, "
                "from insightface's model zoo), set VIEWDIFF_MODELS to a folder holding it, or use "
                "backend='dlib', which runs offline")
        ctx_id = _ctx_id(self.providers)
        self.app.prepare(ctx_id=ctx_id, det_size=(det_size, det_size))
        self.detector = ScrfdDetector(self.app.det_model, det_size, "insightface:detection", ctx_id)
        self.embedding_dim = int(self.app.models["recognition"].output_shape[1])

    def describe(self) -> dict:
        return {"backend": "insightface", "pack": self.pack, "model_dir": self.model_dir,
                "embedding_dim": self.embedding_dim, "tasks": sorted(self.app.models),
                "providers": self.providers}

    def detect(self, bgr: np.ndarray):
        return self.detector(bgr)

    def describe_face(self, rgb: np.ndarray, box: np.ndarray, kps: np.ndarray) -> _Face:
        from insightface.app.common import Face
        from insightface.utils.face_align import norm_crop
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        face = Face(bbox=box[:4], kps=kps, det_score=box[4])
        for task, model in self.app.models.items():
            if task != "detection":
                model.get(bgr, face)
        pose = None if face.get("pose") is None else insightface_pose_to_angles(face["pose"])
        return _Face(bbox=box[:4].astype(np.float32), det_score=float(box[4]), keypoints=kps.astype(np.float32),
                     embedding=np.asarray(face.embedding, np.float32),
                     aligned_crop=norm_crop(bgr, kps, 112)[..., ::-1].copy(), pose=pose)


# ----------------------------------------------------------------------------- analyzer

class FaceAnalyzer:
    """Analyse photos with one backend: ``analyze(image) -> FaceRecord`` of the largest face.

    backend: ``dlib`` (offline, 128-d), ``insightface`` (a model pack, 512-d; see `resolve_pack`), or
    ``auto``: insightface when a pack is on this machine (never downloads), else dlib.
    allow_download: whether the insightface backend may download a missing pack (default: yes,
    unless ``$VIEWDIFF_OFFLINE`` is set or under pytest).
    """

    def __init__(self, backend: str = "auto", pack: str | None = None, model_dir=None,
                 det_size: int = 640, providers=None, allow_download: bool | None = None):
        if backend not in ("auto", "dlib", "insightface"):
            raise ValueError(f"backend must be 'auto', 'dlib' or 'insightface', not {backend!r}")
        self.fallback_reason: str | None = None   # why "auto" did not pick insightface
        impl = None
        if backend == "auto":
            try:
                if resolve_pack(pack or DEFAULT_PACK, model_dir) is not None:
                    impl = InsightFaceBackend(pack, model_dir, det_size, providers, allow_download=False)
                else:
                    self.fallback_reason = f"no insightface pack {pack or DEFAULT_PACK!r} on this machine"
            except ModelNotFoundError as e:
                self.fallback_reason = str(e)
            backend = "insightface" if impl is not None else "dlib"
        if impl is None:
            impl = (DlibBackend(det_size, providers) if backend == "dlib" else
                    InsightFaceBackend(pack, model_dir, det_size, providers, allow_download))
        self._impl = impl
        self.backend = backend
        self.embedding_dim = self._impl.embedding_dim
        self.calls = 0   # number of analysed images (for cache tests)

    load_image = staticmethod(load_image)

    def describe(self) -> dict:
        """What is loaded (backend, models, detector), for model cards and caches."""
        return self._impl.describe()

    def analyze(self, image) -> FaceRecord:
        """The largest face of `image`; `num_faces` and `warning` tell about the others."""
        return self._run(image, largest_only=True)[0]

    def analyze_all(self, image) -> list[FaceRecord]:
        """All faces of `image`, largest first."""
        return self._run(image, largest_only=False)

    def _run(self, image, largest_only: bool) -> list[FaceRecord]:
        self.calls += 1
        rgb = load_image(image)
        h, w = rgb.shape[:2]
        scale = min(1.0, WORK_MAX_SIDE / max(h, w))
        work = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else rgb
        pad = 0
        boxes, kps = self._impl.detect(np.ascontiguousarray(work[..., ::-1]))
        if len(boxes) == 0:   # faces that fill the frame: retry with a border of half the size
            pad = max(work.shape[:2]) // 2
            work = cv2.copyMakeBorder(work, pad, pad, pad, pad, cv2.BORDER_CONSTANT)
            boxes, kps = self._impl.detect(np.ascontiguousarray(work[..., ::-1]))
        if len(boxes) == 0:
            raise NoFaceError(f"no face found in the {w}x{h} image: use a photo where the face is "
                              f"visible, not turned away, and at least ~{TINY_FACE_PX} pixels wide")
        order = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), kind="stable")
        n = len(order)
        warning = (f"{n} faces found; the largest is used" if n > 1 and largest_only else None)
        records = []
        for i in order[:1] if largest_only else order:
            face_kps = None if kps is None else kps[i]
            if scale < 1:
                face, to_orig = self._describe_full_res(rgb, boxes[i], face_kps, pad, scale)
            else:   # work is the image itself (maybe with a border)
                face, to_orig = self._impl.describe_face(work, boxes[i], face_kps), (1.0, -pad, -pad)
            records.append(self._record(face, to_orig, (w, h), n, warning))
        return records

    def _describe_full_res(self, rgb: np.ndarray, box: np.ndarray, kps: np.ndarray | None, pad: int,
                           scale: float) -> tuple[_Face, tuple[float, float, float]]:
        """Describe a face found on the downscaled copy on a full-resolution region of `rgb`.

        -> (face in region coordinates, (s, ox, oy): original = region / s + (ox, oy)).
        """
        h, w = rgb.shape[:2]
        box_o = np.r_[(box[:4] - pad) / scale, box[4]].astype(np.float32)
        kps_o = None if kps is None else ((kps - pad) / scale).astype(np.float32)
        side = float(max(box_o[2] - box_o[0], box_o[3] - box_o[1], 1.0))
        cx, cy = (box_o[0] + box_o[2]) / 2, (box_o[1] + box_o[3]) / 2
        half = 1.5 * side   # the face plus a margin of one face size on each side
        x0, y0 = int(np.floor(cx - half)), int(np.floor(cy - half))
        x1, y1 = int(np.ceil(cx + half)), int(np.ceil(cy + half))
        region = rgb[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
        region = cv2.copyMakeBorder(region, max(0, -y0), max(0, y1 - h), max(0, -x0), max(0, x1 - w),
                                    cv2.BORDER_CONSTANT)
        s = min(1.0, DESCRIBE_MAX_FACE / side)
        if s < 1:
            region = cv2.resize(region, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        offset = np.array([x0, y0], np.float32)
        box_r = np.r_[(box_o[:4] - np.tile(offset, 2)) * s, box_o[4]].astype(np.float32)
        kps_r = None if kps_o is None else ((kps_o - offset) * s).astype(np.float32)
        face = self._impl.describe_face(np.ascontiguousarray(region), box_r, kps_r)
        return face, (s, float(x0), float(y0))

    def _record(self, face: _Face, to_orig: tuple[float, float, float], size: tuple[int, int], n: int,
                warning: str | None) -> FaceRecord:
        if face.pose is not None:
            pose, source = face.pose, "landmark_3d_68"
        else:
            pose, source = estimate_pose(face.keypoints if face.keypoints_from_detector else None,
                                         face.landmarks_68, face.bbox)
        s, ox, oy = to_orig
        offset = np.array([ox, oy], np.float32)

        def orig(p):  # description-image pixels -> original-image pixels
            return (np.asarray(p, np.float32).reshape(-1, 2) / s + offset).reshape(np.shape(p)).astype(np.float32)
        bbox = np.clip(orig(face.bbox), 0, [size[0], size[1], size[0], size[1]]).astype(np.float32)
        side = min(bbox[2] - bbox[0], bbox[3] - bbox[1])
        if side < TINY_FACE_PX:
            msg = f"the face is only {side:.0f} px: results are unreliable below {TINY_FACE_PX} px"
            warning = f"{warning}; {msg}" if warning else msg
        emb = l2_normalize(face.embedding)
        return FaceRecord(
            bbox=bbox, det_score=face.det_score, keypoints=orig(face.keypoints),
            embedding=emb.astype(np.float32), pose=np.asarray(pose, np.float32), pose_source=source,
            keypoints_3d=keypoints_3d_from_pose(pose), aligned_crop=face.aligned_crop, num_faces=n,
            warning=warning, backend=self.backend,
            landmarks_68=None if face.landmarks_68 is None else orig(face.landmarks_68))
