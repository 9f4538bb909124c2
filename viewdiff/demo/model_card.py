"""The demo's model card (Markdown): face embedder, head pose, same-person threshold, pose transformer, gallery.

A summary in plain words first; the technical details (every model file, the configuration, the training
run) one click away. Paths are shown relative to the repository (or ``../shared``), never as server paths.
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


ONE_IN = {"1%": "1 in 100", "0.1%": "1 in 1000"}   # a false-accept rate in words
DATASET_NAMES = {"cfp": "CFP", "pointing04": "Pointing'04", "cplfw_train": "1,605 more people from CPLFW (in-the-wild photos)"}
TEST_NAMES = {"cplfw_train": "CPLFW"}   # a second test's people, never trained on


def _summary(describe: dict, fallback_reason: str | None, gallery_line: str, threshold: Threshold | None,
             weights_info: dict, weights_error: str | None, weights_hint_text: str) -> list[str]:
    """The card's plain-words part: what runs on a photo, when two faces count as one person, what is where."""
    if describe.get("backend") == "insightface":
        files = describe.get("models", {})
        finder = (f"InsightFace's face detector ({Path(str(files.get('detection', 'SCRFD'))).stem}) finds the faces; "
                  f"its recognition model {describe.get('pack', '')} turns the largest into an identity code of "
                  f"{describe.get('embedding_dim')} numbers.")
    else:
        finder = (f"dlib's face detector and recognition model (an identity code of {describe.get('embedding_dim')} "
                  "numbers, licence-clean, from PyPI).")
        if fallback_reason:
            finder += f" Used instead of the InsightFace pack because: {user_message(fallback_reason)}"
    lines = [f"- **Face finder and identity code:** {finder}",
             "- **Head pose:** three estimators (3DDFA_V2, FSA-Net and a fit of the 5 face keypoints), combined by "
             "a calibration fitted on Pointing'04 photos of known pose."]
    if threshold is not None:
        rate = ONE_IN.get(threshold.far, f"a share of {threshold.far} of the")
        lines.append(f"- **Same person?** A similarity of **{threshold.value:.3f}** or more counts as a match: only "
                     f"{rate} pairs of photos of different people in the CFP benchmark score that high.")
    else:
        lines.append("- **Same person?** No threshold is known for this face embedder, so the page names the closest "
                     "gallery entry without calling it a match.")
    if weights_info and weights_error is None:
        config, meta = weights_info.get("config", {}), weights_info.get("metadata", {})
        reads = ("the face embedder's 7×7 map of the face (49 regions) and that of the mirrored photo"
                 if config.get("map_channels") else "the identity code")
        datasets = " and ".join(DATASET_NAMES.get(d, d) for d in str(meta.get("datasets", "")).split(","))
        trained = (f", trained on {datasets} ({meta['train_pairs']} photo pairs, {meta['epochs']} passes)"
                   if {"datasets", "train_pairs", "epochs"} <= set(meta) else "")
        lines.append(f"- **Pose transformer:** reads {reads} and turns the identity code to the target pose{trained}. "
                     + measured_sentence(weights_info.get("evaluation")))
        if parts := parts_sentence(weights_info.get("evaluation"), heading="**What each part adds**"):
            lines.append(f"- {parts}")
    else:
        lines.append("- **Pose transformer: not loaded.** Face analysis, head pose and the raw similarity work "
                     f"without it. {weights_hint_text}")
    lines.append(f"- **Gallery:** {gallery_line}.")
    return lines


def _verdict(figures: dict) -> str:
    """'better than', 'level with' or 'worse than' the photo averaged with its mirror: better or worse only when the
    95% interval of the difference excludes 0."""
    low, high = figures.get("diff_ci95") or (float("nan"), float("nan"))
    return "better than" if low > 0 else "worse than" if high < 0 else "level with"


def measured_sentence(evaluation: dict | None) -> str:
    """What the evaluation measured for the shipped recipe, in plain words (`viewdiff.training.report.card_summary`,
    the weights' ``evaluation.json``); without one, where the measurement is."""
    if not evaluation:
        return ("How much that helps on people it never saw, and where it does not, is measured in the evaluation "
                "report that comes with the source code.")
    cfp = evaluation["cfp_fp"]
    wins, ties, losses = cfp["wins_ties_losses"]
    text = (f"Measured on people it never saw (CFP, frontal against profile photos, {evaluation['folds']} groups of "
            f"people): at 1 false accept in 1000 it accepts **{100 * cfp['model']:.1f}%** of true matches, against "
            f"{100 * cfp['raw']:.1f}% for the photo as it is and {100 * cfp['flip_fused']:.1f}% for the photo averaged "
            f"with its mirror image: **{_verdict(cfp)}** that simple trick (better in {wins}, equal in {ties}, worse "
            f"in {losses} of the groups).")
    second = evaluation.get("second")
    if second:
        text += (f" On in-the-wild photos of turned heads ({TEST_NAMES.get(second['dataset'], second['dataset'])} "
                 f"people never trained on): {100 * second['model']:.1f}% against {100 * second['raw']:.1f}% and "
                 f"{100 * second['flip_fused']:.1f}%, {_verdict(second)} the mirror trick.")
    return text


