"""Fit the head-pose calibration (`viewdiff.faces.head_pose.Calibration`) on extracted face records.

    python -m viewdiff.training.fit_head_pose --data_dir data/cache --backend insightface

Reads the raw estimates (`pose_features`) of the Pointing'04 and CFP caches (run
`python -m viewdiff.training.extract` first), fits yaw on Pointing'04's true pan and pitch on its true
tilt plus the CFP frontal photos taken as level (pitch 0), by ridge regression (the yaw then stretched so
that each pan's mean comes out at the pan, see `Calibration`), and prints the scores
that matter: leave-one-person-out on Pointing'04 and out-of-fold (by CFP-FP fold) on CFP. With
``--write`` the fit on all rows replaces ``weights/headpose/calibration.json``.
"""
from __future__ import annotations

import argparse

import numpy as np

from viewdiff.faces.head_pose import CALIBRATION_FILE, CALIBRATION_PATH, YAW_KNOTS, Calibration, design_matrix
from viewdiff.paths import repo_relative
from viewdiff.training.pose_scores import (cfp_markdown, cfp_pose_scores, pointing04_markdown,
                                           pointing04_pose_scores, upright_markdown, upright_scores, yaw_bin)
from viewdiff.training.records import FaceRecords, load_records

RIDGE = 1.0


def _ridge(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.linalg.solve(x.T @ x + RIDGE * np.eye(x.shape[1]), x.T @ y)


def fit(p04: FaceRecords, cfp_frontal: FaceRecords) -> Calibration:
    """Yaw from Pointing'04 alone (linear, then the stretch from its per-pan means); pitch from Pointing'04 +
    CFP frontals at pitch 0 (found rows only)."""
    xp, xc = design_matrix(p04.pose_features), design_matrix(cfp_frontal.pose_features)
    yaw = _ridge(xp, p04.true_pose[:, 0])
    pitch = _ridge(np.r_[xp, xc], np.r_[p04.true_pose[:, 1], np.zeros(len(xc))])
    linear = np.abs(xp @ yaw)
    knots = [0.0] + [float(linear[yaw_bin(p04.true_pose[:, 0], k)].mean()) for k in YAW_KNOTS[1:]]   # Calibration checks that they increase
    return Calibration(tuple(map(float, yaw)), tuple(map(float, pitch)),
                       f"Pointing'04 {len(xp)} faces (yaw, pitch) + CFP {len(xc)} frontal faces (pitch 0)",
                       tuple(map(float, knots)))


def held_out_poses(p04: FaceRecords, cfp: FaceRecords) -> tuple[np.ndarray, np.ndarray]:
    """Poses of every row from a calibration fitted without it: Pointing'04 leave-one-person-out, CFP by fold."""
    frontal = cfp.view == "frontal"
    p04_pose = np.zeros((len(p04), 3), np.float32)
    for person in np.unique(p04.identity):
        out = p04.identity == person
        p04_pose[out] = fit(p04.subset(~out), cfp.subset(frontal)).apply(p04.pose_features[out])
    cfp_pose = np.zeros((len(cfp), 3), np.float32)
    for fold in np.unique(cfp.fold):
        out = cfp.fold == fold
        cfp_pose[out] = fit(p04, cfp.subset(frontal & ~out)).apply(cfp.pose_features[out])
    return p04_pose, cfp_pose


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", default="data/cache")
    p.add_argument("--backend", default="insightface")
    p.add_argument("--write", action="store_true", help=f"write weights/headpose/{CALIBRATION_FILE}")
    args = p.parse_args(argv)
    p04 = load_records(args.data_dir, "pointing04", args.backend)
    cfp = load_records(args.data_dir, "cfp", args.backend)
    p04, cfp = p04.subset(p04.found), cfp.subset(cfp.found)
    p04_pose, cfp_pose = held_out_poses(p04, cfp)
    print("held out (Pointing'04 leave-one-person-out, CFP out-of-fold):")
    print(pointing04_markdown(pointing04_pose_scores(p04_pose, p04.true_pose)))
    print(cfp_markdown(cfp_pose_scores(cfp_pose, cfp.view)))
    level = np.abs(p04.true_pose[:, 1]) <= 30
    sets = {"Pointing'04, abs(tilt) <= 30": p04_pose[level], "CFP frontal": cfp_pose[cfp.view == "frontal"],
            "CFP profile": cfp_pose[cfp.view == "profile"]}
    try:   # eyes-level in-the-wild crops, never used in the fit
        wild = load_records(args.data_dir, "cplfw_train", args.backend)
        wild = wild.subset(wild.found)
        sets["cplfw_train (in the wild, eyes level)"] = fit(p04, cfp.subset(cfp.view == "frontal")).apply(
            wild.pose_features)
    except FileNotFoundError:
        pass
    print(upright_markdown({name: upright_scores(pose) for name, pose in sets.items()}))
    if args.write:
        fit(p04, cfp.subset(cfp.view == "frontal")).save(CALIBRATION_PATH)
        print(f"wrote {repo_relative(CALIBRATION_PATH)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
