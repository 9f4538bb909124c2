"""viewdiff-face demo: move a face embedding from the photo's head pose to a target pose.

    python app.py [--host 127.0.0.1] [--port 7860] [--backend auto|dlib|insightface] [--weights DIR] [--share]

The port also comes from $GRADIO_SERVER_PORT and the host from $GRADIO_SERVER_NAME (what a Hugging
Face Space sets), so the same file runs unchanged as a Space (`sdk: gradio`, `app_file: app.py`).
Models are loaded once, when this module is imported (module-level `demo`). The callback logic
lives in `viewdiff.demo.service`; this file only lays out the page and wires events.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import gradio as gr

from viewdiff.demo.examples import ASSETS, example_label, example_photos
from viewdiff.demo.service import POSE_LIMITS, VOXEL_QUANTITIES, DemoService, Reply, ViewOptions

OUTPUTS = ("session", "face_image", "face_info", "attention", "voxels", "similarity", "sweep", "status",
           "gallery_table", "gallery_choice")
INTRO = """# viewdiff-face: pose-aware face embeddings
Drop in a face photo (or pick an example). The face backend finds the largest face, estimates its head
pose and computes its identity embedding, once per photo. The **pose transformer** then maps that embedding
to the **target pose** of the sliders: release a slider to rerun it. The plots show how similar the raw
and transformed embeddings are to every gallery identity, the transformer's attention and its 3D voxel grid."""
CONCURRENCY = int(os.environ.get("VIEWDIFF_CONCURRENCY", "2"))  # requests the server runs at once


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


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--backend", choices=("auto", "dlib", "insightface"), default="auto")
    p.add_argument("--weights", default=os.environ.get("VIEWDIFF_WEIGHTS"),
                   help="enhanced weights folder (default weights/<backend>/enhanced, or $VIEWDIFF_WEIGHTS)")
    p.add_argument("--share", action="store_true", help="create a public gradio.live link (off by default)")
    return p.parse_args(argv)


def _respond(reply: Reply) -> list:
    for text in reply.warnings:
        gr.Warning(text)
    for text in reply.infos:
        gr.Info(text)
    values = (reply.values.get(name, gr.skip()) for name in OUTPUTS)
    # a plain dict is a property update; plots are dict subclasses (viewdiff.demo.plots.PlotSpec), passed as values
    return [gr.update(**v) if type(v) is dict else v for v in values]


