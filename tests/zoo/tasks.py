"""Small models with the structures of the models users bring beyond classification.

Each builder returns an ``onnx.ModelProto`` made in code (seeded weights), reproducing one
structure seen in public exports (PaddleOCR, YOLO-style detectors, dynamic quantization):

* :func:`sigmoid_map`: a segmenter whose one-channel sigmoid map is nearly 0 everywhere;
* :func:`ctc_recogniser`: a CNN whose width becomes time, output ``[T, N, C]`` (CTC layout);
* :func:`shape_chain_classifier`: Paddle's Shape -> Cast -> Slice -> Cast -> Concat -> Reshape
  before the classifier, at symbolic height and width;
* :func:`hidden_rank_gate`: a gate whose rank only a Shape chain folded at a fixed size reveals;
* :func:`yolo_head`: a detector head reshaped to ``[N, 4 + C, A]`` by a Shape chain;
* :func:`wrong_declared_output`: a model that declares an output shape onnxruntime ignores;
* :func:`conv_integer`: a dynamically quantized model (DynamicQuantizeLinear + ConvInteger).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class _Builder:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        out = f"{op.lower()}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op}@{len(self.nodes)}", **attrs))
        return out

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def conv(self, x: str, name: str, cin: int, cout: int, k: int = 3, bias: float = 0.0, **attrs) -> str:
        weight = self.rng.standard_normal((cout, cin, k, k)).astype(np.float32) * np.float32((2 / (cin * k * k)) ** 0.5)
        inputs = [x, self.const(f"{name}_w", weight), self.const(f"{name}_b", np.full(cout, bias, np.float32))]
        self.nodes.append(helper.make_node("Conv", inputs, [name], name=name, pads=[k // 2] * 4, **attrs))
        return name

    def model(self, inputs: list, outputs: list, opset: int = OPSET) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "g", inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        onnx.checker.check_model(model, full_check=True)
        return model


def _image(name: str = "x", channels: int = 3, height=16, width=16):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", channels, height, width])


def sigmoid_map(seed: int = 0, size: int = 16) -> onnx.ModelProto:
    """Conv-ReLU x2, then a one-channel Conv with bias -14 and a Sigmoid: ``y [N, 1, H, W]`` near 1e-6."""
    b = _Builder(seed)
    h = b.node("Relu", [b.conv("x", "conv1", 3, 8)])
    h = b.node("Relu", [b.conv(h, "conv2", 8, 8)])
    b.nodes.append(helper.make_node("Sigmoid", [b.conv(h, "head", 8, 1, bias=-14.0)], ["y"], name="sigmoid"))
    return b.model([_image(height=size, width=size)], [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                                      ["N", 1, size, size])])


def ctc_recogniser(seed: int = 0, classes: int = 6, width: int = 12) -> onnx.ModelProto:
    """``x [N, 3, 8, W]`` -> Conv-ReLU x2 -> mean over height -> ``[W, N, F]`` -> MatMul -> ``y [T=W, N, C]``."""
    b = _Builder(seed)
    h = b.node("Relu", [b.conv("x", "conv1", 3, 8)])
    h = b.node("Relu", [b.conv(h, "conv2", 8, 16)])
    h = b.node("ReduceMean", [h], axes=[2], keepdims=0)  # [N, 16, W]
    h = b.node("Transpose", [h], perm=[2, 0, 1])  # [W, N, 16]
    weight = b.const("fc_w", b.rng.standard_normal((16, classes)).astype(np.float32))
    b.nodes.append(helper.make_node("MatMul", [h, weight], ["y"], name="fc"))
    return b.model([_image(height=8, width=width)],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [width, "N", classes])])


def _shape_chain(b: _Builder, x: str, tail: list[int]) -> str:
    """Paddle's target shape ``[batch of x, *tail]``: Shape -> Cast int32 -> Slice -> Cast int64 -> Concat
    with the Cast of a Constant node whose int32 values sit in ``int32_data``, as paddle2onnx writes it."""
    batch = b.node("Slice", [b.node("Cast", [b.node("Shape", [x])], to=TensorProto.INT32),
                             b.const(f"starts{len(b.nodes)}", np.array([0])), b.const(f"ends{len(b.nodes)}", np.array([1])),
                             b.const(f"axes{len(b.nodes)}", np.array([0]))])
    value = helper.make_tensor("tail", TensorProto.INT32, [len(tail)], tail)
    rest = b.node("Cast", [b.node("Constant", [], value=value)], to=TensorProto.INT64)
    return b.node("Concat", [b.node("Cast", [batch], to=TensorProto.INT64), rest], axis=-1)


def shape_chain_classifier(seed: int = 0, classes: int = 4) -> onnx.ModelProto:
    """``x [N, 3, ?, ?]`` -> Conv-ReLU x2 -> GlobalAveragePool -> Reshape by a Shape chain -> MatMul -> ``y [N, C]``,
    at opset 11 (PaddleOCR's), where onnx's data propagation does not carry the chain's value to the Reshape."""
    b = _Builder(seed)
    h = b.node("Relu", [b.conv("x", "conv1", 3, 8)])
    h = b.node("Relu", [b.conv(h, "conv2", 8, 16)])
    pooled = b.node("GlobalAveragePool", [h])
    flat = b.node("Reshape", [pooled, _shape_chain(b, pooled, [16])])
    weight = b.const("fc_w", b.rng.standard_normal((16, classes)).astype(np.float32))
    b.nodes.append(helper.make_node("MatMul", [flat, weight], ["y"], name="fc"))
    return b.model([_image(height="h", width="w")],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])], opset=11)


