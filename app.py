"""viewdiff-face demo: move a face embedding from the photo's head pose to a target pose.

    python app.py [--host 127.0.0.1] [--port 7860] [--backend auto|dlib|insightface] [--weights DIR]
                  [--persistent-gallery DIR] [--share]

The port also comes from $GRADIO_SERVER_PORT and the host from $GRADIO_SERVER_NAME (what a Hugging
Face Space sets), so the same file runs unchanged as a Space (`sdk: gradio`, `app_file: app.py`).
Models are loaded once, when this module is imported (module-level `demo`). The callback logic
lives in `viewdiff.demo.service`; this file only lays out the page and wires events.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from viewdiff.demo.allocator import bound_native_memory

bound_native_memory()   # before torch, onnxruntime and gradio start their threads
os.environ.setdefault("VIEWDIFF_ORT_THREADS", "1")   # one thread per model: two photo analyses share the 2 cores

import gradio as gr
import numpy as np
import plotly

from starlette.middleware import Middleware

from viewdiff.demo.examples import ASSETS, LOCAL_ASSETS, example_label, example_photos
from viewdiff.demo.image_files import write_once
from viewdiff.demo.panels import (EXPLANATION_CAPTION, FOCUSED_HEAD, MEAN_HEAD, SIMILARITY_CAPTION, VOXEL_QUANTITIES,
                                  caption)
from viewdiff.demo.live import LIVE_TIME_LIMIT_S, STREAM_EVERY_S, FrameCounter
from viewdiff.demo.plots import PlotSpec
from viewdiff.demo.service import BEST_MATCH, POSE_LIMITS, DemoService, Reply, ViewOptions

OUTPUTS = ("session", "gallery", "face_image", "face_info", "attention", "voxels", "similarity", "sweep",
           "explanation", "status", "results", "views", "results_hint", "gallery_table", "gallery_choice", "undo",
           "photo_status", "face_choice", "jump", "explain_choice", "live_compare")
POSE_OUTPUTS = ("session", "attention", "voxels", "similarity", "sweep", "explanation", "status")  # a slider move
VIEW_OUTPUTS = ("attention", "voxels", "explanation")
GALLERY_OUTPUTS = ("gallery", "gallery_table", "gallery_choice", "undo", "explain_choice", "live_compare")
ENROL_OUTPUTS = OUTPUTS + ("live_status",)   # "Enrol me": the gallery, the page's photo session and the live tab
INTRO = """# viewdiff-face: recognising a face whose head is turned
**Can a computer still recognise someone whose head is turned to the side?** Drop in a face photo (or pick an
example): the page compares the face with a gallery of people, once as it is (grey) and once after a model has
turned it to the pose of the **target yaw** slider (blue). Or open **Live camera**: enrol yourself and turn your
head."""
ENROL = """**Enrol, then probe.** 1. Drop a *frontal* photo of someone (the webcam works: look straight into it),
type their name and press **Add** (or Enter). 2. Drop a photo of the same person *turned to the side*. The
grey bar (the photo as it is) and the blue bar (turned by the model) are compared with the same gallery
photos; above the green line counts as the same person. The shipped photos show each person once, so step 2
needs your own photos.{local} {where}"""
PRIVATE = "Your additions and removals stay in this browser tab: nobody else sees them and the server keeps nothing."
SHARED = ("**This server keeps one gallery, saved on disk and shared by everyone who uses it** "
          "(`--persistent-gallery`).")
LOCAL_ENROL = (" Here, with the team data, the Pointing'04 examples are person 01, who is in the gallery from"
               " another photo series.")
RESULTS_HINT = ("*Once a photo with a face is analysed, this shows how much the face looks like each gallery "
                "person, how that changes as the face is turned, and where the model looks.*")
POSE_GATE_NOTE = "changes little unless the target yaw turns the face sideways: the model learned from turned faces"
CONCURRENCY = int(os.environ.get("VIEWDIFF_CONCURRENCY", "2"))  # requests the server runs at once
# A file that is not an image (the face panel says so) shows as a broken-image sliver: clear the photo box.
# In the page: the photo is not an output of the callbacks, since gradio's session copy of an output
# component is a plain gr.Image without `pass_files_through`.
CLEAR_BROKEN_PHOTO = """() => {
  const img = document.querySelector('#photo img');
  const remove = document.querySelector("#photo button[aria-label='Remove Image']");
  if (img && img.complete && img.naturalWidth === 0 && remove) remove.click();
  return [];
}"""
# Plots are drawn by our own plotly.js call (one Plotly.react per update) in a gr.HTML: gr.Plot remounts
# its plotly component on every new value and draws it twice (~4x the work of one react per slider move).
# A draw waits for the next animation frame and draws the newest value only, so replies that arrive
# during a drag never queue redraws, and gradio sends the next request without waiting for plotly. A plot
# out of view is drawn when it comes into view: a react costs 20-40 ms here, and while the yaw slider is
# dragged the attention and voxel plots are below the fold (plotly redraws them when it would show them).
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
PLOT_HEAD = f'<script src="/gradio_api/file={PLOTLY_JS.as_posix()}"></script>'
PLOT_TEMPLATE = '<div class="vd-plot" style="width: 100%; min-height: 120px"></div>'
DRAW_PLOT = """
let queued = false, stale = false, inView = false;
new IntersectionObserver((entries) => {
  inView = entries[entries.length - 1].isIntersecting;
  if (inView && stale) draw();
}, {rootMargin: '100px'}).observe(element);
function draw() {
  if (!inView) { stale = true; return; }
  if (queued) return;
  queued = true;
  requestAnimationFrame(() => { queued = false; stale = false; render(); });
}
// Titles and the x axis's title are wrapped at spaces to the plot's width (a phone's 412 px cut them off), the
// extra lines added to the margin and the height. 0.48 em: a generous mean character width of plotly's font.
function lines(text, size, width) {
  const chars = Math.max(12, Math.floor(width / (0.48 * size)));
  if (!text || text.includes('<br>') || text.length <= chars) return [text];
  const out = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && (line + ' ' + word).length > chars) { out.push(line); line = word; }
    else line = line ? line + ' ' + word : word;
  }
  return out.concat(line ? [line] : []);
}
function fit(layout, width) {
  const margin = layout.margin = layout.margin || {};
  const grow = (where, n) => { margin[where] = (margin[where] || 0) + n; layout.height = (layout.height || 380) + n; };
  const title = layout.title;
  if (title && title.text) {
    const size = (title.font && title.font.size) || 14, wrapped = lines(title.text, size, width - 24);
    title.text = wrapped.join('<br>');
    if (wrapped.length > 1) grow('t', (wrapped.length - 1) * Math.round(size * 1.3));
  }
  const axis = layout.xaxis && layout.xaxis.title;
  if (axis && axis.text && layout.xaxis.visible !== false) {
    // centred under the plot area, which the left margin (the names) shifts right: the room is twice the
    // distance from that centre to the figure's right edge
    const wrapped = lines(axis.text, 14, width - (margin.l || 0) + (margin.r || 0) - 16);
    axis.text = wrapped.join('<br>');
    if (wrapped.length > 1) grow('b', (wrapped.length - 1) * 18);
  }
}
function render() {
  const target = element.querySelector('.vd-plot');
  if (!target || !props.value || !window.Plotly) return;
  const figure = JSON.parse(props.value);
  fit(figure.layout, target.clientWidth || element.clientWidth || 600);
  // responsive plotly sizes the plot to its box on a window resize: the box keeps the figure's height
  target.style.height = (figure.layout.height || 380) + 'px';
  prepare(figure);
  // no toolbar (modebar): on a phone it covered the titles; plotly's zoom and hover work without it
  window.Plotly.react(target, figure.data, figure.layout, {responsive: true, displaylogo: false, displayModeBar: false});
  drawn(target);
}
draw();
watch('value', draw);
"""
PLAIN_PLOT = "function prepare(figure) {}\nfunction drawn(target) {}\n"
# The pose sweep's target-yaw marker follows the yaw slider in the page, as an HTML line over the plot: a
# Plotly.relayout costs 30-40 ms here, at every step of a drag. It replaces the figure's own marker
# (viewdiff.demo.plots.pose_sweep_figure: shapes[0], labelled by annotations[0]), and a yaw move that keeps
# the curve gets no new sweep figure (viewdiff.demo.service.Session.sweep_shown).
SWEEP_MARKER = """
let marked = false;   // the figure is a sweep with a target-yaw marker (not a message such as "gallery is empty")
function prepare(figure) {
  marked = Boolean(figure.layout.meta && figure.layout.meta.target_marker);
  if (!marked) { const old = element.querySelector('.vd-marker'); if (old) old.remove(); return; }
  figure.layout.shapes = (figure.layout.shapes || []).slice(1);
  figure.layout.annotations = (figure.layout.annotations || []).slice(1);
}
function place(yaw) {
  const target = element.querySelector('.vd-plot'), full = target && target._fullLayout;
  if (!marked || !full || !full.xaxis || !full.yaxis || !Number.isFinite(yaw)) return;
  const slider = document.querySelector('#yaw input[type=range]');   // a typed 500 is the slider's end, 90
  if (slider) yaw = Math.max(Number(slider.min), Math.min(Number(slider.max), yaw));
  let line = element.querySelector('.vd-marker');
  if (!line) {
    target.parentElement.style.position = 'relative';
    line = document.createElement('div');
    line.className = 'vd-marker';
    line.style.cssText = 'position: absolute; width: 0; border-left: 1.5px dotted #5f6b77; pointer-events: none';
    line.innerHTML = '<span style="position: absolute; bottom: 100%; white-space: nowrap; color: #5f6b77; '
                     + 'font: 12px sans-serif"></span>';
    target.parentElement.appendChild(line);
  }
  const x = full.xaxis._offset + full.xaxis.l2p(yaw);
  Object.assign(line.style, {left: x + 'px', top: full.yaxis._offset + 'px', height: full.yaxis._length + 'px'});
  const label = line.firstChild;
  label.textContent = 'target yaw ' + (yaw < 0 ? '-' : '+') + Math.abs(Math.round(yaw)) + '°';
  Object.assign(label.style, yaw > 0 ? {right: '3px', left: ''} : {left: '3px', right: ''});
  line.dataset.yaw = String(yaw);
}
function follow() {   // the line at the yaw slider's value
  const slider = document.querySelector('#yaw input[type=range]');
  if (slider) place(Number(slider.value));
}
function drawn(target) {
  if (!target.vdFollows) {   // plotly redraws on a window resize: the line moves with the axis
    target.vdFollows = true;
    target.on('plotly_afterplot', follow);
  }
  follow();
}
if (!element.vdListens) {   // the slider's range and number box, dragged or typed into
  element.vdListens = true;
  document.addEventListener('input', (event) => {
    if (event.target.closest && event.target.closest('#yaw')) place(Number(event.target.value));
  }, true);
}
"""
LIVE_INTRO = """**Turn your head: you are your own pose sweep.** 1. Press **Record** under the camera. 2. Look straight
into it and press **Enrol me**. 3. Turn your head slowly to one side, then the other: each frame shows your head pose
and how much you still look like your entry (grey: as the frame is; purple: flip-fused; blue: turned to frontal by the
model; above the green line: the same person), and the trace draws your own pose sweep. Nothing is recorded: the
server keeps only the current frame, in memory; your entry joins this tab's gallery."""
LIVE_WAITING = ("<div id='vd-live' data-processed='0'><i>Your head pose, your similarity and its trace appear here once "
                "the camera streams (press Record under the camera).</i></div>")
