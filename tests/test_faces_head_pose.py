"""Head-pose stage on real photos: Pointing'04 against its true pan/tilt, CFP frontal pitch, the demo's examples,
the calibration file and the shipped model files."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from viewdiff.faces import head_pose
from viewdiff.faces.errors import ModelNotFoundError
from viewdiff.faces.head_pose import FEATURES, Calibration, HeadPoseEstimator
from viewdiff.paths import shared_dir

REPO = Path(__file__).resolve().parent.parent
P04 = shared_dir() / "data" / "pointing04" / "Person05"
CFP = shared_dir() / "data" / "cfp" / "Data" / "Images"
needs_data = pytest.mark.skipif(not P04.is_dir() or not CFP.is_dir(), reason="team data not found (clone beside ../shared)")


@pytest.fixture(scope="module")
def analyzer(request):
    return request.getfixturevalue("analyzer")   # the session's default FaceAnalyzer (conftest)


@needs_data
def test_pointing04_yaw_and_pitch_follow_the_truth(analyzer):
    """Person 05, series 1: every pan at tilt 0, and tilt +-30 at pan 0 (not a person the calibration
    was scored on in isolation, but a real, labelled photo series)."""
    errors = []
    for pan in range(-90, 91, 15):
        rec = analyzer.analyze(next(P04.glob(f"person051??+0{pan:+d}.jpg")))
        errors.append(rec.source_pose[0] - pan)
        if pan:
            assert np.sign(rec.source_pose[0]) == np.sign(pan), (pan, rec.source_pose)
    assert np.mean(np.abs(errors)) < 12, errors
    up, down = (analyzer.analyze(next(P04.glob(f"person051??{t}+0.jpg"))).source_pose[1] for t in ("+30", "-30"))
    assert up > 0 > down and up - down > 20, (up, down)   # pitch MAE near level is ~10 deg: one photo can miss by more


@needs_data
def test_cfp_frontal_photos_read_level_and_profiles_turned(analyzer):
    frontal = [analyzer.analyze(CFP / f"{i:03d}" / "frontal" / "01.jpg").source_pose for i in range(1, 13)]
    profile = [analyzer.analyze(CFP / f"{i:03d}" / "profile" / "01.jpg").source_pose for i in range(1, 7)]
    frontal, profile = np.array(frontal), np.array(profile)
    assert np.median(np.abs(frontal[:, 1])) < 10 and np.median(np.abs(frontal[:, 0])) < 10, frontal
    assert np.median(np.abs(profile[:, 0])) > 65, profile


def test_demo_examples_read_what_a_person_would_say(analyzer):
    """The asset photos, by eye: the astronaut looks at the camera, the t1 crop is turned to the image's
    left by about 55-60 deg, the cameraman turned to the image's right by about 60-70 deg and looking
    down into his camera."""
    astronaut = analyzer.analyze(REPO / "assets" / "astronaut.jpg").source_pose
    turned = analyzer.analyze(REPO / "assets" / "t1_face_yaw55.jpg").source_pose
    cameraman = analyzer.analyze(REPO / "assets" / "cameraman_gray.png").source_pose
    assert abs(astronaut[0]) < 10 and abs(astronaut[1]) < 10, astronaut
    assert 45 < turned[0] < 75, turned
    assert -80 < cameraman[0] < -50 and cameraman[1] < -5, cameraman


def test_features_and_fusion_are_consistent(analyzer):
    bgr = cv2.imread(str(REPO / "assets" / "astronaut.jpg"))
    rec = analyzer.analyze(REPO / "assets" / "astronaut.jpg")
    angles, feats = analyzer.head_pose(bgr, rec.bbox, rec.keypoints)
    assert feats.shape == (len(FEATURES) + 1,) and angles.dtype == np.float32
    np.testing.assert_allclose(angles, analyzer.head_pose.calibration.apply(feats), atol=1e-5)
    assert angles[2] == pytest.approx(feats[-1])   # roll is the solvePnP roll
    np.testing.assert_allclose(rec.source_pose, angles, atol=0.5)   # the analyzer used the same stage


def test_calibration_round_trip_and_clear_errors(tmp_path):
    cal = Calibration(tuple(range(7)), tuple(range(7, 14)), "test")
    cal.save(tmp_path / "c.json")
    assert Calibration.load(tmp_path / "c.json") == cal
    (tmp_path / "short.json").write_text(json.dumps({"yaw_weights": [1, 2], "pitch_weights": [1, 2]}))
    with pytest.raises(ModelNotFoundError, match="wrong number of weights.*fit_head_pose"):
        Calibration.load(tmp_path / "short.json")
    stretched = Calibration(tuple(range(7)), tuple(range(7, 14)), "test", (0, 14, 29, 44, 58, 70, 80))
    stretched.save(tmp_path / "s.json")
    assert Calibration.load(tmp_path / "s.json") == stretched
    (tmp_path / "knots.json").write_text(json.dumps({**json.loads((tmp_path / "s.json").read_text()),
                                                     "yaw_knots": [0, 20, 10, 30, 40, 50, 60]}))
    with pytest.raises(ModelNotFoundError, match="bad yaw knots.*fit_head_pose"):
        Calibration.load(tmp_path / "knots.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ModelNotFoundError, match="cannot read the head-pose calibration bad.json.*fit_head_pose"):
        Calibration.load(tmp_path / "bad.json")


def test_yaw_stretch_maps_the_saturated_top_back_and_stops_at_90():
    """The linear yaw's per-pan means (the knots) come out at the pans; sign kept; monotone; at most 90."""
    cal = Calibration((1, 0, 0, 0, 0, 0, 0), (0,) * 7, "test", (0, 14, 29, 44, 58, 70, 80))
    linear = np.array([0, 14, -29, 70, 80, -80, 95, 75])
    np.testing.assert_allclose(cal.stretch(linear), [0, 15, -30, 75, 90, -90, 90, 82.5])
    dense = cal.stretch(np.linspace(0, 120, 241))
    assert np.all(np.diff(dense) >= 0) and dense.max() == 90
    assert np.array_equal(Calibration((1,) + (0,) * 6, (0,) * 7).stretch(linear), linear)   # no knots: no stretch
    features = np.zeros((1, 7))
    features[0, 0] = 70.0
    assert cal.apply(features)[0, 0] == pytest.approx(75.0)


