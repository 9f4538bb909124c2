"""Head pose of a detected face: two learned estimators and the 5-keypoint fit, fused by a calibration.

Per face (box + 5 keypoints from the detector), on the image the face was detected in:
- 3DDFA_V2 mb05 (Guo et al., ECCV 2020; MIT): square crop of side 1.58 x the box size, shifted down by
  0.14 x the box size, 120x120 -> 62 3DMM parameters; the first 12 are a 3x4 camera matrix whose
  normalised rows give the rotation. Best yaw of the three.
- FSA-Net (Yang et al., CVPR 2019; MIT), the ``1x1`` and ``var`` models averaged: the box enlarged by 0.6
  of its size on each side, 64x64 -> (yaw, pitch, roll). Best pitch near level.
- `geometry.estimate_pose`: solvePnP of the 5 keypoints (the only roll that follows the eye line:
  0.5 deg from it on CFP frontals, against 1.0-1.7 for the learned models).
Fusion (`FEATURES` -> `Calibration`): yaw and pitch are linear in the six (yaw, pitch) estimates plus a
bias, the yaw then stretched at the top (the estimators saturate on profiles); roll is the solvePnP roll
(on Pointing'04, whose heads are level, it stays nearest 0 at every pan: 5.7 deg median at 90, against
14.7 for FSA-Net's roll and 12.9 for 3DDFA's). The weights come from `python -m viewdiff.training.fit_head_pose`: yaw
fitted on Pointing'04's true pan, pitch on its true tilt plus CFP frontal photos taken as level; the
figures it prints are leave-one-person-out (Pointing'04) and out-of-fold (CFP). Angles follow
`viewdiff.faces.geometry` (yaw > 0: face turned to the image's left; pitch > 0: head up).

Model files: ``weights/headpose/`` (shipped, sha256-checked against ``SHA256SUMS``; provenance and
licences in its README), else ``$VIEWDIFF_MODELS/headpose``, else ``../shared/models/headpose``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from viewdiff.faces.errors import ModelNotFoundError
from viewdiff.faces.geometry import estimate_pose, roll_given
from viewdiff.faces.model_files import onnx_session, verify_sha256
from viewdiff.paths import REPO_ROOT, models_env_dir, shared_dir

TDDFA_FILE = "3ddfa_v2_mb05_120x120.onnx"
TDDFA_STATS = "3ddfa_v2_param_mean_std_62d_120x120.json"
FSANET_FILES = ("fsanet-1x1-iter-688590.onnx", "fsanet-var-iter-688590.onnx")
CALIBRATION_FILE = "calibration.json"
FEATURES = ("3ddfa_yaw", "3ddfa_pitch", "fsanet_yaw", "fsanet_pitch", "pnp5_yaw", "pnp5_pitch")
YAW_KNOTS = (0.0, 15.0, 30.0, 45.0, 60.0, 75.0, 90.0)   # true |yaw| of the calibration's stretch (Pointing'04's pans)
POSE_SOURCE = "3ddfa_v2+fsanet+pnp5"
PNP_MAX_ROLL, PNP_MAX_PITCH = 45.0, 60.0   # a solvePnP split beyond these is one no upright head gives (`fused_roll`)
FIT_HINT = "refit it with `python -m viewdiff.training.fit_head_pose`"
SHIPPED_DIR = REPO_ROOT / "weights/headpose"
CALIBRATION_PATH = SHIPPED_DIR / CALIBRATION_FILE


def headpose_dirs() -> list[Path]:
    env = models_env_dir()
    return [SHIPPED_DIR, *([env / "headpose"] if env else []), shared_dir() / "models/headpose"]


def find_headpose_dir() -> Path:
    """The first folder holding every head-pose model file (see the module doc)."""
    needed = (TDDFA_FILE, TDDFA_STATS, *FSANET_FILES)
    for d in headpose_dirs():
        if all((d / name).is_file() for name in needed):
            return d
    raise ModelNotFoundError(
        f"head-pose models not found (need {', '.join(needed)} in one of "
        f"{', '.join(str(d) for d in headpose_dirs())}): restore weights/headpose/ with `git checkout -- weights/headpose`")


@dataclass(frozen=True)
class Calibration:
    """yaw = stretch(yaw_weights . [FEATURES, 1]); pitch = pitch_weights . [FEATURES, 1] (degrees).

    yaw_knots: the linear yaw's mean |value| at the true |yaw| of `YAW_KNOTS` (on the fitting data, 0 at 0);
    the stretch maps those means back to the true angles piecewise linearly (sign kept, at most 90): the
    estimators saturate on profiles, so the linear fit under-reads a full profile by ~9 deg. Empty: no stretch.
    """
    yaw_weights: tuple[float, ...]
    pitch_weights: tuple[float, ...]
    fitted_on: str = ""
    yaw_knots: tuple[float, ...] = ()

    def __post_init__(self):   # one check for a fitted and a loaded calibration
        if not len(self.yaw_weights) == len(self.pitch_weights) == len(FEATURES) + 1:
            raise ValueError(f"the wrong number of weights (want {len(FEATURES) + 1} for {', '.join(FEATURES)} "
                             "+ bias)")
        if self.yaw_knots and (len(self.yaw_knots) != len(YAW_KNOTS) or np.any(np.diff(self.yaw_knots) <= 0)):
            raise ValueError(f"bad yaw knots (want {len(YAW_KNOTS)} increasing values, for {YAW_KNOTS} deg; "
                             f"got {self.yaw_knots})")

    @classmethod
    def load(cls, path: Path) -> "Calibration":
        try:
            saved = json.loads(Path(path).read_text())
            return cls(tuple(saved["yaw_weights"]), tuple(saved["pitch_weights"]), saved.get("fitted_on", ""),
                       tuple(saved.get("yaw_knots", ())))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ModelNotFoundError(f"cannot read the head-pose calibration {path.name} ({e}): {FIT_HINT}") from e

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps({"features": list(FEATURES), **self.__dict__}, indent=2) + "\n")

    def stretch(self, yaw: np.ndarray) -> np.ndarray:
        """The linear yaw [...] -> the stretched yaw (see the class doc); unchanged without knots."""
        if not self.yaw_knots:
            return yaw
        return np.sign(yaw) * np.interp(np.abs(yaw), self.yaw_knots, YAW_KNOTS)   # flat (90) past the last knot

    def apply(self, features: np.ndarray) -> np.ndarray:
        """features [..., 7] (`FEATURES` + pnp5 roll) -> (yaw, pitch, roll) [..., 3] float32 (roll: `fused_roll`)."""
        features = np.asarray(features, np.float32)
        x = design_matrix(features)
        yaw, pitch = self.stretch(x @ np.asarray(self.yaw_weights)), x @ np.asarray(self.pitch_weights)
        return np.stack([yaw, pitch, fused_roll(features, yaw, pitch)], -1).astype(np.float32)


def fused_roll(features: np.ndarray, yaw: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """The reported roll [...]: solvePnP's, unless its split between pitch and roll is one no upright head gives
    (|roll| > `PNP_MAX_ROLL` or |pitch| > `PNP_MAX_PITCH`): then the roll left by the fused yaw and pitch in the
    rotation solvePnP measured (`geometry.roll_given`). That split goes wrong near a profile, where the 5
    keypoints fix only nod + in-plane turn together (on CFP profiles it read |roll| > 45 for 4.5%)."""
    pnp = np.asarray(features, np.float64)[..., len(FEATURES) - 2:]
    roll = pnp[..., 2].copy()
    odd = (np.abs(pnp[..., 2]) > PNP_MAX_ROLL) | (np.abs(pnp[..., 1]) > PNP_MAX_PITCH)
    yaw, pitch = np.broadcast_to(yaw, roll.shape), np.broadcast_to(pitch, roll.shape)
    for i in np.ndindex(roll.shape):
        if odd[i]:
            roll[i] = roll_given(pnp[i], float(yaw[i]), float(pitch[i]))
    return roll


def design_matrix(features: np.ndarray) -> np.ndarray:
    """features [..., 7] -> [`FEATURES`, 1] [..., len(FEATURES) + 1] (the solvePnP roll is not a regressor); 3DDFA's
    angles in this package's axis order (`tddfa_in_our_order`)."""
    features = np.asarray(features, np.float64)
    return np.concatenate([tddfa_in_our_order(features[..., 0:2]), features[..., 2:len(FEATURES)],
                           np.ones_like(features[..., :1])], -1)


