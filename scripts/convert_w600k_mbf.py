"""Convert InsightFace's w600k_mbf (buffalo_s's 512-d recognition model) from TFLite to ONNX.

    python scripts/convert_w600k_mbf.py [--tflite ../shared/models/w600k_mbf/w600k_mbf.tflite]
                                        [--out weights/insightface/buffalo_s_w600k/w600k_mbf.onnx]

The TFLite file (`../shared/models/w600k_mbf/README.md`: the official ONNX converted by onnx-tf, then dynamic-range
quantised) is walked op by op (`scripts/tflite_onnx.py`, shared with `convert_face_mesh.py`) and each op written as
the ONNX op that computes the same thing, in the same tensor layout: the int8 weights are dequantised (scale per
output channel), TFLite's NHWC convolutions become ONNX's NCHW ``Conv`` between two ``Transpose`` nodes
(onnxruntime cancels the pairs), and the batch-size arithmetic before the final flatten becomes ``Flatten``. The
graph has the interface insightface's ``ArcFaceONNX`` expects (input ``[N, 3, 112, 112]``, ``(x - 127.5) / 127.5``
applied by insightface, output ``[N, 512]``), so ``FaceAnalysis`` loads it as the pack's recognition model. The map
after the last PReLU, ``[N, 64, 7, 7]``, that the affine head (flatten -> fully connected -> + bias) turns into the
embedding, is the tensor named ``feature_map``
(not a graph output: ``ArcFaceONNX`` asserts a single output; `viewdiff.faces.backends` exposes it in memory).

Deterministic: the same TFLite file gives the same ONNX bytes (checked by ``tests/test_faces_w600k.py``).
Needs the dev packages ``tflite`` and ``onnx`` (``requirements-dev.txt``).
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tflite_onnx import OnnxWriter, TfliteGraph, conversion_main, translate  # noqa: E402  (the shared op-by-op walk)

DEFAULT_TFLITE = REPO_ROOT.parent / "shared/models/w600k_mbf/w600k_mbf.tflite"
DEFAULT_OUT = REPO_ROOT / "weights/insightface/w600k_mbf/w600k_mbf.onnx"
INPUT_NAME, OUTPUT_NAME, MAP_NAME = "input.1", "embedding", "feature_map"
MAP_TFLITE_NAME = "add_82"        # the [1, 64, 7, 7] PReLU output the fully connected head reads
OPSET = 13


def convert(tflite_path: Path):
    """TFLite file -> onnx.ModelProto (see the module docstring)."""
    import onnx
    g = TfliteGraph(tflite_path)
    w = OnnxWriter()
    (src,), (dst,) = g.inputs, g.outputs
    names = {src: INPUT_NAME}
    map_index = next(i for (_, _, _, outs) in g.ops for i in outs if g.name(i) == MAP_TFLITE_NAME)

    translate(g, w, names, [dst])
    w.node("Identity", [names[dst]], [OUTPUT_NAME])
    for node in w.nodes:   # the head's input map gets its own name
        for slots in (node.input, node.output):
            for i, name in enumerate(slots):
                if name == names[map_index]:
                    slots[i] = MAP_NAME
    h = w.helper
    graph = h.make_graph(
        w.nodes, "w600k_mbf",
        [h.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.FLOAT, ["None", 3, 112, 112])],
        [h.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, ["None", 512])],
        w.initializers)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)], producer_name="viewdiff-face",
                         doc_string=f"w600k_mbf (InsightFace buffalo_s), from {Path(tflite_path).name} "
                                    f"sha256 {hashlib.sha256(Path(tflite_path).read_bytes()).hexdigest()}; "
                                    "non-commercial research use only")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main(argv: list[str] | None = None) -> int:
    return conversion_main(__doc__, convert, DEFAULT_TFLITE, DEFAULT_OUT, "the w600k_mbf.tflite of ../shared/models/w600k_mbf/", argv)

if __name__ == "__main__":
    raise SystemExit(main())
