"""Head-pose geometry: the 3D face template, angle <-> rotation conversions, pose from keypoints (solvePnP).

Conventions
- Angles are degrees ``(yaw, pitch, roll)``, ``(0, 0, 0)`` frontal. The signs follow Pointing'04's
  labels (checked on the data): yaw > 0 = the face turns towards the image's left (the subject's
  own right, pan > 0 in Pointing'04 file names); pitch > 0 = tilt > 0 in Pointing'04 (head up).
- Roll > 0: the eye line turns clockwise in the image (the eye on the image's right is lower). Every estimator's output is converted to these signs where it is read
  (`viewdiff.faces.head_pose`), so the rest of the package sees one convention.
- `estimate_pose`: ``cv2.solvePnP`` of the 5 keypoints against `TEMPLATE_5` under a
  near-orthographic camera; one input of the fused head pose (`viewdiff.faces.head_pose`).
- `TEMPLATE_5` [5, 3]: x, y of insightface's ArcFace 5-point template (the layout SCRFD keypoints
  follow) with the depth of the matching ``meanshape_68`` points (eye centres, nose tip, mouth
  corners), in a right-handed face frame: x to the image right, y up, z towards the camera,
  centred and scaled so the largest coordinate is 1. It is built from insightface's files on first
  use (`template_5()`, cached), not at import.
- ``keypoints_3d`` [5, 3] = `TEMPLATE_5` rotated by the estimated head pose (same frame, no
  translation): a frontal face gives `TEMPLATE_5` itself.
"""
from __future__ import annotations

import functools
import pickle
from pathlib import Path

import cv2
import numpy as np

from viewdiff.models.rotation import rotation_entries


@functools.lru_cache(maxsize=None)
def meanshape_68() -> np.ndarray:
    """insightface's 68-point 3D mean face [68, 3] (x right, y down, z towards the camera); read-only, loaded once."""
    import insightface
    path = Path(insightface.__file__).parent / "data/objects/meanshape_68.pkl"
    with open(path, "rb") as f:
        shape = np.asarray(pickle.load(f), np.float64)
    shape.flags.writeable = False
    return shape


@functools.lru_cache(maxsize=None)
def template_5() -> np.ndarray:
    """[5, 3] ArcFace 2D layout + meanshape depth, x right, y up, z towards camera, max |.| = 1 (read-only)."""
    from insightface.utils.face_align import arcface_dst
    meanshape = meanshape_68()
    ms5 = np.stack([meanshape[36:42].mean(0), meanshape[42:48].mean(0), meanshape[30],
                    meanshape[48], meanshape[54]])
    a = arcface_dst.astype(np.float64)
    scale = np.linalg.norm(ms5[1, :2] - ms5[0, :2]) / np.linalg.norm(a[1] - a[0])
    xy = (a - a.mean(0)) * scale
    t = np.c_[xy[:, 0], -xy[:, 1], ms5[:, 2] - ms5[:, 2].mean()]
    template = t / np.abs(t).max()
    template.flags.writeable = False
    return template


def __getattr__(name: str) -> np.ndarray:
    """`TEMPLATE_5` and `MEANSHAPE_68` as module attributes, loaded on first use (PEP 562)."""
    if name == "TEMPLATE_5":
        return template_5()
    if name == "MEANSHAPE_68":
        return meanshape_68()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def wrap_degrees(angles) -> np.ndarray:
    """Angles in degrees wrapped to [-180, 180)."""
    return (np.asarray(angles, np.float64) + 180.0) % 360.0 - 180.0


def upright(angles) -> np.ndarray:
    """(yaw, pitch, roll) [..., 3] -> the same rotations written with the head upright (float32).

    Every rotation has two (yaw, pitch, roll) triples in this order of axes: (y, p, r) and
    (+-180 - y, p + 180, r + 180). Near a profile (|yaw| ~ 90) the two are close together and a decomposition
    (`cv2.RQDecomp3x3`, 3DDFA's asin / atan2) lands on either: a level profile read as "pitch +154, roll
    +167" is "pitch -26, roll -13" of a head turned 91 degrees. A head is upright (|pitch| and |roll| well
    under 90), so the triple with the smaller |pitch| + |roll| is the one meant; |yaw| may then exceed 90 a
    little (a head turned slightly past the profile).
    """
    a = wrap_degrees(angles)
    yaw, pitch, roll = a[..., 0], a[..., 1], a[..., 2]
    other = np.stack([wrap_degrees(np.where(yaw >= 0, 180.0, -180.0) - yaw), wrap_degrees(pitch + 180.0),
                      wrap_degrees(roll + 180.0)], -1)
    flip = (np.abs(other[..., 1]) + np.abs(other[..., 2])) < (np.abs(pitch) + np.abs(roll))
    return np.where(flip[..., None], other, a).astype(np.float32)


def rotation_to_angles(r: np.ndarray) -> np.ndarray:
    """Face-frame rotation [3, 3] -> (yaw, pitch, roll) degrees in the Pointing'04 sign convention, written
    with the head upright (`upright`)."""
    (rx, ry, rz), *_ = cv2.RQDecomp3x3(_FLIP @ r @ _FLIP)
    return upright([ry, -rx, rz])


def angles_to_rotation(angles) -> np.ndarray:
    """(yaw, pitch, roll) degrees -> face-frame rotation [3, 3] (inverse of `rotation_to_angles`).

    The package's one definition, `viewdiff.models.rotation.rotation_entries` (the models rotate their voxel
    grids with the same matrix): ``Rz(-roll) @ Ry(-yaw) @ Rx(-pitch)`` in this face frame.
    """
    rad = np.deg2rad(np.asarray(angles, np.float64))
    (cy, cp, cr), (sy, sp, sr) = np.cos(rad), np.sin(rad)
    return np.array(rotation_entries(cy, sy, cp, sp, cr, sr)).reshape(3, 3)


def roll_given(rotation_angles, yaw: float, pitch: float) -> float:
    """The roll that, with this yaw and pitch, comes closest to the rotation of `rotation_angles` (degrees).

    R(yaw, pitch, roll) = Rz(-roll) @ R(yaw, pitch, 0), so roll is the turn about the camera axis that best
    maps R(yaw, pitch, 0) onto the measured rotation (2D Procrustes on Rz's block). Near a profile the
    keypoints fix only the sum of the in-plane turn and the nod (pitch and roll axes line up: gimbal lock);
    given a pitch from elsewhere, this is the roll that is left.
    """
    m = angles_to_rotation(rotation_angles) @ angles_to_rotation((yaw, pitch, 0.0)).T
    return float(-np.degrees(np.arctan2(m[1, 0] - m[0, 1], m[0, 0] + m[1, 1])))


def estimate_pose(keypoints: np.ndarray, bbox: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) [3] from the 5 keypoints [5, 2] by solvePnP against `TEMPLATE_5`.

    bbox [4]: the face box (sets the camera, see `_solve_pose`). One of the three estimates that
    `viewdiff.faces.head_pose` fuses, and the roll it reports.
    """
    return rotation_to_angles(_solve_pose(template_5(), keypoints, bbox))


def keypoints_3d_from_pose(angles) -> np.ndarray:
    """`TEMPLATE_5` rotated by (yaw, pitch, roll): [5, 3] float32."""
    return (template_5() @ angles_to_rotation(angles).T).astype(np.float32)
