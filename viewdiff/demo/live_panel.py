"""The live camera's panel: the frame just measured with its face box, the head pose, the verdict, the raw /
flip-fused / turned similarity bars on one fixed scale with the same-person threshold, the trace of similarity
against yaw (the visitor's own pose sweep) and the frame counters.

Plain HTML and SVG built on the server (no script, nothing for plotly to draw at every frame); the frame is a JPEG
data URL inside it, replaced by the next one; every name a visitor typed is escaped (shown as text, never markup).
The panel's data attributes (``data-yaw``, ``data-match``, ``data-processed``, ...) are what the browser test reads.
"""
from __future__ import annotations

import base64
import html

import cv2
import numpy as np

from viewdiff.demo.live import LiveReading, LiveSession
from viewdiff.faces.records import FaceRecord

THUMB_WIDTH = 320     # the frame shown back, with its face box
SCALE = (-0.2, 1.0)   # the fixed similarity scale of the live panel (bars and trace)
RAW_COLOUR, FUSED_COLOUR, TURNED_COLOUR = "#9aa5b1", "#8c6bb1", "#1f77b4"
SAME_PERSON = "#2ca02c"


def _thumbnail(rgb: np.ndarray, record: FaceRecord | None) -> str:
    """The frame at `THUMB_WIDTH` px with its face box, as a JPEG data URL."""
    scale = THUMB_WIDTH / rgb.shape[1]
    small = cv2.resize(rgb, (THUMB_WIDTH, max(1, int(round(rgb.shape[0] * scale)))), interpolation=cv2.INTER_AREA)
    if record is not None:
        x0, y0, x1, y1 = (int(round(v * scale)) for v in record.bbox[:4])
        cv2.rectangle(small, (x0, y0), (x1, y1), (44, 160, 44), 2)
        for x, y in record.keypoints * scale:
            cv2.circle(small, (int(round(x)), int(round(y))), 2, (255, 200, 0), -1)
    ok, jpeg = cv2.imencode(".jpg", small[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80])
    return "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode("ascii")


def _x(value: float, left: float, width: float) -> float:
    low, high = SCALE
    return left + (min(max(value, low), high) - low) / (high - low) * width


def _bar(label: str, value: float | None, colour: str, threshold: float | None) -> str:
    if value is None:
        return ""
    zero, at = _x(0.0, 0, 100), _x(value, 0, 100)
    left, width = min(zero, at), abs(at - zero)
    line = (f'<div style="position:absolute;left:{_x(threshold, 0, 100):.1f}%;top:0;bottom:0;'
            f'border-left:2px dashed {SAME_PERSON}"></div>') if threshold is not None else ""
    return (f'<div class="vd-live-row" style="display:flex;align-items:center;gap:6px;margin:3px 0">'
            f'<span style="flex:0 0 8.5em;font-size:13px">{label}</span>'
            f'<div style="position:relative;flex:1;height:16px;background:#f1f3f5;border-radius:2px">'
            f'<div style="position:absolute;left:{left:.1f}%;width:{width:.1f}%;top:2px;bottom:2px;'
            f'background:{colour}"></div>{line}</div>'
            f'<span style="flex:0 0 3.2em;text-align:right;font-size:13px;font-variant-numeric:tabular-nums">'
            f'{value:.2f}</span></div>')


TRACE_W, TRACE_H, TRACE_PAD = 480, 250, (44, 22, 14, 40)   # svg size; left, right, top, bottom padding


def _trace_xy(yaw: float, value: float) -> tuple[float, float]:
    left, right, top, bottom = TRACE_PAD
    x = left + (min(max(yaw, -90.0), 90.0) + 90) / 180 * (TRACE_W - left - right)
    low, high = SCALE
    y = top + (high - min(max(value, low), high)) / (high - low) * (TRACE_H - top - bottom)
    return x, y


def trace_svg(trace, name: str | None, threshold: float | None, current: tuple | None) -> str:
    """Similarity to ``name`` against yaw for every trace point (grey: raw, blue: turned to frontal), the threshold
    dashed, the current frame ringed."""
    left, right, top, bottom = TRACE_PAD
    parts = [f'<svg class="vd-live-trace" viewBox="0 0 {TRACE_W} {TRACE_H}" width="100%" role="img" '
             f'aria-label="similarity against head yaw" style="max-width:{TRACE_W}px;display:block">']
    x0, x1 = left, TRACE_W - right
    for v in (0.0, 0.5, 1.0):
        _, y = _trace_xy(0, v)
        parts.append(f'<line x1="{x0}" x2="{x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e8ec"/>'
                     f'<text x="{x0 - 6}" y="{y + 5:.1f}" text-anchor="end" font-size="15" fill="#555">{v:.1f}</text>')
    for yaw in range(-90, 91, 30):
        x, _ = _trace_xy(yaw, 0)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{TRACE_H - bottom}" stroke="#e5e8ec"/>'
                     f'<text x="{x:.1f}" y="{TRACE_H - bottom + 17}" text-anchor="middle" font-size="15" '
                     f'fill="#555">{yaw:+d}°</text>' if yaw else
                     f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{TRACE_H - bottom}" stroke="#cfd5db"/>'
                     f'<text x="{x:.1f}" y="{TRACE_H - bottom + 17}" text-anchor="middle" font-size="15" '
                     f'fill="#555">0°</text>')
    parts.append(f'<text x="{(x0 + x1) / 2:.0f}" y="{TRACE_H - 4}" text-anchor="middle" font-size="15" fill="#333">'
                 'your head yaw (+ = towards the image\'s left)</text>')
    if threshold is not None:
        _, y = _trace_xy(0, threshold)
        parts.append(f'<line x1="{x0}" x2="{x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="{SAME_PERSON}" '
                     f'stroke-dasharray="6 4" stroke-width="1.5"/>')
    for column, colour in ((1, RAW_COLOUR), (3, TURNED_COLOUR)):
        dots = "".join("M{:.1f} {:.1f}h0".format(*_trace_xy(p[0], p[column])) for p in trace if p[column] is not None)
        if dots:
            parts.append(f'<path class="vd-trace-{"raw" if column == 1 else "turned"}" d="{dots}" stroke="{colour}" '
                         'stroke-width="6" stroke-linecap="round" fill="none" opacity="0.8"/>')
    if current is not None and current[1] is not None:
        x, y = _trace_xy(current[0], current[1])
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="7" fill="none" stroke="#111" stroke-width="2"/>')
    parts.append("</svg>")
    return "".join(parts)


