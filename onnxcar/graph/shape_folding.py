"""Shape computations folded at a fixed input size, where onnx's data propagation stops.

Paddle exports compute a Reshape's target as Shape -> Cast(int32) -> Slice -> Cast(int64) ->
Concat; onnx's shape inference does not carry values through the Casts, so the Reshape and
every layer after it stay unsized. Once the inputs have fixed sizes, each Shape of a sized
tensor is a constant, and so is every small integer computation that reads only constants:
:func:`fold_shape_computations` evaluates them (with onnx's reference evaluator) and writes
them into the graph as initializers, so that inference, run again, sizes what follows.
"""

import math

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

FOLDABLE = frozenset({
    "Cast", "Slice", "Concat", "Gather", "Unsqueeze", "Squeeze", "Add", "Sub", "Mul", "Div", "Floor", "Ceil",
    "Identity", "Reshape", "ReduceProd", "Equal", "Where", "Max", "Min", "Range", "Neg", "Abs", "Constant",
})
"""Ops whose value is computed here once all their inputs are known constants."""
MAX_VALUES = 64
"""The most values a folded tensor may hold: shape computations are small; activations are not."""


def fold_shape_computations(model: onnx.ModelProto, sizes: dict[str, tuple[int, ...]]) -> int:
    """Replaces, in ``model`` (a weightless copy with fixed input sizes), each Shape of a tensor that
    ``sizes`` sizes, and each small integer computation on constants only, by an initializer; returns
    how many nodes it replaced."""
    graph = model.graph
    known = {t.name: numpy_helper.to_array(t) for t in graph.initializer if math.prod(t.dims) <= MAX_VALUES}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    kept, folded = [], 0
    for node in graph.node:
        value = _value(node, known, sizes, opset)
        if value is None:
            kept.append(node)
            continue
        known[node.output[0]] = value
        graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
        folded += 1
    if folded:
        del graph.node[:]
        graph.node.extend(kept)
        outputs = {o.name for o in graph.output}
        kept_info = [v for v in graph.value_info if v.name not in known or v.name in outputs]
        del graph.value_info[:]
        graph.value_info.extend(kept_info)
    return folded


def _value(node: onnx.NodeProto, known: dict[str, np.ndarray], sizes: dict[str, tuple[int, ...]],
           opset: int) -> np.ndarray | None:
    """The value of ``node``'s one output when it is a Shape of a sized tensor or a small computation
    on known constants; None otherwise."""
    if len(node.output) != 1 or node.domain not in ("", "ai.onnx"):
        return None
    if node.op_type == "Shape":
        shape = sizes.get(node.input[0])
        if shape is None:
            return None
        attrs = {a.name: a.i for a in node.attribute}
        return np.array(shape[attrs.get("start", 0): attrs.get("end", len(shape))], np.int64)
    if node.op_type not in FOLDABLE or node.op_type != "Constant" and not node.input:
        return None
    inputs = [name for name in node.input if name]
    if not all(name in known for name in inputs):
        return None
    if node.op_type != "Constant" and not all(np.issubdtype(known[n].dtype, np.integer) for n in inputs[:1]):
        return None  # a float computation: not a shape
    graph = helper.make_graph([node], "fold", [], [helper.make_tensor_value_info(node.output[0], 0, None)],
                              [numpy_helper.from_array(known[n], n) for n in dict.fromkeys(inputs)])
    try:
        value = ReferenceEvaluator(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])).run(None, {})[0]
    except Exception:  # an op or attribute the reference evaluator lacks: leave the node to inference
        return None
    value = np.asarray(value)
    return value if value.size <= MAX_VALUES else None
