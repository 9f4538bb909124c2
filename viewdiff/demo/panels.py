"""What each plot panel of the demo shows for a pose result and the view controls, or why it is empty.

`Panels` turns a `PoseResult` (or None) into the four figures (`viewdiff.demo.plots`): the gallery
similarity (raw and transformed probe against the same gallery templates, with the embedder's same-person
threshold when one is known), the pose sweep, the attention map and the voxel grid with the face's measured
surface and 3D keypoints. An empty panel says why and what to do (drop a photo, add to the gallery, get weights).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from viewdiff.demo import plots, split_plot
from viewdiff.demo.calibration import Threshold
from viewdiff.demo.engine import SWEEP_YAWS, PoseResult
from viewdiff.demo.model_card import parts_sentence

VOXEL_QUANTITIES = ("feature strength", "density")   # the grid's channel norm; its opacity
MEAN_HEAD = -1  # the head control's value for the mean over heads
FOCUSED_HEAD = -2  # ... for the head whose rows are most peaked (lowest mean entropy): the default view
KEYPOINT_NAMES = ("left eye", "right eye", "nose", "left mouth", "right mouth")
SURE_PRESENCE = 0.5   # the face mesh's presence below which the drawn surface is marked "unsure"
MAP_CELL = "photo 0,0"   # the first cell token of a model that reads the embedder's 7x7 map
CAPTIONS = {   # per kind of model: one that reads the embedder's 7x7 map, or its embedding vector
    "attention": {
        "map": ("Which parts of the face the model looks at. The face recogniser sees the face cut into 7×7 "
                "squares; brighter squares get more attention. Left: your photo; right: its mirror image, a free "
                "second view of the same face that shows the hidden cheek. The percentages say how the attention "
                "splits between the two."),
        "vector": ("Which parts of its input the model looks at. Rows: the part that looks; columns: what it "
                   "looks at; each row sums to 1. `pose`: the head poses, `e0`..`e15`: 16 pieces of the face's "
                   "identity code, `3D`: the 3D view. This model reads the code, not regions of the face.")},
    "voxels": {
        "map": ("The model's 3D step: it places the face's features in a coarse {r}×{r}×{r} block of cells, turns "
                "the block from the photo's head pose to the target pose and looks at it from the front. This "
                "panel shows one {r}×{r} slice of that block: each square is one cell, brighter where the "
                "features are stronger. At {r} cells across it does not look like a face. The marks show where "
                "the eyes, nose and mouth corners land after the same turn; move the target yaw and they move. "
                "The light dots (in 3D: the light sheet) are your face's surface as measured from the photo, "
                "turned the same way: that is where the step places the photo's features before it looks at "
                "them. \"Unsure\" beside it: the face was hard to measure (turned far away or partly hidden). "
                "The panel shows what the step does, not that it helps."),
        "vector": ("The model's 3D step: a coarse {r}×{r}×{r} block of cells shaped by the 5 face landmarks, "
                   "turned from the photo's head pose to the target pose (one slice shown; each square is a "
                   "cell). The marks: the eyes, nose and mouth corners after the same turn; the light dots: your "
                   "face's surface as measured from the photo, turned the same way. This model's block "
                   "sees no regions of the face, only the landmarks and the identity code.")},
}
SIMILARITY_CAPTION = ("How much your face looks like each person in the gallery (1 = the same face). Grey: your "
                      "photo as it is; blue: after the model turned it to the target pose. Both are compared with "
                      "the same gallery photos, so they share one scale; ▲/▼: how a name's rank changes. Green "
                      "dashed line: the same-person threshold (only 1 in 1000 pairs of different people in a "
                      "public benchmark of celebrity photos score above it); below it the photo is \"not in the "
                      "gallery\".")


CAPTION_PARTS = {"attention": ("lora", "mirror"), "voxels": ("projection", "surface")}   # what each panel shows


def caption(panel: str, model_kind: str, resolution: int, evaluation: dict | None = None) -> str:
    """The caption under a plot panel ("attention" / "voxels") for a model kind ("map" / "vector"); with the
    weights' `evaluation` (``evaluation.json``), also what the parts the panel shows measurably add."""
    return " ".join(filter(None, [CAPTIONS[panel][model_kind].format(r=resolution),
                                  parts_sentence(evaluation, CAPTION_PARTS[panel])]))


@dataclass
class ViewOptions:
    """What the attention / voxel panels show (the values of their controls)."""

    layer: int | None = 0
    head: int | None = FOCUSED_HEAD
    quantity: str = VOXEL_QUANTITIES[0]
    axis: str = "z"
    index: int | None = 0
    as_3d: bool = False
    explain: str | None = None   # the gallery identity whose score the explanation splits (None: the best one)

    def __post_init__(self):  # values straight from the UI: None when a control is empty
        self.layer, self.index = int(self.layer or 0), int(self.index or 0)
        self.head = FOCUSED_HEAD if self.head is None else int(self.head)
        self.quantity = self.quantity if self.quantity in VOXEL_QUANTITIES else VOXEL_QUANTITIES[0]
        self.axis = self.axis if self.axis in plots.VOXEL_AXES else "z"
        self.as_3d = bool(self.as_3d)
        self.explain = self.explain or None