# Before the camera is used: say plainly why it cannot work here (no camera, a blocked permission, a page that is not
# https), instead of gradio's generic webcam error. Runs when the Live tab is opened, and again when the permission
# changes.
CHECK_CAMERA = """async () => {
  const note = document.querySelector('#live-camera-note');
  const say = (text) => { if (note) { note.textContent = text; note.style.display = text ? '' : 'none'; } };
  const check = async () => {
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      say('This page cannot use a camera: browsers allow cameras only on https:// pages and on localhost. Open the '
          + 'page over https (a Hugging Face Space is), or use the photo tab with a frontal and a turned photo.');
      return;
    }
    try {
      const permission = await navigator.permissions.query({name: 'camera'});
      if (!window.vdCameraWatch) { window.vdCameraWatch = true; permission.onchange = check; }
      if (permission.state === 'denied') {
        say('Camera access is blocked for this page: allow the camera in the browser (the camera icon in the '
            + 'address bar, or the site settings), then reload the page.');
        return;
      }
    } catch (e) {}
    try {
      const devices = await navigator.mediaDevices.enumerateDevices();
      if (!devices.some((d) => d.kind === 'videoinput')) {
        say('No camera found on this device: connect one and reload the page, or use the photo tab with a frontal '
            + 'and a turned photo.');
        return;
      }
    } catch (e) {}
    say('');
  };
  // the answer to the camera request itself (a permission denied now, a camera another app holds)
  if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia && !window.vdCameraWrapped) {
    window.vdCameraWrapped = true;
    const request = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
    navigator.mediaDevices.getUserMedia = (constraints) => request(constraints).then((stream) => { say(''); return stream; },
      (error) => {
        const name = error && error.name;
        say(name === 'NotAllowedError' || name === 'SecurityError'
          ? 'The camera was not allowed: allow it in the browser (the camera icon in the address bar, or the site '
            + 'settings), then press the camera button again.'
          : name === 'NotReadableError' || name === 'AbortError'
          ? 'The camera is busy (another app or tab is using it): close that, then press the camera button again.'
          : 'No camera could be opened on this device: connect one and reload the page, or use the photo tab.');
        throw error;
      });
  }
  await check();
  return [];
}"""
SESSION_TTL_S = 3600  # a closed tab's photo analysis and gallery are dropped after this long
# A narrow screen (a phone) stacks the two columns: the results start far below the photo, so a button under the
# photo jumps there; the gallery table wraps long names instead of cutting off its last column.
CSS = """
@media (min-width: 900px) { #jump-results { display: none !important; } }
#live-camera-note { color: #b42318; font-weight: 600; }
#gallery-table td, #gallery-table th { white-space: normal !important; overflow-wrap: anywhere; }
"""
# On a phone the toasts ("Added ...") sit at the bottom: at the top they covered the page's first screen. In the
# page's <head>, since gradio scopes `css` to its container and the toasts live outside it.
PHONE_TOASTS = ("<style>@media (max-width: 640px) { .toast-wrap { top: auto !important; bottom: 12px !important; } }"
                "</style>")
