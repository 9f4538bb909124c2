"""MediaPipe Face Mesh: a measured 3D surface of each face (468 landmarks with depth) in the aligned crop's frame.

`FaceMesh` runs the shipped ``weights/face_mesh/face_landmark.onnx`` (MediaPipe's landmark model converted by
``scripts/convert_face_mesh.py``; Apache-2.0, provenance in ``weights/face_mesh/README.md``) with onnxruntime
on one thread, and `FaceMesh.surface` returns a `FaceSurface`.

The mesh crop. The model wants a 192 x 192 square around the face with a margin, eyes level. It is built from the
detector's 5 keypoints with the ArcFace alignment (`viewdiff.faces.backends.arcface_crop`'s similarity onto
``ARCFACE_TEMPLATE``) zoomed out: the mesh crop is the aligned 112 x 112 crop's square of side
``MESH_SPAN`` (= 1.2 x 112) aligned pixels centred on ``MESH_CENTRE`` (the crop's centre), sampled at 192 px.
(MediaPipe's 1.5x margin is around its tight detector box, smaller than the aligned crop. Measured on 60 CFP
profiles / 30 frontals: span 1.2 gives presence > 0.5 on 93% / 100% and the mesh's 5 keypoints within 7.7 / 1.4
aligned px of the detector's; span 1.5: 75% / 100%, 10.2 / 1.7 px; 1.0: 93%, 8.4 / 2.0 px.)
So mesh-crop pixels and aligned-crop pixels are related by one fixed affine map (`mesh_to_crop`):
``crop = (mesh - 96) * MESH_SPAN / 192 + MESH_CENTRE`` for x and y, and ``crop_z = mesh_z * MESH_SPAN / 192``.

Frames (all of `FaceSurface`'s 3D coordinates): the face template's frame of the aligned crop
(`viewdiff.models.crop_frame`, used by `viewdiff.models.projection`:
``template = (crop_pixel - CROP_CENTRE) * CROP_SCALE``, x to the image right, y up), z towards the camera in
the same scale (the mesh's z is smaller = nearer, so it is negated), its origin set so that the mean depth
of the 5 measured keypoints equals that of `viewdiff.faces.geometry.template_5` (0).
A frontal face's `keypoints_3d` then lie close to ``template_5()`` (tests/test_faces_face_mesh.py).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from viewdiff.faces.errors import ModelNotFoundError
from viewdiff.faces.model_files import face_mesh_dir, onnx_session, verify_sha256
from viewdiff.models.crop_frame import CROP_CENTRE, CROP_SCALE, CROP_SIZE

MODEL_FILE = "face_landmark.onnx"
TRIANGLES_FILE, MIRROR_FILE = "face_mesh_triangles.txt", "face_mesh_mirror.txt"
NUM_LANDMARKS, INPUT_SIZE = 468, 192
MESH_SPAN = 1.2 * CROP_SIZE                      # aligned-crop pixels the 192 px mesh crop spans (module docstring)
MESH_CENTRE = (CROP_SIZE / 2, CROP_SIZE / 2)     # the mesh crop's centre, in aligned-crop pixels
CELLS = 7                                        # the embedder's map: 7 x 7 cells of the 112 crop
# MediaPipe landmark indices of the 5 keypoints in SCRFD's order (image left / right of an upright face):
# the eye contours (FACEMESH_RIGHT_EYE / LEFT_EYE of mediapipe's face_mesh_connections), nose tip, mouth corners.
EYE_IMAGE_LEFT = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
EYE_IMAGE_RIGHT = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
NOSE_TIP, MOUTH_IMAGE_LEFT, MOUTH_IMAGE_RIGHT = 4, 61, 291   # 4: the canonical mesh's front-most point
KEYPOINT_MIRROR = [1, 0, 2, 4, 3]                # SCRFD order of the mirrored face's keypoints


@dataclass
class FaceSurface:
    """One face's measured surface, in the face template's frame of its aligned crop (module docstring)."""
    vertices: np.ndarray      # [468, 3] float32 MediaPipe landmarks (x right, y up, z towards the camera)
    presence: float           # sigmoid of the model's face-presence logit (a face in the crop: > 0.5)
    cell_depth: np.ndarray    # [7, 7] float32 z of the front-most mesh triangle under each cell centre (row-major,
    #                           row 0 at the top); NaN where no triangle of the face surface covers the cell
    keypoints_3d: np.ndarray  # [5, 3] float32 eye centres, nose tip, mouth corners (SCRFD order) from the mesh


@functools.lru_cache(maxsize=None)
def triangles() -> np.ndarray:
    """MediaPipe's face-mesh triangles [898, 3] int (landmark indices), read-only."""
    tri = np.loadtxt(face_mesh_dir() / TRIANGLES_FILE, dtype=np.int64, comments="#")
    tri.flags.writeable = False
    return tri