def most_focused_head(attention: np.ndarray) -> int:
    """The head of ``[H, T, T]`` attention whose rows have the lowest mean entropy (the most peaked weights)."""
    weights = np.clip(np.asarray(attention, np.float64), 1e-12, None)
    return int(np.argmin(-(weights * np.log(weights)).sum(-1).mean(-1)))


class Panels:
    """Figures for one loaded model (or none) and one embedder's threshold (or none)."""

    def __init__(self, model_loaded: bool, threshold: Threshold | None):
        self.model_loaded, self.threshold = model_loaded, threshold

    def missing(self, what: str, result: PoseResult | None) -> str:
        if result is None:
            return "Drop in a face photo."
        if not self.model_loaded:
            return (f"No {what}: there are no pose-transformer weights for this face embedder.<br>"
                    "Face analysis, head pose and raw similarity work without them.<br>"
                    "To get weights, train them: the command (--export_dir ...) is in the model card below.")
        return f"The loaded model does not produce {what}."

    def attention(self, result: PoseResult | None, view: ViewOptions, record=None,
                  chosen: dict[int, int] | None = None) -> plots.PlotSpec:
        """chosen: the photo's most selective head per layer (see `attention_weights`), kept in its session."""
        if result is None or result.attention is None:
            return plots.message_figure("Attention map", self.missing("attention weights", result))
        weights, which = self.attention_weights(result, view, chosen)
        if record is not None and MAP_CELL in result.token_labels:   # a map model: drawn over the face
            return plots.face_attention_figure(record.aligned_crop, weights, result.token_labels,
                                               f"Where the face's squares look: {which}")
        return plots.attention_figure(weights, result.token_labels, f"Attention: {which}")

    @staticmethod
    def attention_weights(result: PoseResult, view: ViewOptions,
                          chosen: dict[int, int] | None = None) -> tuple[np.ndarray, str]:
        """The [T, T] weights the controls choose (layer; one head, their mean or the most selective) and their
        name ("layer 1, head 3").

        The most selective head is chosen once per photo and layer, at the first result drawn, and kept in
        ``chosen`` (the session's): picked anew at every slider position it switched heads as the slider moved,
        so two target poses showed two different heads. Without ``chosen`` it is picked for this result.
        """
        layers, heads = result.attention.shape[:2]
        layer = int(np.clip(view.layer, 0, layers - 1))
        if view.head == MEAN_HEAD:
            weights, which = result.attention[layer].mean(0), f"mean of {heads} heads"
        elif view.head == FOCUSED_HEAD:
            if chosen is None:
                head = most_focused_head(result.attention[layer])
            else:
                head = chosen.setdefault(layer, most_focused_head(result.attention[layer]))
            weights, which = result.attention[layer, head], f"head {head + 1} (the most selective of {heads} for this photo)"
        else:
            head = int(np.clip(view.head, 0, heads - 1))
            weights, which = result.attention[layer, head], f"head {head + 1}"
        return weights, f"layer {layer + 1}, {which}"

    def voxels(self, result: PoseResult | None, view: ViewOptions, record=None) -> plots.PlotSpec:
        volume = result.volumes.get(view.quantity) if result is not None else None
        if volume is None:
            return plots.message_figure("Voxel grid", self.missing(f"voxel {view.quantity}", result))
        keypoints, surface = result.keypoints_grid, result.surface_grid
        unsure = result.surface_presence is not None and result.surface_presence < SURE_PRESENCE
        if view.as_3d:
            return plots.voxel_volume_figure(volume, view.quantity, keypoints, KEYPOINT_NAMES, surface, unsure)
        return plots.voxel_slice_figure(volume, view.axis, view.index, view.quantity, keypoints, KEYPOINT_NAMES,
                                        surface, unsure)

    def similarity(self, result: PoseResult | None) -> plots.PlotSpec:
        if result is None or not result.names:
            return plots.message_figure("Gallery similarity", "Your gallery is empty: add a face below."
                                        if result is not None else "Drop in a face photo.")
        return plots.similarity_figure(result.names, result.raw, result.transformed, self.threshold)

    def sweep(self, result: PoseResult | None) -> plots.PlotSpec:
        if result is None or result.sweep is None:
            if result is not None and self.model_loaded and not result.names:
                return plots.message_figure("Similarity as the face is turned",
                                            "Your gallery is empty: add a face below to see this curve.")
            return plots.message_figure("Similarity as the face is turned", self.missing("curve", result))
        best = result.best
        return plots.pose_sweep_figure(SWEEP_YAWS, result.sweep, float(result.raw[best]), result.names[best],
                                       float(result.target[0]), self.threshold)