def build_demo(service: DemoService) -> gr.Blocks:
    layers, heads = service.attention_shape
    resolution = service.voxel_resolution
    (yaw_lo, yaw_hi), (pitch_lo, pitch_hi), (roll_lo, roll_hi) = POSE_LIMITS
    with gr.Blocks(title="viewdiff-face demo") as demo:
        session = gr.State(None)
        gr.Markdown(INTRO)
        with gr.Row(equal_height=False):
            with gr.Column(scale=5):
                photo = pass_files_through(gr.Image(label="Face photo (upload, webcam or paste)", type="filepath",
                                                    sources=["upload", "webcam", "clipboard"], height=300,
                                                    elem_id="photo"))
                if examples := example_photos():
                    gr.Examples(examples, inputs=photo, cache_examples=False, examples_per_page=12, label="Examples")
                    gr.Markdown("<small>" + " · ".join(f"{i + 1}: {example_label(p)}" for i, p in enumerate(examples))
                                + "</small>", elem_id="example-captions")
                face_image = gr.Image(label="Detected face: box and 5 keypoints of the face used", interactive=False,
                                      height=300, elem_id="face-image")
                face_info = gr.Markdown("No photo yet.", elem_id="face-info")
            with gr.Column(scale=7):
                with gr.Group():
                    yaw = gr.Slider(yaw_lo, yaw_hi, value=0, step=1, elem_id="yaw",
                                    label="Target yaw (deg; + = face turned to the image's left)")
                    pitch = gr.Slider(pitch_lo, pitch_hi, value=0, step=1, label="Target pitch (deg; + = head up)",
                                      elem_id="pitch")
                    roll = gr.Slider(roll_lo, roll_hi, value=0, step=1, label="Target roll (deg)", elem_id="roll")
                with gr.Row():
                    reset = gr.Button("Reset to frontal", size="sm", scale=0, elem_id="reset")
                    status = gr.Markdown("", elem_id="status")
                similarity = gr.Plot(label="Gallery similarity", elem_id="similarity-plot")
                sweep = gr.Plot(label="Pose sweep", elem_id="sweep-plot")
        with gr.Row(equal_height=False):
            with gr.Column():
                with gr.Row():
                    layer = gr.Dropdown([(f"layer {i + 1}", i) for i in range(layers)], value=max(layers - 1, 0),
                                        label="Layer", interactive=layers > 0, elem_id="layer")
                    head = gr.Dropdown([(f"head {i + 1}", i) for i in range(heads)], value=0, label="Head",
                                       interactive=heads > 0, elem_id="head")
                attention = gr.Plot(label="Attention map", elem_id="attention-plot")
            with gr.Column():
                with gr.Row():
                    quantity = gr.Radio(list(VOXEL_QUANTITIES), value=VOXEL_QUANTITIES[0], label="Voxel quantity")
                    axis = gr.Radio(["x", "y", "z"], value="z", label="Slice axis (z: depth)", elem_id="axis")
                with gr.Row():
                    index = gr.Slider(0, resolution - 1, value=resolution // 2, step=1, label="Slice",
                                      elem_id="slice")
                    as_3d = gr.Checkbox(False, label="3D isosurface view", elem_id="as-3d")
                voxels = gr.Plot(label="Voxel grid of the 3D projection layer", elem_id="voxel-plot")
        with gr.Accordion("Gallery", open=True):
            gallery_table = gr.Dataframe(service.gallery_rows(), headers=["name", "source", "photos"],
                                         interactive=False, elem_id="gallery-table", max_height=260)
            with gr.Row():
                name = gr.Textbox(label="Name", placeholder="e.g. Ada Lovelace", scale=3, elem_id="gallery-name")
                add = gr.Button("Add this face to the gallery as NAME", scale=2, elem_id="gallery-add")
            with gr.Row():
                gallery_choice = gr.Dropdown(service.gallery.names, value=None, label="Gallery entry", scale=3)
                remove = gr.Button("Remove entry", variant="stop", scale=2)
        with gr.Accordion("Model card", open=True):
            gr.Markdown(service.model_card(), elem_id="model-card")

        components = dict(session=session, face_image=face_image, face_info=face_info, attention=attention,
                          voxels=voxels, similarity=similarity, sweep=sweep, status=status,
                          gallery_table=gallery_table, gallery_choice=gallery_choice)
        outputs = [components[name] for name in OUTPUTS]
        pose_inputs = [yaw, pitch, roll]
        view_inputs = [layer, head, quantity, axis, index, as_3d]

        def bind(method, leading: int):
            def callback(*args):
                lead, pose = args[:leading], args[leading:leading + 3]
                view = ViewOptions(*args[leading + 3:leading + 3 + len(view_inputs)])
                return _respond(method(*lead, pose, view, args[-1]))
            return callback

        def redraw(*args):
            return _respond(service.on_view(ViewOptions(*args[:-1]), args[-1]))

        photo.change(bind(service.on_photo, 1), [photo, *pose_inputs, *view_inputs, session], outputs,
                     concurrency_limit=1, concurrency_id="face")
        for slider in pose_inputs:
            slider.release(bind(service.on_target, 0), [*pose_inputs, *view_inputs, session], outputs,
                           show_progress="hidden", trigger_mode="always_last")
        reset.click(lambda: (0, 0, 0), None, pose_inputs, queue=False).then(
            bind(service.on_target, 0), [*pose_inputs, *view_inputs, session], outputs, show_progress="hidden")
        for control in (layer, head, quantity, axis, as_3d):
            control.change(redraw, [*view_inputs, session], outputs, show_progress="hidden")
        index.release(redraw, [*view_inputs, session], outputs, show_progress="hidden", trigger_mode="always_last")
        add.click(bind(service.on_add, 1), [name, *pose_inputs, *view_inputs, session], outputs)
        remove.click(bind(service.on_remove, 1), [gallery_choice, *pose_inputs, *view_inputs, session], outputs)
    return demo


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
ARGS = parse_args(sys.argv[1:] if __name__ == "__main__" else [])
demo = build_demo(DemoService.load(ARGS.backend, ARGS.weights))
demo.queue(default_concurrency_limit=CONCURRENCY, max_size=32)

if __name__ == "__main__":
    demo.launch(server_name=ARGS.host, server_port=ARGS.port, share=ARGS.share, allowed_paths=[str(ASSETS)],
                max_file_size="40mb")
