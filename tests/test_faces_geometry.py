"""Head-pose geometry: angle conversions, the 3D template, solvePnP pose and the sign conventions; lazy assets."""
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


def _project(angles, scale=60.0, centre=(200.0, 150.0)) -> np.ndarray:
    """The posed template's 5 keypoints as image pixels [5, 2] (orthographic; image y points down)."""
    posed = geometry.keypoints_3d_from_pose(angles)
    return np.c_[centre[0] + scale * posed[:, 0], centre[1] - scale * posed[:, 1]]


def test_solvepnp_recovers_the_pose_of_projected_keypoints():
    box = np.array([140.0, 90.0, 260.0, 210.0])
    for angles in [(0, 0, 0), (30, 0, 0), (-40, 10, 0), (0, -20, 0), (0, 0, 15), (25, 10, -10)]:
        np.testing.assert_allclose(geometry.estimate_pose(_project(angles), box), angles, atol=1.5)


def test_roll_sign_follows_the_eye_line():
    """Roll > 0: the eye line turns clockwise in the image, the eye on the image's right is lower (y larger)."""
    kps = _project((0, 0, 10))
    left_eye, right_eye = (kps[0], kps[1]) if kps[0, 0] < kps[1, 0] else (kps[1], kps[0])
    assert right_eye[1] > left_eye[1]


def test_template_loads_on_first_use_not_at_import():
    code = ("import sys; import viewdiff.faces.geometry as g; assert 'insightface' not in sys.modules; "
            "assert 'torch' not in sys.modules; "   # the rotation it shares with the models comes without torch
            "g.TEMPLATE_5; assert 'insightface' in sys.modules; assert g.TEMPLATE_5 is g.template_5()")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_upright_picks_the_head_up_triple_of_the_same_rotation():
    """A level profile decomposed as 'pitch +154, roll +167' is 'pitch -26, roll -13' of a head turned 91 deg."""
    from viewdiff.faces.geometry import angles_to_rotation, upright
    for angles, expected in [((88.9, 154.06, 167.15), (91.1, -25.94, -12.85)),
                             ((-88.9, 154.06, -167.15), (-91.1, -25.94, 12.85)), ((60, 20, 10), (60, 20, 10))]:
        got = upright(angles)
        np.testing.assert_allclose(got, expected, atol=1e-3)
        np.testing.assert_allclose(angles_to_rotation(got), angles_to_rotation(angles), atol=1e-6)   # same rotation
    batch = upright(np.array([[88.9, 154.06, 167.15], [10, 5, -3]]))
    assert batch.shape == (2, 3) and abs(batch[0, 1]) < 90 and (batch[1] == np.float32([10, 5, -3])).all()


def test_roll_given_a_yaw_and_pitch_recovers_the_roll_and_splits_a_profile():
    from viewdiff.faces.geometry import angles_to_rotation, roll_given
    rng = np.random.default_rng(0)
    for yaw, pitch, roll in rng.uniform([-89, -50, -40], [89, 50, 40], (20, 3)):
        assert abs(roll_given((yaw, pitch, roll), yaw, pitch) - roll) < 1e-6
    # at a profile the nod and the in-plane turn are the same image rotation: a solver's split (pitch 52.9,
    # roll 78.4 of a level head turned -88.5) given the learned pitch leaves the rest to the roll
    measured = (-88.5, 52.9, 78.4)
    rest = roll_given(measured, -88.5, 10.0)
    assert abs(rest) < abs(measured[2])
    np.testing.assert_allclose(angles_to_rotation((-88.5, 10.0, rest)), angles_to_rotation(measured), atol=0.05)
