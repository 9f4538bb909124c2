"""Figures of the demo: the annotated photo and the plotly plots (attention, voxels, similarity).

The plots are built as plain plotly JSON (`PlotSpec`: ``{"data": [...], "layout": {...}}``), not as
``plotly.graph_objects.Figure``: building and validating a ``go.Figure`` (with a template) costs
15-50 ms per plot on a busy 2-core machine, and a slider move redraws four plots, so the demo would
miss its 100 ms budget on figure bookkeeping alone. ``gr.Plot`` renders a `PlotSpec` with
plotly.js like any plotly figure (it calls ``to_json()``); ``PlotSpec.to_figure()`` returns the
validated ``go.Figure`` (the tests check every spec that way).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import cv2
import numpy as np
from plotly.colors import sequential

BEST = "#d62728"
RAW = "#9aa5b1"
TRANSFORMED = "#1f77b4"
KEYPOINT_COLOURS = [(0, 200, 255), (0, 120, 255), (255, 60, 60), (60, 200, 60), (40, 160, 40)]
VOXEL_AXES = ("x", "y", "z")
BEST_BAND = "rgba(214, 39, 40, 0.12)"


def _colorscale(colours: list[str]) -> list[list]:
    """Explicit colorscale: plotly.js knows only a few names (no "Magma"), plotly.py expands them itself."""
    return [[i / (len(colours) - 1), c] for i, c in enumerate(colours)]


VIRIDIS = _colorscale(sequential.Viridis)
MAGMA = _colorscale(sequential.Magma)
GRID = "#e5e8ec"


def _plain(value):
    """numpy scalars / arrays -> JSON types (floats rounded to 5 significant digits)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            if value.ndim > 1:
                return [_plain(v) for v in value]
            return [float(f"{v:.5g}") if math.isfinite(v) else None for v in value.tolist()]  # NaN: a gap
        return value.tolist()
    if isinstance(value, np.generic):
        item = value.item()
        return None if isinstance(item, float) and not math.isfinite(item) else item
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class PlotSpec(dict):
    """A plotly figure as JSON-ready dicts; ``gr.Plot`` accepts it like a ``go.Figure``."""

    def __init__(self, data: list[dict], layout: dict):
        super().__init__(data=data, layout=layout)

    @property
    def data(self) -> list[dict]:
        return self["data"]

    @property
    def layout(self) -> dict:
        return self["layout"]

    def to_json(self) -> str:
        return json.dumps(self, default=_plain, separators=(",", ":"))

    def to_figure(self):
        """The same figure as a validated ``plotly.graph_objects.Figure`` (raises on a bad property)."""
        import plotly.graph_objects as go
        return go.Figure(json.loads(self.to_json()))


def _axis(**kwargs) -> dict:
    return {"gridcolor": GRID, "zerolinecolor": GRID, "automargin": True, **kwargs}


def _figure(data: list[dict], title: str, height: int = 380, **layout) -> PlotSpec:
    base = {"title": {"text": title, "x": 0.02, "font": {"size": 14}}, "height": height,
            "margin": {"l": 10, "r": 10, "t": 44, "b": 10}, "paper_bgcolor": "white", "plot_bgcolor": "white",
            "xaxis": _axis(), "yaxis": _axis()}
    for key, value in layout.items():
        base[key] = {**base[key], **value} if key in ("xaxis", "yaxis") else value
    return PlotSpec(data, base)


def annotate_faces(image: np.ndarray, bboxes: Sequence, keypoints: Sequence) -> np.ndarray:
    """RGB copy of ``image`` with face boxes (first = the face used, thick) and 5 keypoints each."""
    out = np.ascontiguousarray(image[..., :3] if image.ndim == 3 else np.stack([image] * 3, -1)).copy()
    scale = max(1, round(max(out.shape[:2]) / 400))
    for i in reversed(range(len(bboxes))):
        x1, y1, x2, y2 = (int(round(v)) for v in bboxes[i])
        colour, width = ((40, 220, 40), 2 * scale) if i == 0 else ((170, 170, 170), scale)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, width, cv2.LINE_AA)
        for (x, y), kp_colour in zip(np.asarray(keypoints[i]), KEYPOINT_COLOURS):
            cv2.circle(out, (int(round(x)), int(round(y))), 2 * scale, kp_colour, -1, cv2.LINE_AA)
    return out


