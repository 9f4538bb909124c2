"""Convert MediaPipe Face Mesh's landmark model (468 3D landmarks of one face) from TFLite to ONNX.

    python scripts/convert_face_mesh.py [--tflite ../shared/models/face_mesh/face_landmark.tflite]
                                        [--out weights/face_mesh/face_landmark.onnx]

The TFLite file (`../shared/models/face_mesh/README.md`: byte-identical to the one in the mediapipe 0.10.21 wheel,
Apache-2.0) is walked op by op by `scripts/tflite_onnx.py` (the walk `convert_w600k_mbf.py` uses): its float16
weights (DEQUANTIZE ops) become float32 constants, CONV_2D / DEPTHWISE_CONV_2D / MAX_POOL_2D become ONNX's NCHW
``Conv`` / ``MaxPool`` between ``Transpose`` pairs, PRELU ``PRelu``, ADD ``Add``, and the channel PADs ``Pad``.

Interface (the TFLite one, kept NHWC so the graph needs no extra transpose at its input and a caller feeds the
same array to either file):
- input ``input`` ``[N, 192, 192, 3]`` float32 RGB in [0, 1], the face crop (`viewdiff.faces.face_mesh`);
- output ``landmarks`` ``[N, 1404]`` = 468 x (x, y, z) in pixels of the 192 x 192 input (z: relative depth in
  the same units, smaller = nearer the camera), TFLite's ``conv2d_21`` flattened;
- output ``presence_logit`` ``[N, 1]``: face-presence logit (sigmoid it), TFLite's ``conv2d_31`` flattened.

Deterministic: the same TFLite file gives the same ONNX bytes (checked by ``tests/test_faces_face_mesh.py``).
Needs the dev packages ``tflite`` and ``onnx`` (``requirements-dev.txt``).
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tflite_onnx import OnnxWriter, TfliteGraph, conversion_main, translate  # noqa: E402  (the shared op-by-op walk)

DEFAULT_TFLITE = REPO_ROOT.parent / "shared/models/face_mesh/face_landmark.tflite"
DEFAULT_OUT = REPO_ROOT / "weights/face_mesh/face_landmark.onnx"
INPUT_NAME, INPUT_SIZE = "input", 192
OUTPUTS = {"conv2d_21": ("landmarks", 1404), "conv2d_31": ("presence_logit", 1)}   # TFLite name -> ONNX, width
OPSET = 13


def convert(tflite_path: Path):
    """TFLite file -> onnx.ModelProto (see the module docstring)."""
    import onnx
    g = TfliteGraph(tflite_path)
    w = OnnxWriter()
    (src,) = g.inputs
    names = translate(g, w, {src: INPUT_NAME}, list(g.outputs))
    outputs = []
    for index in g.outputs:
        name, width = OUTPUTS[g.name(index)]
        w.node("Flatten", [names[index]], [name], axis=1)
        outputs.append(w.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["N", width]))
    h = w.helper
    graph = h.make_graph(
        w.nodes, "face_mesh_landmarks",
        [h.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.FLOAT, ["N", INPUT_SIZE, INPUT_SIZE, 3])],
        outputs, w.initializers)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)], producer_name="viewdiff-face",
                         doc_string=f"MediaPipe Face Mesh landmarks, from {Path(tflite_path).name} "
                                    f"sha256 {hashlib.sha256(Path(tflite_path).read_bytes()).hexdigest()} "
                                    "(mediapipe 0.10.21); Apache-2.0, see LICENSE.mediapipe")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main(argv: list[str] | None = None) -> int:
    return conversion_main(__doc__, convert, DEFAULT_TFLITE, DEFAULT_OUT, "the face_landmark.tflite of ../shared/models/face_mesh/", argv)

if __name__ == "__main__":
    raise SystemExit(main())
