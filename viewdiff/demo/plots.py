"""Figures of the demo: the annotated photo and the plotly plots (attention, voxels, similarity).

The plots are built as plain plotly JSON (`PlotSpec`: ``{"data": [...], "layout": {...}}``), not as
``plotly.graph_objects.Figure``: building and validating a ``go.Figure`` (with a template) costs
15-50 ms per plot on a busy 2-core machine, and a slider move redraws four plots, so the demo would
miss its 100 ms budget on figure bookkeeping alone. ``gr.Plot`` renders a `PlotSpec` with
plotly.js like any plotly figure (it calls ``to_json()``); ``PlotSpec.to_figure()`` returns the
validated ``go.Figure`` (the tests check every spec that way).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence

import cv2
import numpy as np
from plotly.colors import sequential

TARGET_MARKER = "#5f6b77"   # the target-yaw marker of the pose sweep
RAW = "#9aa5b1"
TRANSFORMED = "#1f77b4"
KEYPOINT_COLOURS = [(0, 200, 255), (0, 120, 255), (255, 60, 60), (60, 200, 60), (40, 160, 40)]
VOXEL_AXES = ("x", "y", "z")
SAME_PERSON = "#2ca02c"
MATCH_BAND = "rgba(44, 160, 44, 0.14)"   # a match is green (red would read as an error)


def _colorscale(colours: list[str]) -> list[list]:
    """Explicit colorscale: plotly.js knows only a few names (no "Magma"), plotly.py expands them itself."""
    return [[i / (len(colours) - 1), c] for i, c in enumerate(colours)]


VIRIDIS = _colorscale(sequential.Viridis)
MAGMA = _colorscale(sequential.Magma)
GRID = "#e5e8ec"


LABEL_CHARS = 22   # a gallery name longer than this is shortened on the similarity plot's axis (full name on hover)
TITLE_NAME_CHARS = 40   # ... and in a plot's title


def plot_text(text: str) -> str:
    """``text`` as plotly shows it literally: plotly renders a subset of HTML (``<a href>``, ``<b>``, ``<br>``, ...)
    in titles, tick labels, legends and hover text, so a visitor's gallery name is escaped (plotly turns the
    entities back into the characters)."""
    return html.escape(str(text), quote=False)


def short_name(name: str, limit: int = LABEL_CHARS) -> str:
    """``name`` cut to ``limit`` characters with an ellipsis (the whole name when it fits); not escaped."""
    name = " ".join(str(name).split())
    return name if len(name) <= limit else name[:limit - 1].rstrip() + "…"


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
    # fixed margins instead of automargin: automargin makes plotly lay a figure out twice per redraw
    return {"gridcolor": GRID, "zerolinecolor": GRID, **kwargs}


def _figure(data: list[dict], title: str, height: int = 380, **layout) -> PlotSpec:
    # the title hangs from the figure's top edge: the page wraps a long one (app.DRAW_PLOT) and adds the lines
    # to the top margin, so it never runs into a legend or label just above the plot area
    base = {"title": {"text": title, "x": 0.02, "xanchor": "left", "y": 1, "yref": "container", "yanchor": "top",
                      "pad": {"t": 10}, "font": {"size": 14}}, "height": height,
            "margin": {"l": 64, "r": 10, "t": 44, "b": 48}, "paper_bgcolor": "white", "plot_bgcolor": "white",
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


def token_names(labels: Sequence[str]) -> list[str]:
    """Token labels as they are when unique, else prefixed with their index (plotly merges equal categories)."""
    labels = [str(name) for name in labels]
    return labels if len(set(labels)) == len(labels) else [f"{i}:{name}" for i, name in enumerate(labels)]


def attention_figure(attention: np.ndarray, labels: Sequence[str], title: str) -> PlotSpec:
    """Heatmap of ``[T, T]`` attention weights (rows: queries, columns: keys)."""
    attention = np.asarray(attention, dtype=np.float32)
    labels = token_names(labels)
    heatmap = {"type": "heatmap", "z": attention, "x": labels, "y": labels, "colorscale": VIRIDIS, "zmin": 0,
               "colorbar": {"title": {"text": "weight"}, "thickness": 12},
               "hovertemplate": "query %{y} reads key %{x}<br>weight %{z:.3f}<extra></extra>"}
    tick = {"type": "category", "dtick": 1, "tickfont": {"size": 11}}
    return _figure([heatmap], title, height=440, margin={"l": 96, "r": 10, "t": 44, "b": 90},
                   xaxis={"title": {"text": "key token (read)"}, "tickangle": -90, **tick},
                   yaxis={"title": {"text": "query token (reads)"}, "autorange": "reversed", **tick})


CELL_GROUPS = (("photo", "the photo"), ("mirror", "its mirror image"), ("3D", "3D view at the target pose"))


def image_source(rgb: np.ndarray) -> str:
    """An RGB image as a JPEG data URI (a plotly ``image`` trace's ``source``: ~5 kB for a face crop, where the
    pixels as JSON numbers would be ~150 kB)."""
    import base64
    _, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(np.asarray(rgb, np.uint8)[..., ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, 88])
    return "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode()


def face_attention_figure(crop: np.ndarray, attention: np.ndarray, labels: Sequence[str], title: str) -> PlotSpec:
    """Where the face's cells look: ``[T, T]`` attention averaged over the queries that are the photo's cells,
    drawn as 7x7 heat over the aligned crop, one panel per group of key cells (the photo, its mirror image
    shown mirrored, the projection layer's 3D view). One colour scale for all panels; the title says how the
    attention splits between the groups (and the pose token)."""
    attention, labels = np.asarray(attention, np.float32), list(labels)
    queries = [i for i, name in enumerate(labels) if name.startswith("photo ")]
    read = attention[queries].mean(0)   # [T]: how much the photo's cells read each key
    groups = [(key, text, [i for i, name in enumerate(labels) if name.startswith(key + " ")])
              for key, text in CELL_GROUPS]
    groups = [g for g in groups if g[2]]
    size = int(round(math.sqrt(len(groups[0][2]))))
    crop = np.asarray(crop, np.uint8)
    zmax = float(max(read[idx].max() for _, _, idx in groups))
    data, layout, notes, width = [], {}, [], 1.0 / len(groups)
    for n, (key, text, idx) in enumerate(groups):
        grid = read[idx].reshape(size, size)
        picture = crop
        if key == "mirror":   # the mirror's cells sit on the photo's face regions: show them on the mirror image
            grid, picture = grid[:, ::-1], crop[:, ::-1]
        axis = "" if n == 0 else str(n + 1)
        cell = crop.shape[1] / size
        data.append({"type": "image", "source": image_source(picture), "xaxis": f"x{axis}", "yaxis": f"y{axis}",
                     "hoverinfo": "skip"})
        data.append({"type": "heatmap", "z": grid, "x0": cell / 2, "dx": cell, "y0": cell / 2, "dy": cell,
                     "xaxis": f"x{axis}", "yaxis": f"y{axis}", "opacity": 0.55, "colorscale": VIRIDIS, "zmin": 0,
                     "zmax": zmax, "showscale": n == len(groups) - 1,
                     "colorbar": {"title": {"text": "weight"}, "thickness": 10},
                     "hovertemplate": f"{text}: weight %{{z:.3f}}<extra></extra>"})
        domain = [n * width + 0.01, (n + 1) * width - 0.03]
        layout[f"xaxis{axis}"] = {"domain": domain, "visible": False, "range": [0, crop.shape[1]]}
        layout[f"yaxis{axis}"] = {"visible": False, "range": [crop.shape[0], 0], "scaleanchor": f"x{axis}"}
        # two lines: side by side on a phone, "the photo: 50%" and "its mirror image: 49%" printed over each other
        notes.append({"text": f"{text}<br>{100 * read[idx].sum():.0f}%", "x": sum(domain) / 2, "xref": "paper",
                      "y": 1.0, "yref": "paper", "yanchor": "bottom", "xanchor": "center", "showarrow": False,
                      "font": {"size": 12}})   # centred: plotly's "auto" anchors moved both towards the middle
    pose = [i for i, name in enumerate(labels) if name == "pose"]
    if pose:
        notes.append({"text": f"the target pose itself: {100 * read[pose].sum():.0f}%", "x": 1, "xref": "paper", "xanchor": "right",
                      "y": -0.02, "yref": "paper", "yanchor": "top", "showarrow": False, "font": {"size": 11}})
    fig = _figure(data, title, height=310, annotations=notes, margin={"l": 10, "r": 10, "t": 78, "b": 24})
    fig.layout.pop("xaxis"), fig.layout.pop("yaxis")
    fig.layout.update(layout)
    return fig


def voxel_slice(volume: np.ndarray, axis: str, index: int) -> np.ndarray:
    """Slice of a ``[R, R, R]`` volume indexed ``[z, y, x]`` at ``axis`` = ``index``."""
    return np.take(volume, index, axis={"z": 0, "y": 1, "x": 2}[axis])


SLICE_AXES = {"z": ("y", "x"), "y": ("z", "x"), "x": ("z", "y")}  # slice axis -> (rows, columns)


KEYPOINT_PARTS = (("eyes", (0, 1), "#00c8ff", "x-thin"), ("nose", (2,), "#7CFC00", "cross-thin"),
                  ("mouth corners", (3, 4), "#ff5ec4", "x-thin"))   # keypoints in viewdiff.demo.panels.KEYPOINT_NAMES order


def _keypoint_marks(keypoints: np.ndarray, names: Sequence[str], rows: str, cols: str, axis: str,
                    index: int) -> list[dict]:
    """The keypoints [K, 3] (x, y, z voxel units) projected onto the slice plane: one scatter per part (eyes,
    nose, mouth corners) named in the legend, each point's name on hover. No text on the slice: at a target
    yaw of +-90 the five keypoints fall in one column and labels would print over each other."""
    kp = {"x": keypoints[:, 0], "y": keypoints[:, 1], "z": keypoints[:, 2]}
    traces = []
    for part, rows_of_part, colour, symbol in KEYPOINT_PARTS:
        pick = [i for i in rows_of_part if i < len(keypoints)]
        if not pick:
            continue
        traces.append({"type": "scatter", "x": kp[cols][pick], "y": kp[rows][pick], "mode": "markers", "name": part,
                       "text": [names[i] if i < len(names) else part for i in pick],
                       "customdata": kp[axis][pick] - index, "showlegend": True,
                       "marker": {"symbol": symbol, "size": 12, "line": {"width": 2.5, "color": colour}},
                       "hovertemplate": f"%{{text}}: {cols} %{{x:.1f}}, {rows} %{{y:.1f}}<br>"
                                        f"%{{customdata:+.1f}} cells from this slice along {axis}<extra></extra>"})
    return traces


SURFACE_COLOUR = "rgba(230, 242, 255, 0.5)"   # the measured face surface: light, under the keypoints' marks,
SURFACE_EDGE = "rgba(70, 90, 120, 0.5)"        # with a thin dark rim (seen on the bright cells and the legend)
SURFACE_NAME = "face surface"
SURFACE_UNSURE = " (unsure)"   # the face mesh's presence < 0.5: the face was hard to measure


def _surface_points(surface: np.ndarray, rows: str, cols: str, unsure: bool) -> dict:
    """The measured surface's vertices [N, 3] (x, y, z voxel units) projected onto the slice plane: a light
    point cloud (its outline is the face's outline at the target pose, seen along the slice's axis)."""
    v = {"x": surface[:, 0], "y": surface[:, 1], "z": surface[:, 2]}
    return {"type": "scatter", "x": v[cols], "y": v[rows], "mode": "markers", "showlegend": True,
            "name": SURFACE_NAME + (SURFACE_UNSURE if unsure else ""), "hoverinfo": "skip",
            "marker": {"size": 4, "color": SURFACE_COLOUR, "line": {"width": 0.5, "color": SURFACE_EDGE}}}


def voxel_slice_figure(volume: np.ndarray, axis: str, index: int, quantity: str,
                       keypoints: np.ndarray | None = None, names: Sequence[str] = (),
                       surface: np.ndarray | None = None, surface_unsure: bool = False) -> PlotSpec:
    """Heatmap of ``voxel_slice(volume, axis, index)`` with the two remaining axes labelled.

    The colour range is the whole volume's, so moving the slice compares like with like. keypoints
    [K, 3] (x, y, z in voxel units) are marked where they project onto the slice plane, over the measured
    face surface's vertices (`surface` [N, 3], same units: a light point cloud; "unsure" in the legend when
    `surface_unsure`).
    """
    volume = np.asarray(volume, dtype=np.float32)
    index = int(np.clip(index, 0, volume.shape[0] - 1))
    rows, cols = SLICE_AXES[axis]
    heatmap = {"type": "heatmap", "z": voxel_slice(volume, axis, index), "colorscale": MAGMA,
               "zmin": float(volume.min()), "zmax": float(volume.max()),
               "colorbar": {"title": {"text": quantity}, "thickness": 12},
               "hovertemplate": f"{cols} %{{x}}, {rows} %{{y}}<br>{quantity} %{{z:.3g}}<extra></extra>"}
    data = [heatmap]
    if surface is not None:
        data.append(_surface_points(np.asarray(surface, np.float32), rows, cols, surface_unsure))
    if keypoints is not None:
        data += _keypoint_marks(np.asarray(keypoints, np.float32), names, rows, cols, axis, index)
    last = volume.shape[0] - 1
    return _figure(data, f"Voxel grid: {quantity}, slice {axis} = {index} of {last}", height=400, showlegend=True,
                   legend={"orientation": "h", "x": 0, "y": -0.3, "yanchor": "top", "itemsizing": "constant"},
                   margin={"l": 64, "r": 10, "t": 44, "b": 96},
                   xaxis={"title": {"text": cols}, "constrain": "domain", "range": [-0.5, last + 0.5]},
                   yaxis={"title": {"text": rows + (" (0 = front)" if rows == "z" else "")}, "scaleanchor": "x",
                          "range": [last + 0.5, -0.5]})


def voxel_volume_figure(volume: np.ndarray, quantity: str, keypoints: np.ndarray | None = None,
                        names: Sequence[str] = (), surface: np.ndarray | None = None,
                        surface_unsure: bool = False) -> PlotSpec:
    """3D isosurfaces of a ``[R, R, R]`` volume indexed ``[z, y, x]``, the keypoints [K, 3] as markers and the
    measured face surface (`surface`: the face mesh's vertices [468, 3], same voxel units) as its triangles
    (`viewdiff.faces.face_mesh.triangles`), light and half transparent."""
    volume = np.asarray(volume, dtype=np.float32)
    z, y, x = np.mgrid[: volume.shape[0], : volume.shape[1], : volume.shape[2]]
    lo, hi = float(np.quantile(volume, 0.6)), float(volume.max())
    iso = {"type": "isosurface", "x": x.ravel(), "y": y.ravel(), "z": z.ravel(), "value": volume.ravel(),
           "isomin": lo, "isomax": hi, "surface": {"count": 4}, "opacity": 0.35, "colorscale": MAGMA,
           "caps": {"x": {"show": False}, "y": {"show": False}, "z": {"show": False}},
           "colorbar": {"title": {"text": quantity}}}
    data = [iso]
    if surface is not None:
        from viewdiff.faces.face_mesh import triangles
        v, tri = np.asarray(surface, np.float32), triangles()
        data.append({"type": "mesh3d", "x": v[:, 0], "y": v[:, 1], "z": v[:, 2], "i": tri[:, 0], "j": tri[:, 1],
                     "k": tri[:, 2], "color": "#dcebfa", "opacity": 0.5, "flatshading": True, "hoverinfo": "skip",
                     "name": SURFACE_NAME + (SURFACE_UNSURE if surface_unsure else ""), "showlegend": True})
    if keypoints is not None:
        kp = np.asarray(keypoints, np.float32)
        data.append({"type": "scatter3d", "x": kp[:, 0], "y": kp[:, 1], "z": kp[:, 2], "mode": "markers",
                     "text": list(names), "hovertemplate": "%{text}<extra></extra>",
                     "marker": {"size": 4, "color": "#00c8ff"}, "showlegend": False})
    scene = {"xaxis": {"title": {"text": "x"}}, "yaxis": {"title": {"text": "y"}},
             "zaxis": {"title": {"text": "z (depth)"}}, "aspectmode": "cube"}
    legend = {"legend": {"orientation": "h", "x": 0, "y": 0, "yanchor": "top"}} if surface is not None else {}
    return _figure(data, f"Voxel grid: {quantity} (isosurfaces above the 60th percentile)", scene=scene, **legend)


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each score (1 = highest)."""
    ranks = np.empty(len(scores), int)
    ranks[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
    return ranks


def similarity_figure(names: Sequence[str], raw: np.ndarray, transformed: np.ndarray | None,
                      threshold=None) -> PlotSpec:
    """Horizontal bars of cosine similarity per identity on one fixed scale, best first.

    raw and transformed are both against the same gallery templates. Sorted (and "best") by the
    transformed similarity when there is one, else by the raw one; each name carries its rank
    change (raw -> transformed). threshold (`Threshold` or None): a same-person line; the best
    match is named (and its row shaded) only above it, else the title says "not in the gallery";
    without a threshold the title names the closest identity and claims no match.

    Names are the visitor's text: escaped (`plot_text`), and on the axis shortened to `LABEL_CHARS`
    (`short_name`; the full name on hover), so the left margin stays bounded. Rows are numbered 0..N-1
    on the y axis with the names as tick labels: two long names that shorten alike stay two rows.
    """
    raw = np.asarray(raw, dtype=np.float32)
    key = raw if transformed is None else np.asarray(transformed, dtype=np.float32)
    order = np.argsort(-key, kind="stable")
    raw_rank, key_rank = _ranks(raw), _ranks(key)
    labels = []
    for i in order:
        moved = raw_rank[i] - key_rank[i]
        mark = f" ▲{moved}" if moved > 0 else f" ▼{-moved}" if moved < 0 else ""
        labels.append(f"{short_name(names[i])}{mark if transformed is not None else ''}")
    rows = np.arange(len(order))
    hover = [[plot_text(names[i]), f"rank {raw_rank[i]} as it is → {key_rank[i]} turned"] for i in order]
    bars = [{"type": "bar", "y": rows, "x": raw[order], "orientation": "h", "name": "your photo as it is",
             "marker": {"color": RAW}, "customdata": hover,
             "hovertemplate": "%{customdata[0]}: %{x:.3f}<br>%{customdata[1]}<extra>as it is</extra>"}]
    if transformed is not None:
        bars.append({"type": "bar", "y": rows, "x": key[order], "orientation": "h",
                     "name": "turned to the target pose", "marker": {"color": TRANSFORMED}, "customdata": hover,
                     "hovertemplate": "%{customdata[0]}: %{x:.3f}<br>%{customdata[1]}<extra>turned</extra>"})
    best, score = (plot_text(short_name(names[order[0]], TITLE_NAME_CHARS)), float(key[order[0]])) \
        if len(order) else (None, 0.0)
    shapes, axis_title = [], "similarity (1 = the same face)"
    if best is not None and threshold is not None and score >= threshold.value:  # a match only when calibrated
        shapes.append({"type": "rect", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": -0.5, "y1": 0.5,
                       "fillcolor": MATCH_BAND, "line": {"color": SAME_PERSON, "width": 1}, "layer": "below"})
    if threshold is not None:
        shapes.append({"type": "line", "yref": "paper", "y0": 0, "y1": 1, "x0": threshold.value,
                       "x1": threshold.value, "line": {"color": SAME_PERSON, "width": 2, "dash": "dash"}})
        # named under the axis, not on the plot, where it would print over the bars it marks
        axis_title = f"similarity (green line: same person ≥ {threshold.value:.2f})"
    if best is None:
        title = "Gallery similarity (gallery is empty)"
    elif threshold is None:
        title = f"Closest: {best} ({score:.3f}); no same-person threshold for this face model"
    elif score >= threshold.value:
        title = f"Match: {best} ({score:.3f} ≥ {threshold.value:.2f})"
    else:
        title = f"Not in the gallery: best score {score:.3f} ({best}) is below {threshold.value:.2f}"
    low = min(0.0, float(np.min(raw, initial=0.0)), float(np.min(key, initial=0.0)))
    return _figure(bars, title, height=max(280, 110 + 30 * len(order)), barmode="group", shapes=shapes,
                   margin={"l": 8 + 7 * max(map(len, labels), default=10), "r": 10, "t": 64, "b": 48},
                   legend={"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom"},
                   xaxis={"title": {"text": axis_title},
                          "range": [math.floor(low * 10) / 10 - 0.02, 1.0]},
                   yaxis={"autorange": "reversed", "tickmode": "array", "tickvals": rows,
                          "ticktext": [plot_text(label) for label in labels], "zeroline": False,
                          "range": [len(order) - 0.5, -0.5] if len(order) else None})


def pose_sweep_figure(yaws: np.ndarray, transformed: np.ndarray, raw: float, name: str, target_yaw: float,
                      threshold=None) -> PlotSpec:
    """Similarity to identity ``name`` as the target yaw sweeps, on a fixed y-axis; raw similarity and the
    same-person threshold as flat reference lines named in the legend (labels on the plot would print over
    each other when the two are close), the current target yaw as a vertical marker: ``shapes[0]``, labelled
    by ``annotations[0]`` (the page draws these two itself, as a line that follows the slider,
    `app.SWEEP_MARKER`)."""
    transformed = np.asarray(transformed, dtype=np.float32)
    line = {"type": "scatter", "x": np.asarray(yaws, dtype=np.float32), "y": transformed,
            "mode": "lines+markers", "name": "turned to each yaw", "line": {"color": TRANSFORMED},
            "hovertemplate": "target yaw %{x}°: %{y:.3f}<extra></extra>"}
    ends = np.array([-95.0, 95.0], np.float32)
    data = [line, {"type": "scatter", "x": ends, "y": np.full(2, raw, np.float32), "mode": "lines",
                   "name": f"photo as it is {raw:.3f}", "line": {"color": RAW, "dash": "dash"}, "hoverinfo": "skip"}]
    if threshold is not None:
        data.append({"type": "scatter", "x": ends, "y": np.full(2, threshold.value, np.float32), "mode": "lines",
                     "name": f"same person ≥ {threshold.value:.2f}", "hoverinfo": "skip",
                     "line": {"color": SAME_PERSON, "dash": "dash", "width": 1}})
    shapes = [{"type": "line", "yref": "paper", "y0": 0, "y1": 1, "x0": float(target_yaw), "x1": float(target_yaw),
               "line": {"color": TARGET_MARKER, "dash": "dot"}}]
    notes = [{"text": f"target yaw {target_yaw:+.0f}°", "yref": "paper", "y": 1, "yanchor": "bottom",
              "x": float(target_yaw), "xanchor": "right" if target_yaw > 0 else "left", "showarrow": False,
              "font": {"color": TARGET_MARKER}}]
    low = min(0.0, float(np.nanmin(transformed, initial=0.0)), float(raw))
    return _figure(data, f"Similarity to {plot_text(short_name(name, TITLE_NAME_CHARS))} as the face is turned",
                   height=300, shapes=shapes, meta={"target_marker": True},
                   annotations=notes, showlegend=True, margin={"l": 64, "r": 10, "t": 44, "b": 72},
                   legend={"orientation": "h", "x": 0, "y": -0.22, "yanchor": "top"},
                   xaxis={"title": {"text": "target yaw (deg)", "standoff": 4}, "range": [-95, 95], "dtick": 30},
                   yaxis={"title": {"text": "similarity"}, "range": [math.floor(low * 5) / 5, 1.0]})