def message_figure(title: str, text: str) -> PlotSpec:
    """An empty plot that says why there is nothing to show (and what to do)."""
    note = {"text": text, "x": 0.5, "y": 0.5, "xref": "paper", "yref": "paper", "showarrow": False,
            "font": {"size": 13}, "align": "center"}
    return _figure([], title, height=260, annotations=[note], xaxis={"visible": False},
                   yaxis={"visible": False})


def attention_figure(attention: np.ndarray, labels: Sequence[str], title: str) -> PlotSpec:
    """Heatmap of one head's ``[T, T]`` attention weights (rows: queries, columns: keys)."""
    attention = np.asarray(attention, dtype=np.float32)
    labels = [f"{i}:{name}" for i, name in enumerate(labels)]  # unique, so plotly keeps every cell
    heatmap = {"type": "heatmap", "z": attention, "x": labels, "y": labels, "colorscale": VIRIDIS, "zmin": 0,
               "colorbar": {"title": {"text": "weight"}},
               "hovertemplate": "query %{y}<br>key %{x}<br>weight %{z:.3f}<extra></extra>"}
    return _figure([heatmap], title, height=420,
                   xaxis={"title": {"text": "key token"}, "tickangle": -45, "type": "category", "dtick": 1},
                   yaxis={"title": {"text": "query token"}, "autorange": "reversed", "type": "category", "dtick": 1})


def voxel_slice(volume: np.ndarray, axis: str, index: int) -> np.ndarray:
    """Slice of a ``[R, R, R]`` volume indexed ``[z, y, x]`` at ``axis`` = ``index``."""
    return np.take(volume, index, axis={"z": 0, "y": 1, "x": 2}[axis])


def voxel_slice_figure(volume: np.ndarray, axis: str, index: int, quantity: str) -> PlotSpec:
    """Heatmap of ``voxel_slice(volume, axis, index)`` with the two remaining axes labelled.

    The colour range is the whole volume's, so moving the slice compares like with like.
    """
    volume = np.asarray(volume, dtype=np.float32)
    index = int(np.clip(index, 0, volume.shape[0] - 1))
    rows, cols = {"z": ("y", "x"), "y": ("z", "x"), "x": ("z", "y")}[axis]
    heatmap = {"type": "heatmap", "z": voxel_slice(volume, axis, index), "colorscale": MAGMA,
               "zmin": float(volume.min()), "zmax": float(volume.max()), "colorbar": {"title": {"text": quantity}},
               "hovertemplate": f"{cols} %{{x}}, {rows} %{{y}}<br>{quantity} %{{z:.3g}}<extra></extra>"}
    return _figure([heatmap], f"Voxel grid: {quantity}, slice {axis} = {index} of {volume.shape[0] - 1}",
                   xaxis={"title": {"text": cols}, "constrain": "domain"},
                   yaxis={"title": {"text": rows}, "scaleanchor": "x", "autorange": "reversed"})


def voxel_volume_figure(volume: np.ndarray, quantity: str) -> PlotSpec:
    """3D isosurfaces of a ``[R, R, R]`` volume indexed ``[z, y, x]``."""
    volume = np.asarray(volume, dtype=np.float32)
    z, y, x = np.mgrid[: volume.shape[0], : volume.shape[1], : volume.shape[2]]
    lo, hi = float(np.quantile(volume, 0.6)), float(volume.max())
    iso = {"type": "isosurface", "x": x.ravel(), "y": y.ravel(), "z": z.ravel(), "value": volume.ravel(),
           "isomin": lo, "isomax": hi, "surface": {"count": 4}, "opacity": 0.35, "colorscale": MAGMA,
           "caps": {"x": {"show": False}, "y": {"show": False}, "z": {"show": False}},
           "colorbar": {"title": {"text": quantity}}}
    scene = {"xaxis": {"title": {"text": "x"}}, "yaxis": {"title": {"text": "y"}},
             "zaxis": {"title": {"text": "z (depth)"}}, "aspectmode": "cube"}
    return _figure([iso], f"Voxel grid: {quantity} (isosurfaces above the 60th percentile)", scene=scene)


