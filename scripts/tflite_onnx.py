"""TFLite -> ONNX, op by op: the code the conversion scripts share (`convert_w600k_mbf.py`, `convert_face_mesh.py`).

`TfliteGraph` reads the one subgraph of a TFLite file (ops, tensors, constants: int8 weights dequantised per
channel, float16 weights behind DEQUANTIZE ops read as float32); `OnnxWriter` collects ONNX nodes and
initializers with unique, readable names; `translate` writes each op the outputs need as the ONNX op that
computes the same thing in the same tensor layout (TFLite's NHWC: its convolutions and pools become ONNX's NCHW
``Conv`` / ``MaxPool`` between two ``Transpose`` nodes, which onnxruntime cancels pairwise). Constants are
written when first read, so the same TFLite file gives the same ONNX bytes every run.
Needs the dev packages ``tflite`` and ``onnx`` (``requirements-dev.txt``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

NHWC_TO_NCHW, NCHW_TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]
ACTIVATIONS = {0: None, 1: "Relu", 3: "Relu6"}   # TFLite ActivationFunctionType
TENSOR_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64, 9: np.int8}   # TFLite TensorType
INT8, FLOAT16 = 9, 1


class TfliteGraph:
    """The one subgraph of a TFLite model: ops, tensors, constant data (dequantised to float32)."""

    def __init__(self, path: Path):
        import tflite
        self.tflite = tflite
        buf = Path(path).read_bytes()
        self.model = tflite.Model.GetRootAsModel(buf, 0)
        self.graph = self.model.Subgraphs(0)
        codes = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
        self.ops = []
        for k in range(self.graph.OperatorsLength()):
            op = self.graph.Operators(k)
            code = self.model.OperatorCodes(op.OpcodeIndex())
            kind = codes[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
            self.ops.append((kind, op, [op.Inputs(i) for i in range(op.InputsLength())],
                             [op.Outputs(i) for i in range(op.OutputsLength())]))
        self.inputs = [self.graph.Inputs(i) for i in range(self.graph.InputsLength())]
        self.outputs = [self.graph.Outputs(i) for i in range(self.graph.OutputsLength())]
        # DEQUANTIZE of a constant (float16 weights): its output is that constant as float32
        self.dequantized = {outs[0]: ins[0] for kind, _, ins, outs in self.ops if kind == "DEQUANTIZE"}

    def name(self, index: int) -> str:
        return self.graph.Tensors(index).Name().decode()

    def shape(self, index: int) -> list[int]:
        t = self.graph.Tensors(index)
        return [int(v) for v in t.ShapeAsNumpy()] if t.ShapeLength() else []

    def constant(self, index: int) -> np.ndarray | None:
        """The tensor's data (int8 weights dequantised per channel, float16 ones behind a DEQUANTIZE op as
        float32), or None for an activation."""
        if index in self.dequantized:
            value = self.constant(self.dequantized[index])
            return None if value is None else value.astype(np.float32)
        t = self.graph.Tensors(index)
        data = self.model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(data, int) or data.size == 0:
            return None
        value = np.frombuffer(data.tobytes(), TENSOR_TYPES[t.Type()]).reshape(self.shape(index))
        if t.Type() != INT8:
            return value
        q = t.Quantization()
        scale, zero = q.ScaleAsNumpy().astype(np.float32), q.ZeroPointAsNumpy().astype(np.float32)
        axis = q.QuantizedDimension()
        bshape = [-1 if d == axis else 1 for d in range(value.ndim)] if scale.size > 1 else [1] * value.ndim
        return ((value.astype(np.float32) - zero.reshape(bshape)) * scale.reshape(bshape)).astype(np.float32)

    def options(self, op, cls_name: str):
        opts = getattr(self.tflite, cls_name)()
        table = op.BuiltinOptions()
        opts.Init(table.Bytes, table.Pos)
        return opts


class OnnxWriter:
    """Collects ONNX nodes and initializers with unique, readable names."""

    def __init__(self):
        from onnx import helper, numpy_helper
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.initializers, self.count = [], [], 0

    def const(self, value: np.ndarray, hint: str) -> str:
        name = f"const_{len(self.initializers):03d}_{hint}"
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op_type: str, inputs: list[str], outputs: list[str] | None = None, **attrs) -> str:
        # names never start with "Sub"/"Mul": insightface reads such first nodes as a built-in normalisation
        self.count += 1
        outputs = outputs or [f"t{self.count:04d}_{op_type.lower()}"]
        self.nodes.append(self.helper.make_node(op_type, inputs, outputs, name=f"n{self.count:04d}_{op_type}", **attrs))
        return outputs[0]


def live_ops(g: TfliteGraph, outputs: list[int]) -> list[bool]:
    """Which ops the outputs need; the shape inputs of RESHAPE are not followed (written as constants)."""
    producer = {out: k for k, (_, _, _, outs) in enumerate(g.ops) for out in outs}
    needed, stack, live = set(), list(outputs), [False] * len(g.ops)
    while stack:
        t = stack.pop()
        if t in needed or t not in producer:
            continue
        needed.add(t)
        k = producer[t]
        live[k] = True
        kind, _, ins, _ = g.ops[k]
        stack += [i for i in (ins[:1] if kind == "RESHAPE" else ins) if i >= 0]
    return live


def translate(g: TfliteGraph, w: OnnxWriter, names: dict[int, str], outputs: list[int]) -> dict[int, str]:
    """Write every op that `outputs` need into `w`; `names` maps TFLite tensor indices to ONNX names (the graph
    inputs given, the rest filled in) and is returned."""

    def value(index: int, hint: str = "c") -> str:
        if index not in names:
            const = g.constant(index)
            if const is None:
                raise ValueError(f"tensor {g.name(index)!r} is read before it is written")
            names[index] = w.const(const, hint)
        return names[index]

    def activation(x: str, code: int) -> str:
        if code not in ACTIVATIONS:
            raise ValueError(f"fused activation {code} is not supported")
        kind = ACTIVATIONS[code]
        if kind == "Relu6":
            return w.node("Clip", [x, w.const(np.float32(0), "zero"), w.const(np.float32(6), "six")])
        return w.node(kind, [x]) if kind else x

    def conv(op, ins, depthwise: bool) -> str:
        o = g.options(op, "DepthwiseConv2DOptions" if depthwise else "Conv2DOptions")
        weight = g.constant(ins[1])                       # OHWI, or 1HWC for depthwise
        if depthwise:
            weight = weight.transpose(3, 0, 1, 2)         # C 1 H W (multiplier 1: checked by the shape)
            if o.DepthMultiplier() != 1:
                raise ValueError("depthwise multiplier != 1 is not supported")
        else:
            weight = weight.transpose(0, 3, 1, 2)         # O I H W
        inputs = [w.node("Transpose", [value(ins[0])], perm=NHWC_TO_NCHW), w.const(weight, "w")]
        if len(ins) > 2 and ins[2] >= 0:
            inputs.append(w.const(g.constant(ins[2]), "b"))
        attrs = dict(strides=[o.StrideH(), o.StrideW()], dilations=[o.DilationHFactor(), o.DilationWFactor()],
                     group=weight.shape[0] if depthwise else 1)
        attrs["auto_pad"] = "SAME_UPPER" if o.Padding() == 0 else "VALID"   # TFLite Padding: SAME 0, VALID 1
        y = w.node("Conv", inputs, **attrs)
        return w.node("Transpose", [activation(y, o.FusedActivationFunction())], perm=NCHW_TO_NHWC)

    def max_pool(op, ins) -> str:
        o = g.options(op, "Pool2DOptions")
        x = w.node("Transpose", [value(ins[0])], perm=NHWC_TO_NCHW)
        y = w.node("MaxPool", [x], kernel_shape=[o.FilterHeight(), o.FilterWidth()],
                   strides=[o.StrideH(), o.StrideW()], auto_pad="SAME_UPPER" if o.Padding() == 0 else "VALID")
        return w.node("Transpose", [activation(y, o.FusedActivationFunction())], perm=NCHW_TO_NHWC)

    binary = {"ADD": ("Add", "AddOptions"), "SUB": ("Sub", "SubOptions"), "MUL": ("Mul", "MulOptions")}
    for (kind, op, ins, outs), live in zip(g.ops, live_ops(g, outputs)):
        if not live or kind == "DEQUANTIZE":   # DEQUANTIZE: its output is read as a constant (`TfliteGraph.constant`)
            continue
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            y = conv(op, ins, kind == "DEPTHWISE_CONV_2D")
        elif kind in binary:
            onnx_op, opts = binary[kind]
            y = activation(w.node(onnx_op, [value(ins[0]), value(ins[1])]),
                           g.options(op, opts).FusedActivationFunction())
        elif kind in ("RELU", "ABS"):
            y = w.node(kind.capitalize(), [value(ins[0])])
        elif kind == "PRELU":   # slope [1, 1, C] broadcasts over NHWC as in TFLite
            y = w.node("PRelu", [value(ins[0]), value(ins[1], "alpha")])
        elif kind == "MAX_POOL_2D":
            y = max_pool(op, ins)
        elif kind == "TRANSPOSE":
            y = w.node("Transpose", [value(ins[0])], perm=[int(v) for v in g.constant(ins[1])])
        elif kind == "PAD":
            pads = g.constant(ins[1]).astype(np.int64)    # [rank, 2] (before, after)
            y = w.node("Pad", [value(ins[0]), w.const(np.concatenate([pads[:, 0], pads[:, 1]]), "pads")])
        elif kind == "SPLIT":
            axis, n = int(g.constant(ins[0])), g.options(op, "SplitOptions").NumSplits()
            width = g.shape(ins[1])[axis] // n
            outs_names = [f"split_{len(w.nodes):04d}_{i:02d}" for i in range(n)]
            w.node("Split", [value(ins[1]), w.const(np.full(n, width, np.int64), "split")], outs_names, axis=axis)
            names.update(zip(outs, outs_names))
            continue
        elif kind == "CONCATENATION":
            o = g.options(op, "ConcatenationOptions")
            y = activation(w.node("Concat", [value(i) for i in ins], axis=o.Axis()), o.FusedActivationFunction())
        elif kind == "RESHAPE":
            shape = g.shape(outs[0])
            if len(shape) == 2 and len(g.shape(ins[0])) > 2:   # the flatten before the head (batch arithmetic)
                y = w.node("Flatten", [value(ins[0])], axis=1)
            else:
                y = w.node("Reshape", [value(ins[0]), w.const(np.array([-1] + shape[1:], np.int64), "shape")])
        elif kind == "FULLY_CONNECTED":
            weight = g.constant(ins[1])                   # [out, in]
            y = w.node("Gemm", [value(ins[0]), w.const(weight, "fc_w"),
                                w.const(g.constant(ins[2]).reshape(-1), "fc_b")], transB=1)
            y = activation(y, g.options(op, "FullyConnectedOptions").FusedActivationFunction())
        else:
            raise ValueError(f"TFLite op {kind} is not supported by this converter")
        names[outs[0]] = y
    return names


def conversion_main(doc: str, convert, default_tflite: Path, default_out: Path, what: str,
                    argv: list[str] | None = None) -> int:
    """A conversion script's command line: ``--tflite`` (default `default_tflite`; `what` names the file to pass when
    it is missing) and ``--out``; writes ``convert(tflite).SerializeToString()`` and prints its size and sha256."""
    import argparse
    import hashlib
    import sys
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--tflite", type=Path, default=default_tflite)
    p.add_argument("--out", type=Path, default=default_out)
    args = p.parse_args(argv)
    if not args.tflite.is_file():
        print(f"error: {args.tflite} not found: pass --tflite, {what}", file=sys.stderr)
        return 2
    data = convert(args.tflite).SerializeToString()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"{args.out}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    return 0

