"""Head-pose geometry: angle conversions, the 3D template, insightface's pose convention; lazy assets."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

from viewdiff.faces import geometry


def test_angle_conversions_round_trip():
    for angles in [(0, 0, 0), (30, 0, 0), (-60, 10, 5), (45, -20, -10), (80, 30, 0), (-85, -15, 12)]:
        r = geometry.angles_to_rotation(angles)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-9)
        np.testing.assert_allclose(geometry.rotation_to_angles(r), angles, atol=1e-3)
    np.testing.assert_allclose(geometry.keypoints_3d_from_pose((0, 0, 0)), geometry.TEMPLATE_5, atol=1e-6)
    # a face turned to yaw > 0 moves its nose tip towards the image's left (x < 0), cf. Pointing'04
    assert geometry.keypoints_3d_from_pose((40, 0, 0))[2, 0] < -0.3
    assert geometry.keypoints_3d_from_pose((0, 30, 0))[2, 1] > 0.2   # pitch > 0: nose up (y up)


def test_insightface_pose_mapping_matches_our_convention():
    """Pose the mean shape, project it like insightface's 3D-landmark model, fit with its own code."""
    from insightface.utils import transform
    face = geometry.meanshape_68() * np.array([1.0, -1.0, 1.0])   # to the face frame (y up)
    rng = np.random.default_rng(0)
    for angles in [(30, 0, 0), (-45, 0, 0), (0, 20, 0), (0, -25, 0), (0, 0, 15), (40, -15, 10), (-70, 25, -5)]:
        posed = face @ geometry.angles_to_rotation(angles).T
        pred = posed * np.array([1.0, -1.0, 1.0]) * 80 + np.array([200.0, 150.0, 0.0])   # image: y down
        pred[:, 2] = rng.normal(size=len(pred))   # insightface's fit ignores the predicted depth
        _, rot, _ = transform.P2sRt(transform.estimate_affine_matrix_3d23d(geometry.meanshape_68(), pred))
        ours = geometry.insightface_pose_to_angles(transform.matrix2angle(rot))
        np.testing.assert_allclose(ours, angles, atol=1e-3)


def test_template_loads_on_first_use_not_at_import():
    code = ("import sys; import viewdiff.faces.geometry as g; assert 'insightface' not in sys.modules; "
            "g.TEMPLATE_5; assert 'insightface' in sys.modules; assert g.TEMPLATE_5 is g.template_5()")
    subprocess.run([sys.executable, "-c", code], check=True)
