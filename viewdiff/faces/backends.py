"""Face backends behind one small protocol (`FaceBackend`): detect faces, then describe each one.

Like insightface's ``FaceAnalysis``, a backend composes one model per kind (detector, landmarks,
recognition, optional 3D landmarks); `viewdiff.faces.analyzer.FaceAnalyzer` drives any of them.

- ``dlib`` (offline, public-domain models from ``face_recognition_models``): detection by SCRFD
  (ONNX, when a detector file is found) or else dlib HOG then dlib's CNN detector; dlib's 5-point
  shape predictor aligns the face for the 128-d ResNet descriptor and the 112x112 crop (measured on
  CFP: profile-to-frontal rank-1 0.88 with 5-point alignment vs 0.56 with 68-point); the 68-point
  predictor gives `landmarks_68`.
- ``insightface``: a model pack run by ``insightface.app.FaceAnalysis``: by default the shipped
  ``w600k_mbf`` (SCRFD det_2.5g + InsightFace's w600k_mbf, the 512-d recognition model of ``buffalo_s``),
  or an official pack (``buffalo_l``, 512-d) downloaded on request. Shipped packs are checked against
  their ``SHA256SUMS``. Faces are aligned by `arcface_crop` (insightface's ``norm_crop``).
- Each backend also embeds the horizontally mirrored face (``embedding_mirror``): the same person seen
  at the mirrored yaw, a second view for free.
- ``fingerprint``: the first 16 hex digits of the recognition model file's sha256. It names the
  embedding space: transformer weights are looked up by it, never by width alone.
- ``keypoints`` [5, 2] order: eye, eye, nose, mouth corner, mouth corner; "left" and "right" are
  the image's left and right.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from viewdiff.faces.detectors import DlibDetector, ScrfdDetector
from viewdiff.faces.errors import ModelNotFoundError
from viewdiff.faces.model_files import (DEFAULT_PACK, ctx_id, dlib_model_dir, download_pack, downloads_allowed,
                                        file_sha256, find_scrfd, onnx_providers, ort_session_options, pack_search_dirs,
                                        resolve_pack,
                                        verify_sha256)

FINGERPRINT_DIGITS = 16
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)   # insightface's arcface_dst


def arcface_crop(image: np.ndarray, kps: np.ndarray, size: int = 112) -> np.ndarray:
    """The ArcFace five-point alignment: image [H, W, 3], kps [5, 2] -> [size, size, 3] (same channel order).

    Exactly insightface's ``face_align.norm_crop`` (a least-squares similarity onto its template, then
    ``cv2.warpAffine`` with a black border), through scikit-image's current API: insightface's call of
    the deprecated ``SimilarityTransform.estimate`` prints a FutureWarning for every face.
    """
    import cv2
    from skimage.transform import SimilarityTransform
    if size % 112:
        raise ValueError(f"ArcFace crops are 112 px or a multiple of it, not {size}")
    tform = SimilarityTransform.from_estimate(np.asarray(kps, np.float64), ARCFACE_TEMPLATE * (size / 112.0))
    return cv2.warpAffine(image, tform.params[:2], (size, size), borderValue=0.0)


@dataclass
class DetectedFace:
    """One face as a backend describes it, in the coordinates of the image it was given."""
    bbox: np.ndarray              # [4]
    det_score: float
    keypoints: np.ndarray         # [5, 2]
    embedding: np.ndarray = None  # [D]
    embedding_mirror: np.ndarray = None   # [D] of the horizontally mirrored aligned face
    aligned_crop: np.ndarray = None
    landmarks_68: np.ndarray | None = None
    feature_map: np.ndarray | None = None    # [C, 7, 7] the embedder's last map (`viewdiff.faces.feature_map`)
    feature_map_mirror: np.ndarray | None = None   # [C, 7, 7] the mirrored face's, flipped back to the photo's cells
    pose: np.ndarray | None = None           # [3] yaw, pitch, roll, set by the analyzer's head-pose stage
    pose_features: np.ndarray | None = None  # [7] the raw estimates it fused
    surface: object | None = None            # viewdiff.faces.face_mesh.FaceSurface, set by the analyzer's mesh stage


class FaceBackend(Protocol):
    """What `FaceAnalyzer` needs from a backend."""

    name: str
    embedding_dim: int
    fingerprint: str

    def describe(self) -> dict:
        """What is loaded (models, files, providers), for model cards and cache keys."""

    def detect(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """bgr [H, W, 3] -> boxes [N, 5] (x1, y1, x2, y2, score), keypoints [N, 5, 2] or None."""

    def describe_face(self, rgb: np.ndarray, box: np.ndarray, kps: np.ndarray | None) -> DetectedFace:
        """Landmarks, embedding and aligned crop of the face in `box` [5] of rgb [H, W, 3]."""


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
        self.fingerprint = file_sha256(files["rec"])[:FINGERPRINT_DIGITS]

    def describe(self) -> dict:
        return {"backend": "dlib", "embedding_dim": 128, "fingerprint": self.fingerprint, "detector": self.detector.name,
                "detector_file": self.detector_path, "landmarks": "dlib shape_predictor_5 + 68",
                "recognition": "dlib_face_recognition_resnet_model_v1 (face_recognition_models 0.3.0)"}

    def detect(self, bgr: np.ndarray):
        return self.detector(bgr)

    def describe_face(self, rgb: np.ndarray, box: np.ndarray, kps: np.ndarray | None) -> DetectedFace:
        x1, y1, x2, y2 = (int(round(v)) for v in box[:4])
        rect = self.dlib.rectangle(x1, y1, x2, y2)
        s5 = self.sp5(rgb, rect)
        lm68 = np.array([[p.x, p.y] for p in self.sp68(rgb, rect).parts()], np.float32)
        chip = np.asarray(self.dlib.get_face_chip(rgb, s5, size=150, padding=0.25))   # the descriptor's own input
        emb, mirror = (np.asarray(self.rec.compute_face_descriptor(np.ascontiguousarray(c)), np.float32)
                       for c in (chip, chip[:, ::-1]))
        if kps is None:   # eye centres, nose tip, mouth corners from the 68 landmarks
            kps = np.stack([lm68[36:42].mean(0), lm68[42:48].mean(0), lm68[30], lm68[48], lm68[54]])
        return DetectedFace(bbox=box[:4].astype(np.float32), det_score=float(box[4]), keypoints=kps.astype(np.float32),
                            embedding=emb, embedding_mirror=mirror, landmarks_68=lm68,
                            aligned_crop=np.asarray(self.dlib.get_face_chip(rgb, s5, size=112)))


class InsightFaceBackend:
    """An insightface model pack (detection + ArcFace recognition): the shipped w600k_mbf one, or an official pack."""

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
        verify_sha256(local)
        self.providers = onnx_providers(providers)
        try:
            self.app = FaceAnalysis(name=str(local), providers=self.providers, sess_options=ort_session_options(),
                                    allowed_modules=["detection", "recognition"])
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
        context = ctx_id(self.providers)
        self.app.prepare(ctx_id=context, det_size=(det_size, det_size))
        self.detector = ScrfdDetector(self.app.det_model, det_size, "insightface:detection", context)
        self.recognition = self.app.models["recognition"]
        self.embedding_dim = int(self.recognition.output_shape[1])
        self.fingerprint = file_sha256(self.recognition.model_file)[:FINGERPRINT_DIGITS]
        self.maps = feature_map_model(self.recognition.model_file, self.providers)

    def describe(self) -> dict:
        return {"backend": "insightface", "pack": self.pack, "embedding_dim": self.embedding_dim,
                "fingerprint": self.fingerprint, "models": {task: Path(m.model_file).name
                                                             for task, m in sorted(self.app.models.items())},
                "providers": self.providers}

    def detect(self, bgr: np.ndarray):
        return self.detector(bgr)

    def describe_face(self, rgb: np.ndarray, box: np.ndarray, kps: np.ndarray) -> DetectedFace:
        aligned = arcface_crop(np.ascontiguousarray(rgb[..., ::-1]), kps, self.recognition.input_size[0])   # BGR
        face = DetectedFace(bbox=box[:4].astype(np.float32), det_score=float(box[4]), keypoints=kps.astype(np.float32),
                            aligned_crop=np.ascontiguousarray(aligned[..., ::-1]))
        if self.maps is None:   # insightface takes BGR
            emb, mirror = self.recognition.get_feat([aligned, np.ascontiguousarray(aligned[:, ::-1])])
        else:   # the same ONNX, with its 7x7 map exposed: one run gives both
            (emb,), (mirror,), (face.feature_map,), (face.feature_map_mirror,) = \
                self.maps.run_with_mirror(face.aligned_crop[None])
        face.embedding, face.embedding_mirror = np.asarray(emb, np.float32), np.asarray(mirror, np.float32)
        return face


def feature_map_model(model_file, providers=None):
    """The recognition model with its 7x7 map exposed (`FeatureMapModel`), or None when it has none."""
    from viewdiff.faces.feature_map import FeatureMapModel, NoFeatureMapError
    try:
        return FeatureMapModel(model_file, providers)
    except NoFeatureMapError:
        return None