@functools.lru_cache(maxsize=None)
def mirror_index() -> np.ndarray:
    """[468] int: landmark i of a face is landmark ``mirror_index()[i]`` of the mirrored face (read-only)."""
    perm = np.loadtxt(face_mesh_dir() / MIRROR_FILE, dtype=np.int64, comments="#")
    perm.flags.writeable = False
    return perm


def cell_centres(size: int = CELLS) -> np.ndarray:
    """Aligned-crop pixel (x, y) of the centres of the size x size cells: [size, size, 2] (`projection.cell_grid`'s
    cells, in pixels)."""
    c = (np.arange(size) + 0.5) * (CROP_SIZE / size)
    ys, xs = np.meshgrid(c, c, indexing="ij")
    return np.stack([xs, ys], -1)


def mesh_warp(keypoints5: np.ndarray) -> np.ndarray:
    """[2, 3] affine: image pixels -> mesh-crop pixels (the ArcFace similarity, then `crop_to_mesh`)."""
    from skimage.transform import SimilarityTransform

    from viewdiff.faces.backends import ARCFACE_TEMPLATE
    tform = SimilarityTransform.from_estimate(np.asarray(keypoints5, np.float64).reshape(5, 2),
                                              ARCFACE_TEMPLATE.astype(np.float64))
    s = INPUT_SIZE / MESH_SPAN
    to_mesh = np.array([[s, 0, INPUT_SIZE / 2 - s * MESH_CENTRE[0]], [0, s, INPUT_SIZE / 2 - s * MESH_CENTRE[1]],
                        [0, 0, 1]])
    return (to_mesh @ tform.params)[:2]


def mesh_to_template(mesh_xyz: np.ndarray) -> np.ndarray:
    """Mesh-crop (x, y, z) pixels [..., 3] -> the template frame (y up, z towards the camera), z origin not yet set."""
    s = MESH_SPAN / INPUT_SIZE
    crop_x = (mesh_xyz[..., 0] - INPUT_SIZE / 2) * s + MESH_CENTRE[0]
    crop_y = (mesh_xyz[..., 1] - INPUT_SIZE / 2) * s + MESH_CENTRE[1]
    return np.stack([(crop_x - CROP_CENTRE[0]) * CROP_SCALE, -(crop_y - CROP_CENTRE[1]) * CROP_SCALE,
                     -mesh_xyz[..., 2] * s * CROP_SCALE], -1)


def keypoints_of(vertices: np.ndarray) -> np.ndarray:
    """The 5 keypoints [5, 3] (SCRFD order) of mesh vertices [468, 3]."""
    return np.stack([vertices[list(EYE_IMAGE_LEFT)].mean(0), vertices[list(EYE_IMAGE_RIGHT)].mean(0),
                     vertices[NOSE_TIP], vertices[MOUTH_IMAGE_LEFT], vertices[MOUTH_IMAGE_RIGHT]])


def rasterise_depth(vertices: np.ndarray, points: np.ndarray) -> np.ndarray:
    """z of the front-most triangle (largest z) of the mesh under each point: vertices [468, 3] (template frame),
    points [P, 2] (template x, y) -> [P], NaN where no triangle covers the point (a z-buffer at the points)."""
    tri = vertices[triangles()]                       # [T, 3, 3]
    a, b, c = tri[:, 0, :2], tri[:, 1, :2], tri[:, 2, :2]
    v0, v1 = b - a, c - a                             # [T, 2]
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]   # twice the signed area
    ok = np.abs(den) > 1e-12
    den = np.where(ok, den, 1.0)
    d = points[:, None, :] - a[None]                  # [P, T, 2]
    u = (d[..., 0] * v1[:, 1] - v1[:, 0] * d[..., 1]) / den
    v = (v0[:, 0] * d[..., 1] - d[..., 0] * v0[:, 1]) / den
    inside = (u >= 0) & (v >= 0) & (u + v <= 1) & ok
    z = tri[:, 0, 2] + u * (tri[:, 1, 2] - tri[:, 0, 2]) + v * (tri[:, 2, 2] - tri[:, 0, 2])
    z = np.where(inside, z, -np.inf).max(axis=1)
    return np.where(np.isfinite(z), z, np.nan)


