"""Head-pose scores: Pointing'04 against its true pose per |yaw| bin, CFP photos against what they are.

Shared by `python -m viewdiff.training.fit_head_pose` and `benchmarks/bench_pose.py`; the targets of the
head-pose work are checked against these figures.
"""
from __future__ import annotations

import numpy as np

from viewdiff.faces.head_pose import PNP_MAX_PITCH, PNP_MAX_ROLL

YAW_BINS = (0, 15, 30, 45, 60, 75, 90)   # Pointing'04's pans are multiples of 15 deg
# an upright head (eyes near level) read with |roll| or |pitch| above these is a reading no such head gives (the
# bounds the head-pose fusion itself uses on solvePnP's split)
IMPOSSIBLE_ROLL, IMPOSSIBLE_PITCH = PNP_MAX_ROLL, PNP_MAX_PITCH


def yaw_bin(true_yaw: np.ndarray, lo: float) -> np.ndarray:
    """[N] bool: the rows whose |true yaw| is in the bin centred on `lo` (+-7.5 deg)."""
    return np.abs(np.abs(true_yaw) - lo) < 7.5


def pointing04_pose_scores(pred: np.ndarray, true: np.ndarray) -> list[dict]:
    """pred, true [N, 3] (yaw, pitch, roll) -> a row per |true yaw| bin, then one for all.

    Row: yaw (bin or "all"), n, yaw_mae, yaw_bias (signed towards larger |yaw|: negative = under-read),
    sign (share of non-zero true yaws read with the right sign), pitch_mae, pitch_mae_level
    (|true pitch| <= 30), roll_abs_median (Pointing'04's heads are level: the roll error).
    """
    rows = []
    for lo in (*YAW_BINS, "all"):
        m = np.ones(len(true), bool) if lo == "all" else yaw_bin(true[:, 0], lo)
        if not m.any():
            continue
        err = pred[m, :2] - true[m, :2]
        turned = true[m, 0] != 0
        level = np.abs(true[m, 1]) <= 30
        rows.append({
            "yaw": lo, "n": int(m.sum()), "yaw_mae": float(np.abs(err[:, 0]).mean()),
            "yaw_bias": float(np.mean(err[turned, 0] * np.sign(true[m][turned, 0]))) if turned.any() else 0.0,
            "sign": float(np.mean(np.sign(pred[m][turned, 0]) == np.sign(true[m][turned, 0]))) if turned.any() else 1.0,
            "pitch_mae": float(np.abs(err[:, 1]).mean()),
            "pitch_mae_level": float(np.abs(err[level, 1]).mean()) if level.any() else float("nan"),
            "roll_abs_median": float(np.median(np.abs(pred[m, 2] - true[m, 2])))})
    return rows


def cfp_pose_scores(pred: np.ndarray, view: np.ndarray) -> dict:
    """pred [N, 3], view [N] ("frontal" | "profile") -> frontal pitch percentiles, |pitch| and |yaw| medians,
    share of frontals within 15 deg of level, profile |yaw| and |roll| medians (CFP's heads are upright)."""
    front, prof = pred[view == "frontal"], pred[view == "profile"]
    return {"frontal_n": len(front), "frontal_pitch_p10": float(np.percentile(front[:, 1], 10)),
            "frontal_pitch_median": float(np.median(front[:, 1])),
            "frontal_pitch_p90": float(np.percentile(front[:, 1], 90)),
            "frontal_abs_pitch_median": float(np.median(np.abs(front[:, 1]))),
            "frontal_within_15": float(np.mean(np.abs(front[:, 1]) <= 15)),
            "frontal_abs_yaw_median": float(np.median(np.abs(front[:, 0]))),
            "profile_n": len(prof), "profile_abs_yaw_median": float(np.median(np.abs(prof[:, 0]))),
            "profile_abs_roll_median": float(np.median(np.abs(prof[:, 2])))}


def pointing04_markdown(rows: list[dict]) -> str:
    lines = ["| abs(yaw) | n | yaw MAE | yaw bias | sign right | pitch MAE | pitch MAE, abs(tilt) <= 30 | "
             "median abs(roll) |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['yaw']} | {r['n']} | {r['yaw_mae']:.1f} | {r['yaw_bias']:+.1f} | {100 * r['sign']:.1f}% | "
              f"{r['pitch_mae']:.1f} | {r['pitch_mae_level']:.1f} | {r['roll_abs_median']:.1f} |" for r in rows]
    return "\n".join(lines)


def cfp_markdown(s: dict) -> str:
    return ("| CFP | value |\n|---|---|\n"
            f"| frontal pitch p10 / median / p90 ({s['frontal_n']} photos) | {s['frontal_pitch_p10']:.1f} / "
            f"{s['frontal_pitch_median']:.1f} / {s['frontal_pitch_p90']:.1f} |\n"
            f"| frontal median abs(pitch) | {s['frontal_abs_pitch_median']:.1f} |\n"
            f"| frontal within 15 deg of level | {100 * s['frontal_within_15']:.1f}% |\n"
            f"| frontal median abs(yaw) | {s['frontal_abs_yaw_median']:.1f} |\n"
            f"| profile median abs(yaw) ({s['profile_n']} photos) | {s['profile_abs_yaw_median']:.1f} |\n"
            f"| profile median abs(roll) | {s['profile_abs_roll_median']:.1f} |")


def impossible(pred: np.ndarray) -> np.ndarray:
    """pred [N, 3] -> [N] bool: readings an upright head cannot give (|roll| > `IMPOSSIBLE_ROLL` or |pitch| >
    `IMPOSSIBLE_PITCH`). Score it only on photos of upright heads: Pointing'04 at |tilt| <= 30, CFP, and the
    eyes-level crops of cplfw_train."""
    pred = np.asarray(pred)
    return (np.abs(pred[:, 2]) > IMPOSSIBLE_ROLL) | (np.abs(pred[:, 1]) > IMPOSSIBLE_PITCH)


def upright_scores(pred: np.ndarray) -> dict:
    """pred [N, 3] of upright heads -> n, the share of `impossible` readings, |roll| > 90 count, |roll| median
    and 95th percentile, |pitch| 95th percentile."""
    pred = np.asarray(pred)
    return {"n": len(pred), "impossible": float(impossible(pred).mean()), "roll_over_90": int((np.abs(pred[:, 2]) > 90).sum()),
            "roll_abs_median": float(np.median(np.abs(pred[:, 2]))),
            "roll_abs_p95": float(np.percentile(np.abs(pred[:, 2]), 95)),
            "pitch_abs_p95": float(np.percentile(np.abs(pred[:, 1]), 95))}


def upright_markdown(sets: dict[str, dict]) -> str:
    """`upright_scores` per set of photos -> a markdown table."""
    lines = [f"| upright heads | n | impossible (abs(roll) > {IMPOSSIBLE_ROLL:.0f} or abs(pitch) > "
             f"{IMPOSSIBLE_PITCH:.0f}) | abs(roll) > 90 | median / p95 abs(roll) | p95 abs(pitch) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {s['n']} | {100 * s['impossible']:.2f}% | {s['roll_over_90']} | {s['roll_abs_median']:.1f} / "
              f"{s['roll_abs_p95']:.1f} | {s['pitch_abs_p95']:.1f} |" for name, s in sets.items()]
    return "\n".join(lines)