def default_calibration() -> Calibration:
    """The shipped ``weights/headpose/calibration.json`` (read each call: a refit applies at once)."""
    if not CALIBRATION_PATH.is_file():
        raise ModelNotFoundError(f"the head-pose calibration weights/headpose/{CALIBRATION_FILE} is missing: "
                                 f"restore it with `git checkout -- weights/headpose` or {FIT_HINT}")
    return Calibration.load(CALIBRATION_PATH)


def _crop(bgr: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """bgr[y0:y1, x0:x1] with zeros outside the image."""
    h, w = bgr.shape[:2]
    out = np.zeros((y1 - y0, x1 - x0, 3), bgr.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = bgr[sy0:sy1, sx0:sx1]
    return out


def _blob(crop: np.ndarray, side: int) -> np.ndarray:
    """BGR crop -> [1, 3, side, side] float32, (x - 127.5) / 128 (both models' convention)."""
    crop = cv2.resize(crop, (side, side), interpolation=cv2.INTER_LINEAR)
    return ((crop.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]


class HeadPoseEstimator:
    """``estimator(bgr, box, keypoints) -> (angles [3], features [7])``; angles = (yaw, pitch, roll) degrees.

    bgr: [H, W, 3] uint8, the image the face was detected in; box [4+] x1, y1, x2, y2; keypoints [5, 2].
    features: the raw estimates (`FEATURES` + the solvePnP roll), kept in face records so the
    calibration can be refitted without re-running the models.
    """

    def __init__(self, model_dir: str | Path | None = None, providers=None):
        self.model_dir = Path(model_dir) if model_dir else find_headpose_dir()
        verify_sha256(self.model_dir, [TDDFA_FILE, TDDFA_STATS, *FSANET_FILES])
        stats = json.loads((self.model_dir / TDDFA_STATS).read_text())
        self.param_mean = np.asarray(stats["mean"], np.float32)
        self.param_std = np.asarray(stats["std"], np.float32)
        self.tddfa = onnx_session(self.model_dir / TDDFA_FILE, providers)
        self.fsanet = [onnx_session(self.model_dir / name, providers) for name in FSANET_FILES]
        self.calibration = default_calibration()

    def describe(self) -> dict:
        """The models (not the calibration: face-record caches keep the raw estimates, see `FEATURES`)."""
        return {"head_pose": POSE_SOURCE, "head_pose_models": [TDDFA_FILE, *FSANET_FILES]}

    def tddfa_angles(self, bgr: np.ndarray, box: np.ndarray) -> np.ndarray:
        """(yaw, pitch) [2] from 3DDFA_V2's camera matrix."""
        x1, y1, x2, y2 = (float(v) for v in box[:4])
        size = (x2 - x1 + y2 - y1) / 2
        cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2 + 0.14 * size, int(1.58 * size)
        sx, sy = int(round(cx - side / 2)), int(round(cy - side / 2))
        out = self.tddfa.run(None, {"input": _blob(_crop(bgr, sx, sy, sx + side, sy + side), 120)})[0][0]
        camera = (out * self.param_std + self.param_mean)[:12].reshape(3, 4)[:, :3]
        r1, r2 = (row / max(np.linalg.norm(row), 1e-12) for row in camera[:2])
        r3 = np.cross(r1, r2)
        # 3DDFA's matrix2angle: its yaw = asin(r3[0]) is ours; its pitch = atan2(r3[1], r3[2]) is ours negated
        return np.degrees([np.arcsin(np.clip(r3[0], -1, 1)), -np.arctan2(r3[1], r3[2])]).astype(np.float32)

    def fsanet_angles(self, bgr: np.ndarray, box: np.ndarray) -> np.ndarray:
        """(yaw, pitch) [2], the mean of the two FSA-Net models (already in our signs)."""
        h, w = bgr.shape[:2]
        x1, y1, x2, y2 = (float(v) for v in box[:4])
        bw, bh = x2 - x1, y2 - y1
        xa, ya = int(max(x1 - 0.6 * bw, 0)), int(max(y1 - 0.6 * bh, 0))
        xb, yb = int(min(x2 + 0.6 * bw, w)), int(min(y2 + 0.6 * bh, h))
        blob = _blob(bgr[ya:max(yb, ya + 1), xa:max(xb, xa + 1)], 64)
        return np.mean([s.run(None, {"input": blob})[0][0][:2] for s in self.fsanet], axis=0).astype(np.float32)

    def features(self, bgr: np.ndarray, box: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """The raw estimates [7]: `FEATURES` + the solvePnP roll."""
        pnp = estimate_pose(keypoints, box)   # yaw, pitch, roll
        return np.concatenate([self.tddfa_angles(bgr, box), self.fsanet_angles(bgr, box), pnp]).astype(np.float32)

    def __call__(self, bgr: np.ndarray, box: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feats = self.features(bgr, box, keypoints)
        return self.calibration.apply(feats), feats


def tddfa_in_our_order(yaw_pitch) -> np.ndarray:
    """3DDFA's (yaw, pitch) [..., 2] as its matrix2angle reads them -> the same head direction in this package's
    axis order (float32).

    3DDFA turns yaw last (yaw = asin(r3[0]), pitch = atan2 of r3's other two entries), so its gimbal lock sits at
    the profile: at |yaw| ~ 90 those two entries are ~0 and its pitch is noise (CFP and cplfw profiles read
    +-75..90 on level heads). This package (`viewdiff.faces.geometry`, Pointing'04's pan / tilt) nods first, then
    turns: pitch is the elevation of the face's forward direction r3, asin(-r3[1]), defined at every yaw, and yaw
    = atan2(r3[0], r3[2]) (past 90 when the face points slightly away). r3 is rebuilt from 3DDFA's two angles:
    r3 = (sin y, -cos y sin p, cos y cos p).
    """
    a = np.deg2rad(np.asarray(yaw_pitch, np.float64))
    y, p = a[..., 0], a[..., 1]
    r3 = np.sin(y), -np.cos(y) * np.sin(p), np.cos(y) * np.cos(p)
    return np.degrees(np.stack([np.arctan2(r3[0], r3[2]), np.arcsin(np.clip(-r3[1], -1, 1))], -1)).astype(np.float32)


def refresh_features(features: np.ndarray, keypoints: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Cached raw estimates [N, 7] -> the estimates today's code computes from the same model outputs: the
    solvePnP columns recomputed from the cached keypoints [N, 5, 2] and boxes [N, 4] (`estimate_pose`). Rows whose
    keypoints are all zero (no face) stay."""
    out = np.array(features, np.float32, copy=True)
    if not len(out):
        return out
    for i in np.flatnonzero(np.asarray(keypoints).reshape(len(out), -1).any(axis=1)):
        out[i, len(FEATURES) - 2:] = estimate_pose(keypoints[i], boxes[i])
    return out
