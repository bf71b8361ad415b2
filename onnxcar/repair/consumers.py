"""The layers a least-squares repair refits: every Conv, Gemm and MatMul with constant weights
that reads a tensor which lost channels."""

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

log = logging.getLogger(__name__)
REFITTED = ("Conv", "Gemm", "MatMul")
WEIGHTED = ("ConvInteger", "QLinearConv", "MatMulInteger", "QLinearMatMul", "ConvTranspose")  # read, never refitted


@dataclass(frozen=True)
class Consumer:
    """A layer to refit: its data input, its output, its weights (initializer names) and attributes."""

    name: str
    op: str
    data: str
    output: str
    weight: str
    bias: str | None
    attrs: dict
    out_kept: np.ndarray | None  # kept output channels, original numbering; None: all

    @property
    def label(self) -> str:
        return self.name or self.output


def find_consumers(model: onnx.ModelProto, kept: Mapping[str, np.ndarray]) -> list[Consumer]:
    """The refittable readers of the tensors in ``kept``, in graph order; warns about, and leaves
    out, readers whose weights are computed, quantized or shared."""
    stored = {t.name for t in model.graph.initializer}
    readers = Counter(name for node in model.graph.node for name in node.input)
    consumers = []
    for node in model.graph.node:
        data = node.input[0] if node.input else ""
        if node.op_type in WEIGHTED and any(name in kept for name in node.input):
            log.warning("not refitting %s: %s weights cannot be refitted", node.name or node.output[0], node.op_type)
            continue
        if node.op_type not in REFITTED or data not in kept:
            continue
        label = node.name or node.output[0]
        weight = node.input[1]
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        if weight not in stored or (bias is not None and bias not in stored):
            log.warning("not refitting %s: its weights are not constants", label)
        elif readers[weight] > 1 or (bias is not None and readers[bias] > 1):
            log.warning("not refitting %s: it shares its weights with another node", label)
        elif (reason := _unsupported(node, model)) is not None:
            log.warning("not refitting %s: %s", label, reason)
        else:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type == "Conv":
                attrs.setdefault("kernel_shape", initializer(model, weight).shape[2:])
            consumers.append(Consumer(node.name, node.op_type, data, node.output[0], weight, bias, attrs,
                                      kept.get(node.output[0])))
    return consumers


def _unsupported(node: onnx.NodeProto, model: onnx.ModelProto) -> str | None:
    """Why the refit cannot handle this node's form, or None."""
    weight = initializer(model, node.input[1])
    if node.op_type == "Conv" and weight.ndim != 4:
        return f"a {weight.ndim - 2}-D Conv (only 2-D Convs are refitted)"
    if node.op_type == "MatMul" and weight.ndim != 2:
        return "a MatMul whose constant weight is not a matrix"
    if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]:
        if initializer(model, node.input[2]).size not in (1, weight.shape[0 if _attr(node, "transB") else 1]):
            return "a Gemm whose C is not a bias (one value per output)"
    return None


def _attr(node: onnx.NodeProto, name: str, default=0):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    return numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name))
