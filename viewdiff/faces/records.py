"""`FaceRecord`: what the face pipeline returns for one face of a photo."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FaceRecord:
    """One analysed face. Coordinates are pixels of the original image."""
    bbox: np.ndarray              # [4] x1, y1, x2, y2
    det_score: float
    keypoints: np.ndarray         # [5, 2]
    embedding: np.ndarray         # [D] float32, unit length
    embedding_mirror: np.ndarray  # [D] float32, unit length: the horizontally mirrored face (seen at yaw -yaw)
    source_pose: np.ndarray       # [3] the photo's head pose: yaw, pitch, roll (degrees, see faces.geometry)
    pose_source: str              # how source_pose was estimated (faces.head_pose.POSE_SOURCE)
    pose_features: np.ndarray     # [7] the raw estimates fused into source_pose (faces.head_pose.FEATURES + roll)
    keypoints_3d: np.ndarray      # [5, 3] measured on the face's mesh (`surface.keypoints_3d`: eye centres, nose
    #                               tip, mouth corners in the aligned crop's template frame, faces.face_mesh)
    aligned_crop: np.ndarray      # [112, 112, 3] uint8 RGB
    num_faces: int = 1
    warning: str | None = None
    landmarks_68: np.ndarray | None = None   # [68, 2] when the backend gives them
    other_boxes: np.ndarray | None = None    # [num_faces - 1, 4] the detector's boxes of the other faces
    other_keypoints: np.ndarray | None = None  # [num_faces - 1, 5, 2] their keypoints
    backend: str = ""
    feature_map: np.ndarray | None = None    # [C, 7, 7] the embedder's last map, when it exposes one
    feature_map_mirror: np.ndarray | None = None   # [C, 7, 7] the mirrored face's, flipped back to these cells
    surface: object | None = None            # viewdiff.faces.face_mesh.FaceSurface: the measured 3D surface (468
    #                                          vertices, presence, 7x7 cell depth; FaceAnalyzer fills it)