JUMP_TO_RESULTS = "() => { document.getElementById('results').scrollIntoView({behavior: 'smooth', block: 'start'}); }"
# The example thumbnails get alt text (gradio leaves it empty): what each photo shows, for screen readers.
EXAMPLE_ALT = """(labels) => {
  const apply = () => document.querySelectorAll('#examples img').forEach((img, i) => {
    if (labels[i] && img.alt !== labels[i]) img.alt = labels[i];
  });
  apply();
  const root = document.getElementById('examples');
  if (root) new MutationObserver(apply).observe(root, {childList: true, subtree: true});
  return [];
}"""


def pass_files_through(image: gr.Image) -> gr.Image:
    """Make ``image`` hand uploaded files to the callback undecoded, so the face pipeline reports bad files.

    gr.Image would open the file with Pillow first and show a bare "Error" for a corrupt or 0-byte
    file. (Overridden on the instance: a gr.Image subclass would make gradio write an ``app.pyi``.)
    """
    decode = image.preprocess

    def preprocess(payload):
        if payload is None or payload.path is None or (payload.url or "").startswith("data:"):
            try:  # webcam / clipboard images can arrive as data URLs
                return decode(payload)
            except Exception as exc:
                raise gr.Error(f"Could not read this image ({type(exc).__name__}): use a JPEG or PNG photo.") from exc
        return str(payload.path)

    image.preprocess = preprocess
    return image