def live_html(live: LiveSession, reading: LiveReading | None, threshold=None, message: str | None = None) -> str:
    """The live panel for the last processed frame: the frame with its face box, pose, verdict, the three similarity
    bars, the trace and the frame counters. ``message``: shown instead of a reading (no camera yet, no face)."""
    value = threshold.value if threshold is not None else None
    attrs = {"processed": live.processed, "dropped": live.dropped, "received": live.received,
             "trace": len(live.trace), "rate": f"{live.rate():.2f}"}
    head, verdict, bars = "", "", ""
    if reading is not None and reading.record is not None:
        yaw, pitch, roll = (float(v) for v in reading.record.source_pose)
        attrs.update(yaw=f"{yaw:.1f}", pitch=f"{pitch:.1f}", roll=f"{roll:.1f}", found=reading.how)
        head = (f'<div class="vd-live-pose" style="font-size:18px;font-weight:600">yaw {yaw:+.0f}° · pitch '
                f'{pitch:+.0f}° · roll {roll:+.0f}°</div>')
        if reading.name is not None:
            score = reading.score
            shown = html.escape(reading.name)
            attrs.update(name=reading.name, raw=f"{reading.raw:.4f}", fused=f"{reading.fused:.4f}",
                         turned="" if reading.turned is None else f"{reading.turned:.4f}")
            if value is None:
                verdict = f"Closest: <b>{shown}</b> ({score:.2f}; no same-person threshold for this face model)"
            elif score >= value:
                attrs["match"] = 1
                verdict = (f'<span style="color:{SAME_PERSON}">✔ Match</span>: <b>{shown}</b> '
                           f'({score:.2f} ≥ {value:.2f})')
            else:
                attrs["match"] = 0
                verdict = f"Not <b>{shown}</b>: {score:.2f} is below {value:.2f}"
            bars = (_bar("as it is", reading.raw, RAW_COLOUR, value)
                    + _bar("flip-fused", reading.fused, FUSED_COLOUR, value)
                    + _bar("turned to frontal", reading.turned, TURNED_COLOUR, value))
            verdict = f'<div class="vd-live-verdict" style="font-size:16px;margin:4px 0">{verdict}</div>'
        else:
            verdict = ('<div class="vd-live-verdict">The gallery is empty: press <b>Enrol me</b> while looking '
                       'straight into the camera.</div>')
    elif reading is not None:
        attrs["found"] = "none"
        head = ('<div class="vd-live-pose" style="font-size:16px">No face in this frame: face the camera, '
                'in good light, not too far away.</div>')
    if message:
        head = f'<div class="vd-live-message" style="font-size:15px">{message}</div>' + head
    frame = ""
    if live.frame is not None and reading is not None:
        frame = (f'<img class="vd-live-frame" src="{_thumbnail(live.frame, reading.record)}" '
                 'alt="The frame just measured, with the face box" '
                 f'style="width:100%;max-width:{THUMB_WIDTH}px;height:auto;border-radius:4px;display:block">')
    rate, ms = live.rate(), (np.median(live.frame_ms) if live.frame_ms else 0.0)
    stats = (f'<div class="vd-live-stats" style="font-size:12px;color:#555;margin-top:4px">{rate:.1f} frames/s '
             f'processed · {ms:.0f} ms each on the server · {live.dropped} dropped of {live.received} received (a '
             'frame that arrives while one is processed replaces the waiting one; none are queued)</div>'
             ) if live.processed else ""
    title = ""
    if live.trace_name is not None:
        title = (f'<div style="font-size:14px;margin-top:6px">Similarity to <b>{html.escape(live.trace_name)}</b> '
                 'as you turn your head (grey: as it is, blue: turned to frontal; green dashed: same person)</div>')
    trace = trace_svg(live.trace, live.trace_name, value,
                      (live.trace[-1][0], live.trace[-1][3] if live.trace[-1][3] is not None else live.trace[-1][1])
                      if live.trace and reading is not None and reading.name == live.trace_name else None) \
        if live.trace_name is not None else ""
    data = " ".join(f'data-{k}="{html.escape(str(v))}"' for k, v in attrs.items())
    return (f'<div id="vd-live" {data}><div style="display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start">'
            f'<div style="flex:0 1 {THUMB_WIDTH}px;min-width:0">{frame}</div>'
            f'<div style="flex:1 1 260px;min-width:0">{head}{verdict}{bars}</div></div>{title}{trace}{stats}</div>')
