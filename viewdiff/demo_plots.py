"""Figures of the demo: the annotated photo and the plotly plots (attention, voxels, similarity)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import plotly.graph_objects as go

BEST = "#d62728"
RAW = "#9aa5b1"
TRANSFORMED = "#1f77b4"
KEYPOINT_COLOURS = [(0, 200, 255), (0, 120, 255), (255, 60, 60), (60, 200, 60), (40, 160, 40)]
VOXEL_AXES = ("x", "y", "z")


def _layout(fig: go.Figure, title: str, height: int = 380) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0.02, font=dict(size=14)), height=height,
                      margin=dict(l=10, r=10, t=44, b=10), template="plotly_white")
    return fig


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


def message_figure(title: str, text: str) -> go.Figure:
    """An empty plot that says why there is nothing to show (and what to do)."""
    fig = go.Figure()
    fig.add_annotation(text=text, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=13), align="center")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title, height=260)


def attention_figure(attention: np.ndarray, labels: Sequence[str], title: str) -> go.Figure:
    """Heatmap of one head's ``[T, T]`` attention weights (rows: queries, columns: keys)."""
    attention = np.asarray(attention, dtype=np.float32)
    labels = [f"{i}:{name}" for i, name in enumerate(labels)]  # unique, so plotly keeps every cell
    fig = go.Figure(go.Heatmap(z=attention, x=labels, y=labels, colorscale="Viridis", zmin=0,
                               colorbar=dict(title="weight"),
                               hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title="query token")
    fig.update_xaxes(title="key token", tickangle=-45)
    return _layout(fig, title, height=420)


def voxel_slice(volume: np.ndarray, axis: str, index: int) -> np.ndarray:
    """Slice of a ``[R, R, R]`` volume indexed ``[z, y, x]`` at ``axis`` = ``index``."""
    return np.take(volume, index, axis={"z": 0, "y": 1, "x": 2}[axis])


def voxel_slice_figure(volume: np.ndarray, axis: str, index: int, quantity: str) -> go.Figure:
    """Heatmap of ``voxel_slice(volume, axis, index)`` with the two remaining axes labelled."""
    volume = np.asarray(volume, dtype=np.float32)
    index = int(np.clip(index, 0, volume.shape[0] - 1))
    rows, cols = {"z": ("y", "x"), "y": ("z", "x"), "x": ("z", "y")}[axis]
    fig = go.Figure(go.Heatmap(z=voxel_slice(volume, axis, index), colorscale="Magma",
                               zmin=float(volume.min()), zmax=float(volume.max()),
                               colorbar=dict(title=quantity)))
    fig.update_xaxes(title=cols, constrain="domain")
    fig.update_yaxes(title=rows, scaleanchor="x", autorange="reversed")
    return _layout(fig, f"Voxel grid: {quantity}, slice {axis} = {index} of {volume.shape[0] - 1}")


def voxel_volume_figure(volume: np.ndarray, quantity: str) -> go.Figure:
    """3D isosurfaces of a ``[R, R, R]`` volume indexed ``[z, y, x]``."""
    volume = np.asarray(volume, dtype=np.float32)
    z, y, x = np.mgrid[: volume.shape[0], : volume.shape[1], : volume.shape[2]]
    lo, hi = float(np.quantile(volume, 0.6)), float(volume.max())
    fig = go.Figure(go.Isosurface(x=x.ravel(), y=y.ravel(), z=z.ravel(), value=volume.ravel(),
                                  isomin=lo, isomax=hi, surface_count=4, opacity=0.35,
                                  colorscale="Magma", caps=dict(x_show=False, y_show=False, z_show=False),
                                  colorbar=dict(title=quantity)))
    fig.update_layout(scene=dict(xaxis_title="x", yaxis_title="y", zaxis_title="z", aspectmode="cube"))
    return _layout(fig, f"Voxel grid: {quantity} (isosurfaces above the 60th percentile)")


def similarity_figure(names: Sequence[str], raw: np.ndarray, transformed: np.ndarray | None) -> go.Figure:
    """Horizontal bars of cosine similarity per identity, best first; the best match is highlighted.

    Sorted (and "best") by the transformed similarity when there is one, else by the raw one.
    """
    raw = np.asarray(raw, dtype=np.float32)
    key = raw if transformed is None else np.asarray(transformed, dtype=np.float32)
    order = np.argsort(-key, kind="stable")
    sorted_names = [names[i] for i in order]
    fig = go.Figure()
    fig.add_trace(go.Bar(y=sorted_names, x=raw[order], orientation="h", name="raw (photo's pose)",
                         marker_color=[BEST if transformed is None and r == 0 else RAW for r in range(len(order))],
                         hovertemplate="%{y}: %{x:.3f}<extra>raw</extra>"))
    if transformed is not None:
        fig.add_trace(go.Bar(y=sorted_names, x=key[order], orientation="h", name="transformed (target pose)",
                             marker_color=[BEST if r == 0 else TRANSFORMED for r in range(len(order))],
                             hovertemplate="%{y}: %{x:.3f}<extra>transformed</extra>"))
    fig.update_layout(barmode="group", legend=dict(orientation="h", y=-0.15))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title="cosine similarity", range=[min(0.0, float(np.min(raw)), float(np.min(key))) - 0.02, 1.0])
    best = f"best match: {sorted_names[0]} ({key[order[0]]:.3f})" if len(order) else "gallery is empty"
    return _layout(fig, f"Gallery similarity ({best})", height=max(300, 60 + 34 * len(order)))


def pose_sweep_figure(yaws: np.ndarray, transformed: np.ndarray, raw: float, name: str,
                      target_yaw: float) -> go.Figure:
    """Similarity to identity ``name`` as the target yaw sweeps; raw similarity as a flat reference."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=np.asarray(yaws), y=np.asarray(transformed), mode="lines+markers",
                             name="transformed", line=dict(color=TRANSFORMED)))
    fig.add_hline(y=float(raw), line=dict(color=RAW, dash="dash"), annotation_text=f"raw {raw:.3f}")
    fig.add_vline(x=float(target_yaw), line=dict(color=BEST, dash="dot"), annotation_text="target yaw")
    fig.update_xaxes(title="target yaw (deg)", range=[-92, 92], dtick=30)
    fig.update_yaxes(title="cosine similarity")
    fig.update_layout(showlegend=False)
    return _layout(fig, f"Pose sweep: similarity to {name}", height=300)