def whole_files(image: gr.Image) -> gr.Image:
    """Make ``image`` show arrays through `write_once` (a whole file, never rewritten) instead of gradio's in-place
    cache write, which a second request showing the same picture truncates while the first is being fetched.
    The folder is outside gradio's cache, so gradio serves its own (atomic) copy and the folder can be pruned.
    (Overridden on the instance, like `pass_files_through`.)"""
    postprocess, folder = image.postprocess, tempfile.mkdtemp(prefix="viewdiff-pictures-")

    def whole(value):
        return postprocess(str(write_once(value, folder)) if isinstance(value, np.ndarray) else value)

    image.postprocess = whole
    return image


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--backend", choices=("auto", "dlib", "insightface"), default="auto")
    p.add_argument("--weights", default=os.environ.get("VIEWDIFF_WEIGHTS"),
                   help="transformer weights folder (default: the loaded embedder's, or $VIEWDIFF_WEIGHTS)")
    p.add_argument("--persistent-gallery", metavar="DIR", default=os.environ.get("VIEWDIFF_PERSISTENT_GALLERY"),
                   help="keep ONE gallery in DIR, saved and shared by every visitor (local use only; default: "
                        "each visitor's gallery stays in their browser session)")
    p.add_argument("--share", action="store_true", help="create a public gradio.live link (off by default)")
    return p.parse_args(argv)


