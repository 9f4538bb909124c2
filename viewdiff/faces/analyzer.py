"""Face analysis: detection, 5 keypoints, embedding, aligned crop and head pose of a photo -> `FaceRecord`.

`FaceAnalyzer` composes one class per model kind, like insightface's thin ``FaceAnalysis``: a backend
(`viewdiff.faces.backends`: the shipped ``insightface`` pack by default, 512-d w600k_mbf; an official pack;
or ``dlib``, offline and licence-clean) detects and embeds, and `viewdiff.faces.head_pose` estimates the
head pose on the same image, and `viewdiff.faces.face_mesh.FaceMesh` (MediaPipe Face Mesh, for every backend:
it needs only the image and the 5 keypoints) measures the face's 3D surface, whose 5 keypoints are the record's
``keypoints_3d``. It decodes the image (`viewdiff.faces.images`), detects, describes each
face on the best-resolution region, and returns coordinates in original-image pixels.

- Every failure is a `FaceAnalysisError` with a message meant for the user (`viewdiff.faces.errors`):
  `ImageReadError`, `ImageTooLargeError`, `NoFaceError`, `ModelNotFoundError` (a model file or pack
  is missing; the message says where it looked and how to fix it).
- JPEGs of at least twice `WORK_MAX_SIDE` are decoded at 1/2, 1/4 or 1/8 size (libjpeg's DCT scaling,
  never below `WORK_MAX_SIDE`; `viewdiff.faces.images.load_image_scaled`): a 12 MP photo costs a quarter
  of its full decode; smaller images are decoded and analysed exactly as before.
- Images larger than `WORK_MAX_SIDE` are downscaled for detection only; each face is then
  described (landmarks, embedding, crop) on a full-resolution region of the decoded image, and every
  coordinate is returned in original-image pixels. Faces that fill the frame are found by retrying
  detection with a border. Several faces: `analyze` returns the largest (box area) with
  ``num_faces`` and a ``warning``; faces under `TINY_FACE_PX` get a warning too.
"""
from __future__ import annotations

import cv2
import numpy as np

from viewdiff.embeddings import l2_normalize
from viewdiff.faces.backends import ARCFACE_TEMPLATE, DetectedFace, DlibBackend, FaceBackend, InsightFaceBackend
from viewdiff.faces.detectors import ScrfdDetector
from viewdiff.faces.errors import ModelNotFoundError, NoFaceError
from viewdiff.faces.face_mesh import FaceMesh
from viewdiff.faces.head_pose import POSE_SOURCE, HeadPoseEstimator
from viewdiff.faces.images import load_image, load_image_scaled
from viewdiff.faces.model_files import DEFAULT_PACK, resolve_pack
from viewdiff.faces.records import FaceRecord

WORK_MAX_SIDE = 1280             # bigger images are downscaled for detection, coordinates mapped back
DESCRIBE_MAX_FACE = 512          # faces of huge images are described at most this big (pixels)
TINY_FACE_PX = 40                # smaller boxes are accepted with a warning
DEFAULT_DET_SIZE = 640           # the detector's largest input side (what the extraction cache was made with)