def hidden_rank_gate(seed: int = 0, classes: int = 4) -> onnx.ModelProto:
    """``x [N, 3, ?, ?]`` -> Conv-ReLU (8) gated by Sigmoid(Conv 1x1 of the input's pooled colours, reshaped
    by a Shape chain) -> GlobalAveragePool -> Flatten -> MatMul -> ``y [N, C]``, at opset 11: inference
    leaves the reshaped colours without a rank, so the gating Mul cannot place the channel axis until
    the chain is folded at a given input size."""
    b = _Builder(seed)
    h = b.node("Relu", [b.conv("x", "conv1", 3, 8)])
    pooled = b.node("GlobalAveragePool", ["x"])
    colours = b.node("Reshape", [pooled, _shape_chain(b, pooled, [3, 1, 1])])
    gate = b.node("Sigmoid", [b.conv(colours, "gate", 3, 8, k=1)])
    features = b.node("Flatten", [b.node("GlobalAveragePool", [b.node("Mul", [h, gate])])])
    weight = b.const("fc_w", b.rng.standard_normal((8, classes)).astype(np.float32))
    b.nodes.append(helper.make_node("MatMul", [features, weight], ["y"], name="fc"))
    return b.model([_image(height="h", width="w")],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])], opset=11)


def yolo_head(seed: int = 0, classes: int = 3, size: int = 8) -> onnx.ModelProto:
    """``x [N, 3, S, S]`` -> Conv-ReLU -> a 1x1 head of 4 + C channels -> Reshape ``[N, 4 + C, -1]`` by a
    Shape chain -> ``y [N, 4 + C, A]``: boxes (cx, cy, w, h; their absolute values) then class scores (a Sigmoid)."""
    b = _Builder(seed)
    h = b.node("Relu", [b.conv("x", "conv1", 3, 8)])
    head = b.conv(h, "head", 8, 4 + classes, k=1)
    flat = b.node("Reshape", [head, _shape_chain(b, head, [4 + classes, -1])])
    boxes = b.node("Abs", [b.node("Slice", [flat, b.const("s0", np.array([0])), b.const("s4", np.array([4])),
                                            b.const("ax", np.array([1]))])])  # sizes > 0, as decoded boxes have
    scores = b.node("Sigmoid", [b.node("Slice", [flat, "s4", b.const("big", np.array([4 + classes])), "ax"])])
    b.nodes.append(helper.make_node("Concat", [boxes, scores], ["y"], name="concat_out", axis=1))
    return b.model([_image(height=size, width=size)],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4 + classes, size * size])])


def wrong_declared_output(seed: int = 0) -> onnx.ModelProto:
    """Conv-ReLU x2 -> ``y [N, 8, 8, 8]``, declared ``[1, ?]``: an identity Reshape whose target is sliced
    by an end computed from the input's values (4 + 0 x max x) hides the rank from shape inference and
    constant folding, so the checker accepts the declaration."""
    b = _Builder(seed)
    h = b.node("Relu", [b.conv("x", "conv1", 3, 8)])
    h = b.node("Relu", [b.conv(h, "conv2", 8, 8)])
    shape = b.node("Shape", [h])
    zero = b.node("Mul", [b.node("ReduceMax", ["x"], keepdims=0), b.const("zero", np.float32(0))])
    end = b.node("Cast", [b.node("Add", [zero, b.const("rank", np.array([4], np.float32))])], to=TensorProto.INT64)
    target = b.node("Slice", [shape, b.const("start", np.array([0])), end])
    b.nodes.append(helper.make_node("Reshape", [h, target], ["y"], name="reshape_out"))
    return b.model([_image(height=8, width=8)], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "k"])])


def conv_integer(seed: int = 0) -> onnx.ModelProto:
    """``quantize_dynamic``'s form of two Convs: DynamicQuantizeLinear -> ConvInteger (uint8 weights) -> Cast ->
    Mul by the scales, then ReLU."""
    b = _Builder(seed)
    x = "x"
    for i, (cin, cout) in enumerate(((3, 8), (8, 8))):
        q = [f"q{i}", f"q{i}_scale", f"q{i}_zero"]
        b.nodes.append(helper.make_node("DynamicQuantizeLinear", [x], q, name=f"quantize{i}"))
        weight = b.const(f"conv{i}_w", b.rng.integers(0, 255, (cout, cin, 3, 3), dtype=np.uint8))
        integers = b.node("ConvInteger", [q[0], weight, q[2], b.const(f"conv{i}_wzero", np.uint8(128))], pads=[1] * 4)
        scale = b.node("Mul", [q[1], b.const(f"conv{i}_wscale", np.float32(0.01))])
        x = b.node("Relu", [b.node("Mul", [b.node("Cast", [integers], to=TensorProto.FLOAT), scale])])
    b.nodes[-1].output[0] = "y"
    return b.model([_image(height=8, width=8)], [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                                ["N", 8, 8, 8])])