def clamped(slider: gr.Slider) -> gr.Slider:
    """Make a typed number outside the slider's range count as its nearest end (a typed yaw of 500 is 90), where
    gradio would raise in the request and log a traceback. (Overridden on the instance, as in
    `pass_files_through`.)"""
    def preprocess(payload):
        if payload is None:
            return None
        try:
            value = float(payload)
        except (TypeError, ValueError):
            return None
        return min(max(value, slider.minimum), slider.maximum) if value == value else None

    slider.preprocess = preprocess
    return slider


def plot_panel(elem_id: str, hooks: str = PLAIN_PLOT) -> gr.HTML:
    """A plot area that draws `viewdiff.demo.plots.PlotSpec` JSON with plotly.js (see `DRAW_PLOT`); ``hooks``
    defines ``prepare(figure)`` (before a draw) and ``drawn(target)`` (after it)."""
    return gr.HTML(None, html_template=PLOT_TEMPLATE, js_on_load=hooks + DRAW_PLOT, head=PLOT_HEAD,
                   elem_id=elem_id, apply_default_css=False)


def _respond(reply: Reply, names: tuple[str, ...] = OUTPUTS) -> list:
    for text in reply.warnings:   # toasts render HTML: a visitor's name is shown as text
        gr.Warning(html.escape(text, quote=False))
    for text in reply.infos:
        gr.Info(html.escape(text, quote=False))
    values = (reply.values.get(name, gr.skip()) for name in names)
    # a plain dict is a property update; plots (viewdiff.demo.plots.PlotSpec, a dict subclass) go as JSON text
    return [gr.update(**v) if type(v) is dict else v.to_json() if isinstance(v, PlotSpec) else v for v in values]