class FaceAnalyzer:
    """Analyse photos with one backend: ``analyze(image) -> FaceRecord`` of the largest face.

    backend: ``insightface`` (a model pack, see `resolve_pack`; `pack` defaults to the shipped
    ``w600k_mbf``), ``dlib`` (offline, licence-clean, 128-d), or ``auto``: insightface when the
    pack is on this machine (never downloads), else dlib.
    allow_download: whether the insightface backend may download a missing pack (default: yes,
    unless ``$VIEWDIFF_OFFLINE`` is set or under pytest).
    det_size: the detector's largest input side. `DEFAULT_DET_SIZE` for records that training and
    evaluation use; `describe` names any other value (their cost: ``benchmarks/bench_analysis.py``).
    """

    def __init__(self, backend: str = "auto", pack: str | None = None, model_dir=None,
                 det_size: int = DEFAULT_DET_SIZE, providers=None, allow_download: bool | None = None):
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
        self._impl: FaceBackend = impl
        self.head_pose = HeadPoseEstimator(providers=providers)
        self.mesh = FaceMesh(providers=providers)   # the measured surface (ModelNotFoundError with the fix if damaged)
        self.backend = backend
        self.embedding_dim = self._impl.embedding_dim
        self.fingerprint = self._impl.fingerprint
        self.det_size = det_size
        self.calls = 0   # number of analysed images (for cache tests)

    @staticmethod
    def load_image(image) -> np.ndarray:
        """The photo as `analyze` decodes it: `load_image`, big JPEGs at reduced size (module doc). Give the
        array to `analyze` and the record's coordinates are in its pixels (what the demo draws on)."""
        return load_image(image, min_side=WORK_MAX_SIDE)

    @property
    def feature_maps(self):
        """The embedder's `viewdiff.faces.feature_map.FeatureMapModel` (7x7 map + affine head), or None."""
        return getattr(self._impl, "maps", None)

    def warm_up(self) -> None:
        """Run every model and first-call path once on a blank photo, so that the first visitor does not pay for
        them: the JPEG decoder, the detector, the alignment (scikit-image), the embedder, the head-pose
        models and the face mesh (each onnxruntime session's first run allocates). Computes nothing that stays;
        not counted in ``calls``."""
        import io

        from PIL import Image
        side = 640   # the detector's largest input: the first real photo runs at the same size
        jpeg = io.BytesIO()
        Image.new("RGB", (side, side), (128, 128, 128)).save(jpeg, "JPEG")
        rgb = load_image(jpeg.getvalue())
        self._impl.detect(np.ascontiguousarray(rgb[..., ::-1]))
        box = np.array([192, 160, 448, 480, 1.0], np.float32)   # a face-sized box, ArcFace's keypoints in it
        kps = (ARCFACE_TEMPLATE * (box[2] - box[0]) / 112 + box[:2]).astype(np.float32)
        self._describe(rgb, box, kps)

    def describe(self) -> dict:
        """What is loaded (backend, models, detector, head pose), for model cards and caches."""
        described = {**self._impl.describe(), **self.head_pose.describe()}
        if self.det_size != DEFAULT_DET_SIZE:   # named only when not the default: the caches of default records stay valid
            described["det_size"] = self.det_size
        return described

    def detect(self, rgb: np.ndarray, det_size: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """The faces of an RGB array as the detector sees it (no downscaling, no border retry, any order): boxes
        [N, 5] (x1, y1, x2, y2, score) and keypoints [N, 5, 2] (None: a detector without keypoints), in rgb's
        pixels. det_size: the SCRFD input side for this call (default: the analyzer's; other detectors ignore it).
        With `describe_face`, the two halves of `analyze` for callers that find faces their own way (a tracker)."""
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        detector = getattr(self._impl, "detector", None)
        if det_size is not None and isinstance(detector, ScrfdDetector):
            return detector(bgr, det_size)
        return self._impl.detect(bgr)

    def describe_face(self, rgb: np.ndarray, box: np.ndarray, keypoints: np.ndarray | None,
                      num_faces: int = 1) -> FaceRecord:
        """The `FaceRecord` of one face of ``rgb`` found by `detect` (box [5], keypoints [5, 2]): embedding,
        mirror, maps, head pose, crop, as `analyze` describes it, coordinates in rgb's pixels."""
        h, w = rgb.shape[:2]
        face = self._describe(np.ascontiguousarray(rgb), np.asarray(box, np.float32),
                              None if keypoints is None else np.asarray(keypoints, np.float32))
        return self._record(face, (1.0, 0.0, 0.0), (w, h), num_faces, None)

    def analyze(self, image) -> FaceRecord:
        """The largest face of `image`; `num_faces` and `warning` tell about the others."""
        return self._run(image, largest_only=True)[0]

    def analyze_all(self, image) -> list[FaceRecord]:
        """All faces of `image`, largest first."""
        return self._run(image, largest_only=False)

    def _run(self, image, largest_only: bool) -> list[FaceRecord]:
        self.calls += 1
        rgb, factor = load_image_scaled(image, min_side=WORK_MAX_SIDE)   # factor: original px per decoded px
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
            raise NoFaceError(f"no face found in the {w * factor}x{h * factor} image: use a photo where the face is "
                              f"visible, not turned away, and at least ~{TINY_FACE_PX} pixels wide")
        order = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), kind="stable")
        n = len(order)
        warning = (f"{n} faces found; the largest is used" if n > 1 and largest_only else None)
        all_boxes = ((boxes[:, :4] - pad) / scale * factor).astype(np.float32)   # original pixels
        all_kps = (np.zeros((n, 5, 2)) if kps is None else (kps - pad) / scale * factor).astype(np.float32)
        records = []
        for i in order[:1] if largest_only else order:
            face_kps = None if kps is None else kps[i]
            if scale < 1:
                face, to_orig = self._describe_full_res(rgb, boxes[i], face_kps, pad, scale)
            else:   # work is the image itself (maybe with a border)
                face, to_orig = self._describe(work, boxes[i], face_kps), (1.0, -pad, -pad)
            s, ox, oy = to_orig   # decoded pixels -> original pixels
            record = self._record(face, (s / factor, ox * factor, oy * factor), (w * factor, h * factor), n, warning)
            others = order[order != i]
            record.other_boxes, record.other_keypoints = all_boxes[others], all_kps[others]
            records.append(record)
        return records

    def _describe_full_res(self, rgb: np.ndarray, box: np.ndarray, kps: np.ndarray | None, pad: int,
                           scale: float) -> tuple[DetectedFace, tuple[float, float, float]]:
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
        return self._describe(np.ascontiguousarray(region), box_r, kps_r), (s, float(x0), float(y0))

    def _describe(self, rgb: np.ndarray, box: np.ndarray, kps: np.ndarray | None) -> DetectedFace:
        """The backend's description of one face plus its head pose and measured surface, all on `rgb`."""
        face = self._impl.describe_face(rgb, box, kps)
        face.pose, face.pose_features = self.head_pose(np.ascontiguousarray(rgb[..., ::-1]), face.bbox, face.keypoints)
        face.surface = self.mesh.surface(rgb, face.keypoints)   # in the aligned crop's frame: no mapping back
        return face

    def _record(self, face: DetectedFace, to_orig: tuple[float, float, float], size: tuple[int, int], n: int,
                warning: str | None) -> FaceRecord:
        s, ox, oy = to_orig
        offset = np.array([ox, oy], np.float32)

        def orig(p):  # description-image pixels -> original-image pixels
            return (np.asarray(p, np.float32).reshape(-1, 2) / s + offset).reshape(np.shape(p)).astype(np.float32)
        bbox = np.clip(orig(face.bbox), 0, [size[0], size[1], size[0], size[1]]).astype(np.float32)
        side = min(bbox[2] - bbox[0], bbox[3] - bbox[1])
        if side < TINY_FACE_PX:
            msg = f"the face is only {side:.0f} px: results are unreliable below {TINY_FACE_PX} px"
            warning = f"{warning}; {msg}" if warning else msg
        return FaceRecord(
            bbox=bbox, det_score=face.det_score, keypoints=orig(face.keypoints),
            embedding=l2_normalize(face.embedding).astype(np.float32),
            embedding_mirror=l2_normalize(face.embedding_mirror).astype(np.float32),
            source_pose=face.pose, pose_source=POSE_SOURCE, pose_features=face.pose_features,
            keypoints_3d=face.surface.keypoints_3d, surface=face.surface, aligned_crop=face.aligned_crop, num_faces=n,
            warning=warning, backend=self.backend, feature_map=face.feature_map,
            feature_map_mirror=face.feature_map_mirror,
            landmarks_68=None if face.landmarks_68 is None else orig(face.landmarks_68))