def surface_from_mesh(mesh_xyz: np.ndarray, presence_logit: float) -> FaceSurface:
    """The model's output (468 x (x, y, z) in mesh-crop pixels, presence logit) -> `FaceSurface`."""
    from viewdiff.faces.geometry import template_5
    vertices = mesh_to_template(np.asarray(mesh_xyz, np.float64).reshape(NUM_LANDMARKS, 3))
    vertices[:, 2] += template_5()[:, 2].mean() - keypoints_of(vertices)[:, 2].mean()
    centres = cell_centres()
    points = np.stack([(centres[..., 0] - CROP_CENTRE[0]) * CROP_SCALE,
                       -(centres[..., 1] - CROP_CENTRE[1]) * CROP_SCALE], -1).reshape(-1, 2)
    depth = rasterise_depth(vertices, points).reshape(CELLS, CELLS)
    return FaceSurface(vertices=vertices.astype(np.float32), presence=float(1 / (1 + np.exp(-presence_logit))),
                       cell_depth=depth.astype(np.float32), keypoints_3d=keypoints_of(vertices).astype(np.float32))


def mirror_surface(surface: FaceSurface) -> FaceSurface:
    """The surface of the horizontally flipped photo: landmarks renumbered by the mesh's symmetry and x negated,
    cells flipped left-right, keypoints in SCRFD order again (eyes and mouth corners swapped) with x negated.
    (The flip is about template x = 0, 0.03 aligned px from the crop's centre line.)"""
    flip = np.array([-1.0, 1.0, 1.0], np.float32)
    return replace(surface, vertices=surface.vertices[mirror_index()] * flip,
                   cell_depth=np.ascontiguousarray(surface.cell_depth[..., ::-1]),
                   keypoints_3d=surface.keypoints_3d[..., KEYPOINT_MIRROR, :] * flip)


def mirror_arrays(cell_depth: np.ndarray, keypoints_3d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`mirror_surface` for batches: cell_depth [..., 7, 7], keypoints_3d [..., 5, 3] -> mirrored copies."""
    flip = np.array([-1.0, 1.0, 1.0], keypoints_3d.dtype)
    return np.ascontiguousarray(cell_depth[..., ::-1]), keypoints_3d[..., KEYPOINT_MIRROR, :] * flip


class FaceMesh:
    """MediaPipe Face Mesh (the shipped ONNX, sha256-checked): `surface(image_rgb, keypoints5) -> FaceSurface`.

    path: the .onnx file (default: ``weights/face_mesh/face_landmark.onnx``, checked against its SHA256SUMS).
    threads: onnxruntime intra-op threads (1, like the pipeline's other models on a shared machine).
    """

    def __init__(self, path: str | Path | None = None, providers=None, threads: int = 1):
        import onnxruntime
        if path is None:
            folder = face_mesh_dir()
            verify_sha256(folder, [MODEL_FILE, TRIANGLES_FILE, MIRROR_FILE])
            path = folder / MODEL_FILE
        path = Path(path)
        if not path.is_file():
            raise ModelNotFoundError(f"the face-mesh model {path} is missing: restore weights/face_mesh with "
                                     "`git checkout -- weights/face_mesh` or rebuild it with "
                                     "`python scripts/convert_face_mesh.py`")
        self.path = path
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = onnx_session(path, providers, opts)
        self.input_name = self.session.get_inputs()[0].name

    def crop(self, image_rgb: np.ndarray, keypoints5: np.ndarray) -> np.ndarray:
        """The model's input for one face: [192, 192, 3] float32 RGB in [0, 1] (`mesh_warp`, black border)."""
        import cv2
        crop = cv2.warpAffine(np.ascontiguousarray(image_rgb), mesh_warp(keypoints5), (INPUT_SIZE, INPUT_SIZE),
                              flags=cv2.INTER_LINEAR, borderValue=0.0)
        return crop.astype(np.float32) / 255.0

    def run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """crops [N, 192, 192, 3] float32 in [0, 1] -> (landmarks [N, 468, 3] mesh-crop pixels, presence logit [N])."""
        landmarks, logit = self.session.run(None, {self.input_name: np.ascontiguousarray(crops, np.float32)})
        return landmarks.reshape(-1, NUM_LANDMARKS, 3), logit.reshape(-1)

    def surface(self, image_rgb: np.ndarray, keypoints5: np.ndarray) -> FaceSurface:
        """The face whose detector keypoints [5, 2] (image pixels, SCRFD order) are given, in image_rgb [H, W, 3]
        uint8 RGB -> its `FaceSurface`."""
        landmarks, logit = self.run(self.crop(image_rgb, keypoints5)[None])
        return surface_from_mesh(landmarks[0], float(logit[0]))