SPLIT_LABEL_CHARS = 13   # the gallery face's label: three faces side by side fit a phone's width
EXPLANATION_CAPTION = (
    "Why the score is what it is. The face embedder reads the aligned face as 7×7 regions and ends in a plain "
    "sum over them, so a score splits exactly into one number per region plus a constant (the embedder's own "
    "offset, which belongs to no region): the numbers under each face add up to the score. Teal: the region "
    "makes the two faces agree (it adds to the score); brown: it disagrees (it takes from it); white: no say. "
    "Left: your photo's regions; middle: the same score split over the gallery photo's regions; right: what "
    "the pose transformer changed in each region (it mixes in the mirrored photo and changes the face's map; "
    "tap a region for the parts).")
NO_GALLERY_MAPS = "no face maps kept<br>for this entry:<br>add its photos again"


def shown_terms(total: float, terms: list[tuple[str, float]], first: str = "regions") -> list[tuple[str, float]]:
    """``[(first, rest), *terms]`` rounded to 3 decimals so that the numbers shown add up to ``total`` shown
    (``rest``: total minus the others, each as shown; it differs from the exact sum by less than the rounding)."""
    rounded = [(name, round(float(v), 3)) for name, v in terms if round(float(v), 3) != 0 or name == "constant"]
    return [(first, round(round(float(total), 3) - sum(v for _, v in rounded), 3))] + rounded


def _explanation_panels(e, result: PoseResult, record, i: int) -> list[dict]:
    from viewdiff.demo.explain import CHANGE, MIRROR, PHOTO
    crop = getattr(record, "aligned_crop", None)
    probe = e.transformed if e.transformed is not None else e.raw
    score = float(result.transformed[i] if e.transformed is not None else result.raw[i])
    others = [(name.split(" (")[0], float(v[i])) for name, v in probe.other.items()]
    panels = [{"label": "your face", "crop": crop, "regions": probe.regions[i], "total": score,
               "terms": shown_terms(score, [("constant", float(probe.constant[i]))] + others),
               "parts": {k: v[i] for k, v in probe.parts.items()}}]
    side = e.gallery_transformed if e.gallery_transformed is not None else e.gallery_raw
    label = plots.plot_text(plots.short_name(result.names[i], SPLIT_LABEL_CHARS))   # a visitor's name is text
    if side is None or e.gallery_missing[i] is not None:
        panels.append({"label": label, "crop": e.gallery_faces[i] if e.gallery_faces else None, "regions": None,
                       "note": NO_GALLERY_MAPS})
    else:
        parts = {k: v[i] for k, v in side.parts.items() if k != MIRROR or np.abs(v[i]).max() > 0}
        panels.append({"label": label, "crop": e.gallery_faces[i], "regions": side.regions[i], "total": score,
                       "terms": shown_terms(score, [("constant", float(side.constant[i]))]), "parts": parts})
    if e.transformed is not None:
        change, constant, other = e.change(i)
        raw = float(result.raw[i])
        parts = {"map change": e.transformed.parts[CHANGE][i] if CHANGE in e.transformed.parts else 0 * change,
                 "mirror view": e.transformed.parts.get(MIRROR, np.zeros((1, *change.shape)))[i],
                 "photo, rescaled": e.transformed.parts[PHOTO][i] - e.raw.regions[i]}
        panels.append({"label": "the turn", "crop": crop, "regions": change,
                       "total": score - raw, "parts": parts,
                       "terms": shown_terms(score - raw, [("constant", constant)]
                                            + [(k.split(" (")[0], v) for k, v in other.items()])})
    return panels


def explanation_figure(result: PoseResult | None, record=None, name: str | None = None,
                       missing: str = "Drop in a face photo.") -> plots.PlotSpec:
    """Why the photo scores what it does against gallery identity ``name`` (default: the best one), region by
    region: your face, the gallery face, and what the pose transformer changed (`PoseResult.explanation`).
    The numbers under each face add up to the score in the similarity plot (`EXPLANATION_CAPTION`)."""
    title = "Why this score, region by region"
    if result is None:
        return plots.message_figure(title, missing)
    e = result.explanation
    if not result.names:
        return plots.message_figure(title, "Your gallery is empty: add a face below.")
    if e is None:
        return plots.message_figure(title, "No split for this face embedder: only the shipped w600k_mbf<br>"
                                           "exposes the 7×7 map its score is a sum over.")
    i = result.names.index(name) if name in result.names else result.best
    score = float(result.transformed[i] if e.transformed is not None else result.raw[i])
    who = plots.plot_text(plots.short_name(result.names[i], plots.TITLE_NAME_CHARS))   # a visitor's name is text
    return split_plot.score_split_figure(f"Why {score:.3f} for {who}", _explanation_panels(e, result, record, i))
