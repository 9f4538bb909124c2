"""The score-split figure: faces whose 7x7 regions are coloured by what each adds to a score
(`viewdiff.demo.explain`, drawn by `viewdiff.demo.panels.explanation_figure`)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from viewdiff.demo.plots import PlotSpec, _figure, image_source


# agrees / disagrees: BrBG's ends (colour-blind safe; red would read as an error), white at zero
SPLIT_SCALE = [[0.0, "#8c510a"], [0.25, "#d8b365"], [0.5, "#f5f5f5"], [0.75, "#5ab4ac"], [1.0, "#01665e"]]


def score_split_figure(title: str, panels: Sequence[dict], height: int = 300) -> PlotSpec:
    """Faces side by side, each 7x7 region coloured by what it adds to (agrees) or takes from (disagrees) a
    score, on one diverging scale with zero in the middle (white), named in words under the title (no colour
    bar: it would take a phone's width); under each face, the terms it shows and their sum.

    panels: dicts with ``label`` (str), ``crop`` ([112, 112, 3] uint8 or None: a grey square),
    ``regions`` ([S, S] terms, row 0 at the top of the aligned face; None: no split, ``note`` says why),
    ``terms`` ([(name, value)]: the numbers shown, which add up to ``total``), ``total`` (float),
    ``parts`` ({name: [S, S]}: named components shown on hover) and ``mirror_picture`` (draw the crop
    mirrored; default False). Keep it light: one JPEG per face (~5 kB), 49 numbers per panel.
    """
    shown = [np.asarray(p["regions"], np.float32) for p in panels if p.get("regions") is not None]
    zmax = max([float(np.abs(r).max()) for r in shown] + [1e-6])
    data, layout, notes, width = [], {}, [], 1.0 / max(1, len(panels))
    for n, panel in enumerate(panels):
        axis = "" if n == 0 else str(n + 1)
        crop = panel.get("crop")
        crop = np.full((112, 112, 3), 200, np.uint8) if crop is None else np.asarray(crop, np.uint8)
        if panel.get("mirror_picture"):
            crop = crop[:, ::-1]
        side = crop.shape[1]
        data.append({"type": "image", "source": image_source(crop), "xaxis": f"x{axis}", "yaxis": f"y{axis}",
                     "hoverinfo": "skip"})
        domain = [n * width + 0.015, (n + 1) * width - 0.015]
        layout[f"xaxis{axis}"] = {"domain": domain, "visible": False, "range": [0, side]}
        layout[f"yaxis{axis}"] = {"domain": [0.3, 0.94], "visible": False, "range": [crop.shape[0], 0],
                                  "scaleanchor": f"x{axis}"}
        centre = sum(domain) / 2
        notes.append({"text": f"<b>{panel['label']}</b>", "x": centre, "xref": "paper", "y": 0.95, "yref": "paper",
                      "yanchor": "bottom", "showarrow": False, "font": {"size": 10}})
        if panel.get("regions") is None:
            notes.append({"text": panel.get("note", "no split"), "x": centre, "xref": "paper", "y": 0.6,
                          "yref": "paper", "showarrow": False, "font": {"size": 10}, "bgcolor": "white"})
            continue
        regions = np.asarray(panel["regions"], np.float32)
        size = regions.shape[0]
        cell = side / size
        parts = panel.get("parts") or {}
        hover = "region row %{customdata[0]}, column %{customdata[1]}: %{z:+.4f}"
        custom = np.stack([*np.meshgrid(np.arange(1, size + 1), np.arange(1, size + 1))[::-1]]
                          + [np.asarray(v, np.float32) for v in parts.values()], -1)
        for k, name in enumerate(parts):
            hover += f"<br>{name} %{{customdata[{k + 2}]:+.4f}}"
        data.append({"type": "heatmap", "z": regions, "x0": cell / 2, "dx": cell, "y0": cell / 2, "dy": cell,
                     "xaxis": f"x{axis}", "yaxis": f"y{axis}", "opacity": 0.6, "colorscale": SPLIT_SCALE,
                     "zmin": -zmax, "zmax": zmax, "zmid": 0, "customdata": custom,
                     "hovertemplate": hover + "<extra></extra>", "showscale": False})
        lines = [f"{name} {value:+.3f}" for name, value in panel["terms"]] + [f"= <b>{panel['total']:+.3f}</b>"]
        notes.append({"text": "<br>".join(lines), "x": centre, "xref": "paper", "y": 0.28, "yref": "paper",
                      "yanchor": "top", "showarrow": False, "font": {"size": 9}, "align": "center"})   # 3 fit 412 px
    notes.append({"text": f"<span style='color:{SPLIT_SCALE[-1][1]}'>■</span> agrees (adds to the score)   "
                          f"<span style='color:{SPLIT_SCALE[0][1]}'>■</span> disagrees (takes from it)",
                  "x": 0, "xref": "paper", "xanchor": "left", "y": 1.06, "yref": "paper", "yanchor": "bottom",
                  "showarrow": False, "font": {"size": 11}})
    fig = _figure(data, title, height=height, annotations=notes, margin={"l": 4, "r": 4, "t": 56, "b": 4})
    fig.layout.pop("xaxis"), fig.layout.pop("yaxis")
    fig.layout.update(layout)
    return fig
