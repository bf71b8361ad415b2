"""Parameter and multiply-accumulate counts of a model, before or after a removal plan."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx_graphsurgeon as gs

from onnxcar.graph.channels import EditKind
from onnxcar.graph.constants import stored
from onnxcar.graph.context import static_dims

if TYPE_CHECKING:
    from onnxcar.surgery.plan import Plan

_WEIGHTED = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
_POSITIONS = {  # op -> the tensor whose size gives the positions a weight is used at, and the axes counted
    "Conv": (lambda node: node.outputs[0], slice(2, None)),
    "ConvTranspose": (lambda node: node.inputs[0], slice(2, None)),
    "MatMul": (lambda node: node.inputs[0], slice(1, -1)),
    "LRN": (lambda node: node.outputs[0], slice(2, None)),  # the channel window a pruned LRN becomes
}


@dataclass(frozen=True)
class Cost:
    """Parameters (float constants and quantized weights), and MACs per sample of Conv,
    ConvTranspose, Gemm and MatMul layers and of the channel window a pruned LRN becomes
    (None when the size of a layer's activations is unknown: a symbolic height or width)."""

    params: int
    macs: int | None

    def to_dict(self) -> dict:
        return {"params": self.params, "macs": self.macs}


def plan_cost(plan: Plan, shapes: Mapping[str, tuple[int, ...]] | None = None) -> Cost:
    """The cost of the model the plan would leave (of the whole model when it removes nothing).

    MACs are counted at the tensor ``shapes`` (by name, from :func:`onnxcar.graph.shapes.tensor_shapes`
    at the input shapes of interest), and where those do not size a tensor (or none are given),
    at the graph's own static shapes, which folding may have made known.
    """
    kept = _kept(plan)
    dims, windows = kept
    params = sum(int(np.prod(d)) for d in dims.values()) + sum(channels * channels for _, channels in windows)
    macs = [cost.macs for cost in layer_costs(plan, shapes, kept).values()]
    return Cost(params, None if None in macs else sum(macs))


def layer_costs(plan: Plan, shapes: Mapping[str, tuple[int, ...]] | None = None,
                kept: tuple[dict[str, list[int]], list[tuple[gs.Node, int]]] | None = None) -> dict[str, Cost]:
    """The cost of each Conv, ConvTranspose, Gemm and MatMul node the plan would leave (its constant
    inputs, weights and bias, and its MACs per sample; see :func:`plan_cost`), and of the channel
    window each pruned LRN becomes, by node name."""
    dims, windows = _kept(plan) if kept is None else kept
    shapes = shapes or {}
    shape_of = lambda t: shapes.get(t.name) or static_dims(t.shape)  # noqa: E731
    costs = {}
    for node in plan.analysis.graph.nodes:
        weight = _weight(node)
        if weight is not None and weight.name in dims:
            inputs = dict.fromkeys(t.name for i in node.inputs if (t := stored(i)) is not None)
            params = sum(int(np.prod(dims[name])) for name in inputs if name in dims)
            positions = _positions(node, shape_of)
            costs[node.name] = Cost(params, None if positions is None else int(np.prod(dims[weight.name])) * positions)
    for node, channels in windows:
        positions = _positions(node, shape_of)
        costs[node.name] = Cost(channels * channels, None if positions is None else channels * channels * positions)
    return costs


def _kept(plan: Plan) -> tuple[dict[str, list[int]], list[tuple[gs.Node, int]]]:
    """The shape of every parameter after the plan's removals, and each pruned LRN with the channels
    its window keeps."""
    graph = plan.analysis.graph
    nodes = {node.name: node for node in graph.nodes}
    dims: dict[str, list[int]] = {
        name: list(np.shape(t.values)) for name, t in graph.tensors().items() if _is_parameter(t)
    }
    windows: list[tuple[gs.Node, int]] = []
    for edit in plan.analysis.tracer.edits:
        kept = int(plan.keep(edit.atoms).sum())
        if edit.kind is EditKind.WINDOW and kept < len(edit.atoms):  # surgery writes the window out
            windows.append((nodes[edit.node], kept))
        elif edit.kind in (EditKind.READ, EditKind.OWN):
            name = stored(nodes[edit.node].inputs[edit.input_index]).name
            if edit.pieces:  # a grouped Conv: every group keeps as many
                kept = int(plan.keep(edit.pieces[0]).sum())
            if name in dims:  # not the integer zero points of a per-channel activation quantizer
                dims[name][edit.axis] = min(dims[name][edit.axis], kept)
    return dims, windows


def _weight(node: gs.Node) -> gs.Tensor | None:
    return stored(node.inputs[1]) if node.op in _WEIGHTED and len(node.inputs) > 1 else None


def _positions(node: gs.Node, shape_of: Callable[[gs.Tensor], Sequence[int] | None]) -> int | None:
    """How many times each weight is used per sample; None when the activations' size is unknown."""
    if node.op not in _POSITIONS:
        return 1
    tensor, axes = _POSITIONS[node.op]
    shape = shape_of(tensor(node))
    return None if shape is None else int(np.prod(shape[axes]))


def _is_parameter(tensor: gs.Tensor) -> bool:
    """A float constant, or the integers of a quantized one."""
    if not isinstance(tensor, gs.Constant):
        return False
    return np.issubdtype(np.asarray(tensor.values).dtype, np.floating) or any(
        node.op == "DequantizeLinear" and node.inputs[0] is tensor for node in tensor.outputs
    )