def similarity_figure(names: Sequence[str], raw: np.ndarray, transformed: np.ndarray | None) -> PlotSpec:
    """Horizontal bars of cosine similarity per identity, best first; the best match's row is shaded red.

    Sorted (and "best") by the transformed similarity when there is one, else by the raw one.
    """
    raw = np.asarray(raw, dtype=np.float32)
    key = raw if transformed is None else np.asarray(transformed, dtype=np.float32)
    order = np.argsort(-key, kind="stable")
    sorted_names = [names[i] for i in order]
    bars = [{"type": "bar", "y": sorted_names, "x": raw[order], "orientation": "h", "name": "raw (photo's pose)",
             "marker": {"color": RAW if transformed is not None else TRANSFORMED},
             "hovertemplate": "%{y}: %{x:.3f}<extra>raw</extra>"}]
    if transformed is not None:
        bars.append({"type": "bar", "y": sorted_names, "x": key[order], "orientation": "h",
                     "name": "transformed (target pose)", "marker": {"color": TRANSFORMED},
                     "hovertemplate": "%{y}: %{x:.3f}<extra>transformed</extra>"})
    shapes = [{"type": "rect", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": -0.5, "y1": 0.5,
               "fillcolor": BEST_BAND, "line": {"color": BEST, "width": 1}, "layer": "below"}] if len(order) else []
    low = min(0.0, float(np.min(raw, initial=0.0)), float(np.min(key, initial=0.0))) - 0.02
    best = f"best match: {sorted_names[0]} ({key[order[0]]:.3f})" if len(order) else "gallery is empty"
    return _figure(bars, f"Gallery similarity ({best})", height=max(300, 100 + 34 * len(order)),
                   barmode="group", shapes=shapes, margin={"l": 10, "r": 10, "t": 70, "b": 10},
                   legend={"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom"},
                   xaxis={"title": {"text": "cosine similarity"}, "range": [low, 1.0]},
                   yaxis={"autorange": "reversed", "type": "category", "dtick": 1})


def pose_sweep_figure(yaws: np.ndarray, transformed: np.ndarray, raw: float, name: str,
                      target_yaw: float) -> PlotSpec:
    """Similarity to identity ``name`` as the target yaw sweeps; raw similarity as a flat reference."""
    line = {"type": "scatter", "x": np.asarray(yaws, dtype=np.float32),
            "y": np.asarray(transformed, dtype=np.float32), "mode": "lines+markers", "name": "transformed",
            "line": {"color": TRANSFORMED}, "hovertemplate": "yaw %{x}°: %{y:.3f}<extra></extra>"}
    shapes = [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": float(raw), "y1": float(raw),
               "line": {"color": RAW, "dash": "dash"}},
              {"type": "line", "yref": "paper", "y0": 0, "y1": 1, "x0": float(target_yaw), "x1": float(target_yaw),
               "line": {"color": BEST, "dash": "dot"}}]
    notes = [{"text": f"raw {raw:.3f}", "xref": "paper", "x": 1, "xanchor": "right", "y": float(raw),
              "yanchor": "bottom", "showarrow": False, "font": {"color": "#5f6b77"}},
             {"text": "target yaw", "yref": "paper", "y": 1, "yanchor": "bottom", "x": float(target_yaw),
              "showarrow": False, "font": {"color": BEST}}]
    return _figure([line], f"Pose sweep: similarity to {name}", height=300, shapes=shapes, annotations=notes,
                   showlegend=False,
                   xaxis={"title": {"text": "target yaw (deg)"}, "range": [-95, 95], "dtick": 30},
                   yaxis={"title": {"text": "cosine similarity"}})