# what each part of the pose transformer is, in plain words (`viewdiff.training.report.PARTS`: its ablation)
PART_WORDS = {"projection": "the 3D step", "surface": "placing the features on the face's own measured surface "
              "(instead of an average face's)", "lora": "the pose-aware attention", "adaln": "the pose modulation of "
              "each layer", "mirror": "reading the mirror image as a second view", "prior": "prior preservation in "
              "training (frontal faces kept where they are)"}


def part_verdict(figures: dict) -> str:
    """Whether a part helps, from its with-minus-without (`viewdiff.training.report.part_figures`): clearly only when
    the 95% interval excludes 0; a gain (or loss) in nearly every group whose interval still includes 0 is said so."""
    low, high = figures["diff_ci95"]
    wins, ties, losses = figures["wins_ties_losses"]
    steady = 0.8 * (wins + ties + losses)
    return ("it helps" if low > 0 else "it hurts" if high < 0 else
            "better in nearly every group, though within the noise of this test" if wins >= steady and losses <= 1 else
            "worse in nearly every group, though within the noise of this test" if losses >= steady and wins <= 1 else
            "no clear difference")


def signed(points: float) -> str:
    """'+1.9', '-0.2'; '0.0' for what rounds to zero (not '-0.0')."""
    text = f"{points:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


def part_sentence(part: dict) -> str:
    """'the 3D step: no clear difference (-0.2 points on CFP, better in 1, worse in 5 of 10 groups; +0.2 in the
    wild)': one part's with-minus-without at 1 false accept in 1000, judged on CFP (`part_verdict`)."""
    cfp = part["cfp_fp"]
    wins, ties, losses = cfp["wins_ties_losses"]
    change = signed(100 * (cfp["with"] - cfp["without"]))
    text = (f"{PART_WORDS.get(part['part'], part['part'])}: {part_verdict(cfp)} ({change} points on CFP, "
            f"better in {wins}, worse in {losses} of {wins + ties + losses} groups")
    if "second" in part:
        text += f"; {signed(100 * (part['second']['with'] - part['second']['without']))} in the wild"
    return text + ")"


def parts_sentence(evaluation: dict | None, parts: tuple[str, ...] | None = None,
                   heading: str = "What each part adds") -> str:
    """`heading`, then what each part (all, or those in `parts`) adds, measured by retraining without it (with it, for
    prior preservation) on the same groups of people, in plain words; empty without that measurement."""
    found = [p for p in (evaluation or {}).get("ablations", {}).get("parts", []) if parts is None or p["part"] in parts]
    if not found:
        return ""
    seeds = len(evaluation["ablations"]["seeds"])
    text = (f"{heading}, measured by retraining the model without it (prior preservation: with it), "
            f"{seeds} training run{'s' if seeds > 1 else ''} per group of people, true matches accepted at 1 false "
            f"accept in 1000, with minus without: " + "; ".join(part_sentence(p) for p in found) + ".")
    if not any(part_verdict(p["cfp_fp"]).startswith(("it helps", "better")) for p in found):
        text += " None of these clearly helps."
    return text


def model_card(describe: dict, fallback_reason: str | None, gallery_line: str, threshold: Threshold | None,
               fingerprint: str | None, weights_dir: Path, weights_info: dict, weights_error: str | None,
               backend: str) -> str:
    """Markdown: a summary in plain words, then the technical details (models, configuration, training) in a
    collapsed ``<details>`` block, one click away."""
    hint = weights_hint(backend, weights_dir)
    summary = _summary(describe, fallback_reason, gallery_line, threshold, weights_info, weights_error, hint)
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
                  "transformed-similarity and pose-sweep plots need its weights. " + hint]
    else:
        lines += [f"\n**Pose transformer**: `{weights_info['class']}` from `{display_path(weights_dir)}`",
                  "- " + ", ".join(f"{k}={v}" for k, v in weights_info["config"].items())]
        if weights_info.get("metadata"):
            lines += ["\n**Training metadata**"]
            lines += [f"- {k}: `{_value(k, v)}`" for k, v in weights_info["metadata"].items() if k != "train_config"]
            if "train_config" in weights_info["metadata"]:
                lines.append("- train_config: " + ", ".join(f"{k}={_value(k, v)}" for k, v in
                                                           weights_info["metadata"]["train_config"].items()))
    return "\n".join([*summary, "", "<details><summary>Technical details: models, configuration, training</summary>",
                      "", *lines, "", "</details>"])
