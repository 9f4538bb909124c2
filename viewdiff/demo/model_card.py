"""The demo's model card (Markdown): face embedder, gallery, same-person threshold, pose transformer.

Paths are shown relative to the repository (or ``../shared``), never as server paths.
"""
from __future__ import annotations

from pathlib import Path

from viewdiff.demo.calibration import THRESHOLDS, Threshold
from viewdiff.demo.messages import display_path, user_message


def weights_hint(backend: str, weights_dir: Path) -> str:
    """How to get transformer weights for this embedder (one sentence, Markdown)."""
    return (f"To get them, extract and train on CFP + Pointing'04 (research data, `../shared`): `python -m "
            f"viewdiff.training.extract --backend {backend} --datasets cfp,pointing04`, then `python -m "
            f"viewdiff.training.train --backend {backend} --datasets cfp,pointing04 --export_dir "
            f"{display_path(weights_dir)}`, and restart the demo (or pass `--weights DIR`).")


def _value(key: str, value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(key, v) for v in value)
    text = str(value)
    return display_path(text) if key.endswith(("_file", "_dir", "path")) or text.startswith("/") else text


def model_card(describe: dict, fallback_reason: str | None, gallery_line: str, threshold: Threshold | None,
               fingerprint: str | None, weights_dir: Path, weights_info: dict, weights_error: str | None,
               backend: str) -> str:
    lines = ["**Face embedder**"] + [f"- {k}: `{_value(k, v)}`" for k, v in describe.items()]
    if fallback_reason:
        lines.append(f"- why not the InsightFace pack: {user_message(fallback_reason)}")
    lines.append(f"- gallery: {gallery_line}")
    if threshold is not None:
        lines.append(f"- same-person threshold: cosine ≥ **{threshold.value:.3f}** (false-accept rate {threshold.far} on "
                     f"CFP-FP; {threshold.source or 'source not given'})")
    else:
        lines.append(f"- same-person threshold: none for this embedder (fingerprint `{fingerprint}` is not in "
                     f"`{display_path(THRESHOLDS)}`), so the similarity plot draws no threshold line and "
                     "names the closest identity without claiming a match")
    if weights_error is not None or not weights_info:
        lines += [f"\n**Pose transformer: not loaded** (looked in `{display_path(weights_dir)}`)", "",
                  f"> {user_message((weights_error or 'no weights').replace(str(weights_dir), display_path(weights_dir)))}",
                  "",
                  "Face analysis, head pose and raw gallery similarity work without it; the attention, voxel, "
                  "transformed-similarity and pose-sweep plots need its weights. " + weights_hint(backend, weights_dir)]
        return "\n".join(lines)
    config = weights_info["config"]
    lines += [f"\n**Pose transformer**: `{weights_info['class']}` from `{display_path(weights_dir)}`",
              "- " + ", ".join(f"{k}={v}" for k, v in config.items())]
    if weights_info.get("metadata"):
        lines += ["\n**Training metadata**"]
        lines += [f"- {k}: `{_value(k, v)}`" for k, v in weights_info["metadata"].items()]
    return "\n".join(lines)