def build_demo(service: DemoService) -> gr.Blocks:
    layers, heads = service.attention_shape
    resolution = service.voxel_resolution
    (yaw_lo, yaw_hi), (pitch_lo, pitch_hi), (roll_lo, roll_hi) = POSE_LIMITS
    # uploaded photos and annotated images are files in gradio's cache: drop those older than an hour (the page's
    # CSS and plotly.js, loaded with the page rather than when the plots first appear, go to launch(): gradio 6)
    with gr.Blocks(title="viewdiff-face demo", delete_cache=(SESSION_TTL_S, SESSION_TTL_S)) as demo:
        session = gr.State(None, time_to_live=SESSION_TTL_S)
        gallery = gr.State(None, time_to_live=SESSION_TTL_S)  # the visitor's own gallery (None: the defaults)
        gr.Markdown(INTRO)
        with gr.Tabs(elem_id="modes"):
            # the photo tab stays rendered while the live tab is open (its plots and state are kept)
            with gr.Tab("Photo and sliders", id="photo-tab", elem_id="photo-tab", render_children=True):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=5):
                        photo = pass_files_through(gr.Image(label="Face photo (upload, webcam or paste)", type="filepath",
                                                            sources=["upload", "webcam", "clipboard"], height=300,
                                                            elem_id="photo"))
                        # what happened to this photo, right under it (a toast would be gone in seconds, or outlive the
                        # next photo); on a phone, a button to the results, which start far below
                        photo_status = gr.Markdown("", elem_id="photo-status")
                        jump = gr.Button("↓ See the results", visible=False, size="sm", elem_id="jump-results")
                        face_choice = gr.Dropdown([], value=None, label="Face to use (largest first)", visible=False,
                                                  elem_id="face-choice", interactive=True)
                        examples = example_photos()
                        if examples:
                            gr.Examples(examples, inputs=photo, cache_examples=False, examples_per_page=12, label="Examples",
                                        elem_id="examples")
                            gr.Markdown("<small>" + " · ".join(f"{i + 1}: {example_label(p)}" for i, p in enumerate(examples))
                                        + "</small>", elem_id="example-captions")
                        face_image = whole_files(gr.Image(
                            label="Faces found: the one used (green) with its eyes, nose and mouth corners; others grey",
                            interactive=False, height=300, elem_id="face-image"))
                        face_info = gr.Markdown("No photo yet.", elem_id="face-info")
                    with gr.Column(scale=7):
                        with gr.Group():
                            yaw = clamped(gr.Slider(yaw_lo, yaw_hi, value=0, step=1, elem_id="yaw",
                                                    label="Target yaw: turn the face sideways (degrees; + = towards the "
                                                          "image's left)"))
                            pitch = clamped(gr.Slider(pitch_lo, pitch_hi, value=0, step=1, elem_id="pitch",
                                                      label=f"Target pitch: head up or down (degrees; {POSE_GATE_NOTE})"))
                            roll = clamped(gr.Slider(roll_lo, roll_hi, value=0, step=1, elem_id="roll",
                                                     label=f"Target roll: head tilted (degrees; {POSE_GATE_NOTE})"))
                        with gr.Row():
                            reset = gr.Button("Reset to frontal", size="sm", scale=0, elem_id="reset")
                            status = gr.Markdown("", elem_id="status")
                        results_hint = gr.Markdown(RESULTS_HINT, elem_id="results-hint")
                        with gr.Column(visible=False, elem_id="results") as results:   # shown with a photo's results
                            similarity = plot_panel("similarity-plot")
                            gr.Markdown(f"<small>{SIMILARITY_CAPTION}</small>", elem_id="similarity-caption")
                            explain_choice = gr.Dropdown([(BEST_MATCH, "")] + [(n, n) for n in service.gallery_names()],
                                                         value="", label="Why this score? Split it region by region for",
                                                         elem_id="explain-choice")
                            explanation = plot_panel("explanation-plot")
                            gr.Markdown(f"<small>{EXPLANATION_CAPTION}</small>", elem_id="explanation-caption")
                            sweep = plot_panel("sweep-plot", SWEEP_MARKER)
                with gr.Row(equal_height=False, visible=False, elem_id="views") as views:
                    with gr.Column():
                        with gr.Row(visible=layers > 0):
                            layer = gr.Dropdown([(f"layer {i + 1}", i) for i in range(layers)], value=0 if layers else None,
                                                label="Layer", elem_id="layer")
                            head = gr.Dropdown([("most selective (per photo)", FOCUSED_HEAD),
                                                ("all heads (mean)", MEAN_HEAD)]
                                               + [(f"head {i + 1}", i) for i in range(heads)],
                                               value=FOCUSED_HEAD if heads else None, label="Head", elem_id="head")
                        attention = plot_panel("attention-plot")
                        gr.Markdown(f"<small>{caption('attention', service.model_kind, resolution, service.evaluation)}</small>",
                                    elem_id="attention-caption")
                    with gr.Column():
                        with gr.Row(visible=layers > 0):
                            quantity = gr.Radio(list(VOXEL_QUANTITIES), value=VOXEL_QUANTITIES[0], label="Show")
                            axis = gr.Radio(["x", "y", "z"], value="z", label="Slice axis (z: depth)", elem_id="axis")
                        with gr.Row(visible=layers > 0):
                            index = gr.Slider(0, resolution - 1, value=resolution // 2, step=1, label="Slice",
                                              elem_id="slice")
                            as_3d = gr.Checkbox(False, label="3D isosurface view", elem_id="as-3d")
                        voxels = plot_panel("voxel-plot")
                        gr.Markdown(f"<small>{caption('voxels', service.model_kind, resolution, service.evaluation)}</small>",
                                    elem_id="voxel-caption")
            # rendered when opened: the browser asks for the camera only then
            with gr.Tab("Live camera", id="live-tab", elem_id="live-tab") as live_tab:
                gr.Markdown(LIVE_INTRO, elem_id="live-intro")
                gr.HTML("", elem_id="live-camera-note", apply_default_css=False)   # filled in by CHECK_CAMERA
                with gr.Row(equal_height=False):
                    with gr.Column(scale=5, min_width=300):
                        # mirror=False: the frames (and the yaw's sign) are the camera's own image, as for a photo
                        camera = gr.Image(sources=["webcam"], streaming=True, type="numpy", height=320,
                                          label="Your camera (press Record; nothing is recorded)",
                                          elem_id="live-camera", webcam_options=gr.WebcamOptions(
                                              mirror=False, constraints={"video": {"facingMode": "user",
                                                                                   "width": {"ideal": 640},
                                                                                   "height": {"ideal": 480}}}))
                        with gr.Row():
                            live_name = gr.Textbox(label="Your name", placeholder="You", scale=3, elem_id="live-name")
                            enrol = gr.Button("Enrol me", variant="primary", scale=2, elem_id="live-enrol")
                        live_status = gr.Markdown("", elem_id="live-status")
                        live_compare = gr.Dropdown(service.live_choices(), value="", label="Compare with",
                                                   elem_id="live-compare", interactive=True)
                    with gr.Column(scale=7, min_width=300):
                        live_view = gr.HTML(LIVE_WAITING, elem_id="live-view", apply_default_css=False)
        with gr.Accordion("Your gallery", open=True):
            gr.Markdown(ENROL.format(local=LOCAL_ENROL if LOCAL_ASSETS.is_dir() else "",
                                     where=SHARED if service.persistent else PRIVATE), elem_id="enrol-howto")
            gallery_table = gr.Dataframe(service.gallery_rows(), headers=["name", "source", "photos"],
                                         interactive=False, elem_id="gallery-table", max_height=260, wrap=True,
                                         datatype=["str", "str", "number"], column_widths=["60%", "22%", "18%"])
            with gr.Row():
                name = gr.Textbox(label="Name", placeholder="e.g. Ada Lovelace", scale=3, elem_id="gallery-name")
                add = gr.Button("Add to gallery", scale=2, elem_id="gallery-add")
            with gr.Row():
                gallery_choice = gr.Dropdown(service.gallery_names(), value=None, label="Gallery entry", scale=3,
                                             elem_id="gallery-choice")
                remove = gr.Button("Remove entry", variant="stop", scale=1, elem_id="gallery-remove")
                undo = gr.Button("Undo remove", scale=1, interactive=False, elem_id="gallery-undo")
        with gr.Accordion("Model card", open=False, elem_id="model-card-section"):
            gr.Markdown(service.model_card(), elem_id="model-card")

        components = dict(session=session, gallery=gallery, face_image=face_image, face_info=face_info,
                          attention=attention, voxels=voxels, similarity=similarity, sweep=sweep, status=status,
                          results=results, views=views, results_hint=results_hint,
                          gallery_table=gallery_table, gallery_choice=gallery_choice, undo=undo,
                          photo_status=photo_status, face_choice=face_choice, jump=jump, explanation=explanation,
                          explain_choice=explain_choice, live_compare=live_compare, live_status=live_status)

        def outputs(names):
            return [components[n] for n in names]
        pose_inputs = [yaw, pitch, roll]
        view_inputs = [layer, head, quantity, axis, index, as_3d, explain_choice]

        sessions = service.sessions   # which photo analysis each open page holds: freed when the page closes

        def bind(method, leading: int, names=OUTPUTS, **options):
            """callback(request, *lead, yaw, pitch, roll, *view, session, gallery)
            -> method(*lead, pose, view, session, gallery); gradio passes the request (its type hint)."""
            def callback(request: gr.Request, *args):
                lead, pose = args[:leading], args[leading:leading + 3]
                view = ViewOptions(*args[leading + 3:leading + 3 + len(view_inputs)])
                reply = method(*lead, pose, view, sessions.live(args[-2]), args[-1], **options)
                if "session" in reply.values:
                    sessions.track(request.session_hash, reply.values["session"])
                return _respond(reply, names)
            return callback

        def redraw(*args):
            return _respond(service.on_view(ViewOptions(*args[:-1]), sessions.live(args[-1])), VIEW_OUTPUTS)

        def release(request: gr.Request):
            sessions.release(request.session_hash)
            service.lives.release(request.session_hash)   # the live camera's current frame goes too

        def live_frame(frame, compare, visitor_gallery, request: gr.Request):
            """A streamed camera frame (gradio keeps only the newest one that arrives while one runs)."""
            live = service.lives.get(request.session_hash)
            if request is not live.run:   # a new stream: its first frame came with it, not through /stream
                live.run = request
                live.received += 1
            html_text = service.on_live_frame(frame, compare, live, visitor_gallery)
            return gr.skip() if html_text is None else html_text

        def live_enrol(request: gr.Request, name, *args):
            """"Enrol me": like "Add" with the camera's current frame as the photo (the page's session becomes it)."""
            live = service.lives.peek(request.session_hash)

            def enrol_frame(typed, pose, view, _photo_session, visitor_gallery):
                return service.on_live_enrol(typed, pose, view, live, visitor_gallery)
            return bind(enrol_frame, 1, ENROL_OUTPUTS)(request, name, *args)

        state = [session, gallery]
        photo.change(bind(service.on_photo, 1), [photo, *pose_inputs, *view_inputs, *state], outputs(OUTPUTS),
                     concurrency_limit=2, concurrency_id="face", api_name="photo").then(None, js=CLEAR_BROKEN_PHOTO)
        # the plots follow a slider while it is dragged or typed into (input); "always_last": a move that
        # arrives while one runs waits and replaces any older waiting one, so the last value is always shown
        for slider in pose_inputs:
            slider.input(bind(service.on_target, 0, POSE_OUTPUTS, client_moves_marker=True),
                         [*pose_inputs, *view_inputs, *state], outputs(POSE_OUTPUTS), show_progress="hidden",
                         trigger_mode="always_last", queue=False, api_name=f"target_{slider.elem_id}")
        reset.click(lambda: (0, 0, 0), None, pose_inputs, queue=False).then(
            bind(service.on_target, 0, POSE_OUTPUTS), [*pose_inputs, *view_inputs, *state], outputs(POSE_OUTPUTS),
            show_progress="hidden")
        for control in (layer, head, quantity, axis, as_3d, explain_choice):
            control.change(redraw, [*view_inputs, session], outputs(VIEW_OUTPUTS), show_progress="hidden")
        index.release(redraw, [*view_inputs, session], outputs(VIEW_OUTPUTS), show_progress="hidden",
                      trigger_mode="always_last")
        add.click(bind(service.on_add, 1), [name, *pose_inputs, *view_inputs, *state], outputs(OUTPUTS),
                  api_name="add")
        name.submit(bind(service.on_add, 1), [name, *pose_inputs, *view_inputs, *state], outputs(OUTPUTS))  # Enter adds
        # .input: the visitor's pick only (a new photo setting the choices must not re-run it)
        face_choice.input(bind(service.on_face, 1), [face_choice, *pose_inputs, *view_inputs, *state],
                          outputs(OUTPUTS), concurrency_limit=1, concurrency_id="face")
        jump.click(None, js=JUMP_TO_RESULTS)
        remove.click(bind(service.on_remove, 1), [gallery_choice, *pose_inputs, *view_inputs, *state], outputs(OUTPUTS))
        undo.click(bind(service.on_undo, 0), [*pose_inputs, *view_inputs, *state], outputs(OUTPUTS))
        # the live camera: a frame every STREAM_EVERY_S while recording; two visitors' streams at once (each holds a
        # worker for its whole stream), frames that arrive while one is processed replace each other, never queue
        camera.stream(live_frame, [camera, live_compare, gallery], [live_view], stream_every=STREAM_EVERY_S,
                      time_limit=LIVE_TIME_LIMIT_S, concurrency_limit=2, concurrency_id="live",
                      show_progress="hidden", api_name=False)
        enrol.click(live_enrol, [live_name, *pose_inputs, *view_inputs, *state], outputs(ENROL_OUTPUTS),
                    api_name=False)
        live_name.submit(live_enrol, [live_name, *pose_inputs, *view_inputs, *state], outputs(ENROL_OUTPUTS),
                         api_name=False)
        live_tab.select(None, js=CHECK_CAMERA)
        demo.load(lambda g: _respond(service.on_load(g), GALLERY_OUTPUTS), [gallery], outputs(GALLERY_OUTPUTS),
                  show_progress="hidden")
        if examples:
            alt = [f"Example {i + 1}: {example_label(p)}" for i, p in enumerate(examples)]
            demo.load(None, js=f"() => ({EXAMPLE_ALT})({json.dumps(alt)})")
        demo.unload(release)
    return demo


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
ARGS = parse_args(sys.argv[1:] if __name__ == "__main__" else [])
demo_service = DemoService.load(ARGS.backend, ARGS.weights, persistent_gallery=ARGS.persistent_gallery)
demo = build_demo(demo_service)
demo.queue(default_concurrency_limit=CONCURRENCY, max_size=32)

if __name__ == "__main__":
    # run_history=False: gradio would keep every call's inputs and outputs (photos, names, plots) in the
    # visitor's localStorage, and re-read and rewrite that whole history three times per call (a slider
    # drag spent more time on it than on the model and the plots together)
    demo.launch(server_name=ARGS.host, server_port=ARGS.port, share=ARGS.share, allowed_paths=[str(ASSETS), str(PLOTLY_JS)],
                max_file_size="40mb", run_history=False, css=CSS, head=PLOT_HEAD + PHONE_TOASTS,
                app_kwargs={"middleware": [Middleware(FrameCounter, registry=demo_service.lives)]})   # live frames   # head: the first photo waited for plotly.js
