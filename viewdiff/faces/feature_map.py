"""The embedder's last spatial map and the affine head that turns it into the embedding (NumPy + onnxruntime).

A MobileFaceNet ends in a 7x7 map that covers the aligned face (eyes, nose, mouth, cheeks: 49 cells) and
a small head. In the shipped w600k_mbf (`scripts/convert_w600k_mbf.py`) the tensor ``feature_map``
``[N, 64, 7, 7]`` is the map after the last PReLU, and the head is affine: flatten -> fully connected ->
+ bias. `FeatureMapModel` runs the recognition ONNX with that tensor as a second output (added in memory:
insightface's ``ArcFaceONNX`` wants a single output, so the file has one) and reads the head's weights
from the graph, so a change of the map can be turned into a change of the embedding exactly:
``embedding = weight @ map.reshape(-1) + bias``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from viewdiff.faces.errors import ModelNotFoundError

MAP_TENSOR = "feature_map"


class NoFeatureMapError(ModelNotFoundError):
    """The recognition model has no ``feature_map`` tensor (any model but the shipped w600k_mbf)."""


def affine_head(model_file: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(weight [D, C*H*W], bias [D]) of a recognition ONNX's head, read from the graph (no session)."""
    import onnx
    return read_affine_head(onnx.load(str(model_file)).graph)


class FeatureMapModel:
    """Recognition ONNX with its ``feature_map`` exposed: ``run(crops) -> (embedding [N, D], map [N, C, H, W])``.

    crops: [N, 112, 112, 3] uint8 RGB aligned faces (`viewdiff.faces.backends.arcface_crop`), prepared as
    insightface's ``ArcFaceONNX`` does ((x - 127.5) / 127.5, channels first). ``head`` = (weight [D, C*H*W],
    bias [D]) read from the graph. Raises `NoFeatureMapError` when the model has no such tensor and
    `ModelNotFoundError` when its head is not flatten -> Gemm -> (Add) -> output.
    """

    def __init__(self, model_file: str | Path, providers=None):
        import onnx
        import onnxruntime

        from viewdiff.faces.model_files import onnx_providers, ort_session_options
        model = onnx.load(str(model_file))
        graph = model.graph
        if not any(MAP_TENSOR in node.output for node in graph.node):
            raise NoFeatureMapError(f"{Path(model_file).name} has no tensor named {MAP_TENSOR!r}: only the shipped "
                                     "w600k_mbf pack exposes its 7x7 map (scripts/convert_w600k_mbf.py)")
        self.head = read_affine_head(graph)
        graph.output.append(onnx.helper.make_tensor_value_info(MAP_TENSOR, onnx.TensorProto.FLOAT, None))
        self.session = onnxruntime.InferenceSession(model.SerializeToString(), ort_session_options(),
                                                    providers=onnx_providers(providers))
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [graph.output[0].name, MAP_TENSOR]

    def run(self, crops: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
        crops = np.asarray(crops)
        outs = [self.session.run(self.output_names, {self.input_name: prepare(crops[i:i + batch])})
                for i in range(0, len(crops), batch)]
        return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])

    def run_with_mirror(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """crops and their mirror images in one run -> (embedding, embedding_mirror, map, map_mirror), the
        mirror's map flipped back so that its cells cover the same face regions as the photo's."""
        crops = np.asarray(crops)
        emb, maps = self.run(np.concatenate([crops, crops[:, :, ::-1]]))
        n = len(crops)
        return emb[:n], emb[n:], maps[:n], np.ascontiguousarray(maps[n:, :, :, ::-1])


def prepare(crops: np.ndarray) -> np.ndarray:
    """[N, 112, 112, 3] uint8 RGB -> [N, 3, 112, 112] float32 (x - 127.5) / 127.5 (ArcFaceONNX's input)."""
    return ((np.asarray(crops, np.float32) - 127.5) / 127.5).transpose(0, 3, 1, 2).copy()


def apply_head(head: tuple[np.ndarray, np.ndarray], maps: np.ndarray) -> np.ndarray:
    """maps [N, C, H, W] -> embeddings [N, D] (not normalised) through the affine head (weight, bias)."""
    weight, bias = head
    return np.asarray(maps, np.float32).reshape(len(maps), -1) @ weight.T + bias


def read_affine_head(graph) -> tuple[np.ndarray, np.ndarray]:
    """(weight [D, C*H*W], bias [D]) of the nodes between ``feature_map`` and the first graph output."""
    from onnx import numpy_helper
    consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    weight = bias = None
    tensor, output = MAP_TENSOR, graph.output[0].name
    while tensor != output:
        nodes = [n for n in consumers.get(tensor, []) if n.op_type != "Identity" or n.output[0] == output]
        if len(nodes) != 1:
            raise ModelNotFoundError(f"the head after {MAP_TENSOR!r} is not a single chain of nodes")
        node = nodes[0]
        if node.op_type == "Gemm" and weight is None:
            attrs = {a.name: a.i for a in node.attribute}
            w = consts[node.input[1]]
            weight = (w if attrs.get("transB", 0) else w.T).astype(np.float32)
            bias = consts[node.input[2]].reshape(-1).astype(np.float32) if len(node.input) > 2 else 0 * weight[:, 0]
        elif node.op_type == "Add" and weight is not None:
            bias = bias + consts[next(i for i in node.input if i in consts)].reshape(-1)
        elif node.op_type not in ("Flatten", "Identity", "Reshape"):
            raise ModelNotFoundError(f"the head after {MAP_TENSOR!r} has a {node.op_type} node: it is not affine")
        tensor = node.output[0]
    if weight is None:
        raise ModelNotFoundError(f"no fully connected layer after {MAP_TENSOR!r}")
    return weight, bias.astype(np.float32)
