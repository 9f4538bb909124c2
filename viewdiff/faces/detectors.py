"""Face detectors: SCRFD (ONNX, via insightface's model zoo) and dlib's HOG + CNN.

A detector is called with a BGR image ``[H, W, 3]`` and returns ``(boxes [N, 5], keypoints [N, 5, 2] | None)``
(x1, y1, x2, y2, score; keypoints None when the detector has none).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from viewdiff.faces.errors import ModelNotFoundError
from viewdiff.faces.model_files import ctx_id, onnx_providers, ort_session_options


class ScrfdDetector:
    """SCRFD (insightface model_zoo) boxes + 5 keypoints; input size adapts to the image."""

    def __init__(self, model, det_size: int = 640, name: str = "scrfd", ctx_id: int = -1):
        self.model, self.det_size, self.name = model, det_size, name
        # ctx_id < 0 makes insightface pin the session to the CPU; >= 0 keeps its providers (CUDA)
        model.prepare(ctx_id, input_size=(det_size, det_size), det_thresh=0.5)

    @classmethod
    def from_file(cls, path: Path, det_size: int = 640, providers=None) -> "ScrfdDetector":
        from insightface.model_zoo import model_zoo
        providers = onnx_providers(providers)
        try:
            model = model_zoo.get_model(str(path), providers=providers, sess_options=ort_session_options())
        except Exception as e:
            raise ModelNotFoundError(f"cannot load the SCRFD detector {path} ({type(e).__name__}: {e}): "
                                     "replace the file (see ../shared/models/README.md) or remove it "
                                     "to use dlib's own detectors") from e
        if model is None:
            raise ModelNotFoundError(f"{path} is not a face detector insightface recognises")
        return cls(model, det_size, f"scrfd:{Path(path).name}", ctx_id(providers))

    def __call__(self, bgr: np.ndarray, det_size: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """-> boxes [N, 5] (x1, y1, x2, y2, score), keypoints [N, 5, 2]. det_size: the largest input side for this
        call (default: the detector's); a smaller one is cheaper (quadratically) and less exact."""
        # No upsampling: SCRFD misses faces that become larger than its biggest anchors.
        side = int(np.clip(np.ceil(max(bgr.shape[:2]) / 32) * 32, 160, det_size or self.det_size))
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