def test_missing_or_damaged_model_files_say_how_to_restore(tmp_path, monkeypatch):
    monkeypatch.setattr(head_pose, "headpose_dirs", lambda: [tmp_path / "nowhere"])
    with pytest.raises(ModelNotFoundError, match="head-pose models not found.*git checkout -- weights/headpose"):
        HeadPoseEstimator()
    damaged = tmp_path / "headpose"
    shutil.copytree(REPO / "weights" / "headpose", damaged)
    (damaged / head_pose.FSANET_FILES[0]).write_bytes(b"not a model")
    with pytest.raises(ModelNotFoundError, match="missing or damaged"):
        HeadPoseEstimator(model_dir=damaged)


def test_3ddfa_angles_read_in_our_axis_order_are_defined_at_the_profile():
    """3DDFA turns yaw last: at |yaw| ~ 90 its pitch is noise (a level profile read pitch -175). Read as the
    elevation of the face's forward direction (our order: nod first, then turn), the pitch stays near level."""
    from viewdiff.faces.geometry import angles_to_rotation
    from viewdiff.faces.head_pose import tddfa_in_our_order
    np.testing.assert_allclose(tddfa_in_our_order([[0, 20], [30, 0]]), [[0, 20], [30, 0]], atol=1e-4)
    yaw, pitch = tddfa_in_our_order([[88.0, 80.0], [-85.0, -175.0]]).T
    assert (np.abs(pitch) < 3).all() and abs(yaw[0]) > 85 and abs(yaw[1]) > 90   # -175: the face points slightly away
    # our order's forward direction: the pitch is its elevation at every yaw
    for y, p in [(10, 20), (60, -25), (85, 30)]:
        forward = angles_to_rotation((y, p, 0)) @ np.array([0.0, 0.0, 1.0])
        assert abs(np.degrees(np.arcsin(forward[1])) - p) < 1e-6
