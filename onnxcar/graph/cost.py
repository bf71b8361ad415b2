"""Parameter and multiply-accumulate counts of a model, before or after a removal plan."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx_graphsurgeon as gs

from onnxcar.graph.channels import EditKind
from onnxcar.graph.context import static_dims

if TYPE_CHECKING:
    from onnxcar.surgery.plan import Plan

_WEIGHTED = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
_POSITIONS = {  # op -> the tensor whose size gives the positions a weight is used at, and the axes counted
    "Conv": (lambda node: node.outputs[0], slice(2, None)),
    "ConvTranspose": (lambda node: node.inputs[0], slice(2, None)),
    "MatMul": (lambda node: node.inputs[0], slice(1, -1)),
}


@dataclass(frozen=True)
class Cost:
    """Float parameters, and MACs per sample of Conv, ConvTranspose, Gemm and MatMul layers
    (None when the size of a layer's activations is unknown: a symbolic height or width)."""

    params: int
    macs: int | None

    def to_dict(self) -> dict:
        return {"params": self.params, "macs": self.macs}


def plan_cost(plan: Plan, shapes: Mapping[str, tuple[int, ...]] | None = None) -> Cost:
    """The cost of the model the plan would leave (of the whole model when it removes nothing).

    MACs are counted at the tensor ``shapes`` (by name, from :func:`onnxcar.graph.shapes.tensor_shapes`
    at the input shapes of interest); by default at the graph's own static shapes.
    """
    dims = _kept_dims(plan)
    params = sum(int(np.prod(d)) for d in dims.values())
    macs = [cost.macs for cost in layer_costs(plan, shapes, dims).values()]
    return Cost(params, None if None in macs else sum(macs))


def layer_costs(plan: Plan, shapes: Mapping[str, tuple[int, ...]] | None = None,
                dims: dict[str, list[int]] | None = None) -> dict[str, Cost]:
    """The cost of each Conv, ConvTranspose, Gemm and MatMul node the plan would leave, by node
    name: its float constant inputs (weights and bias) and its MACs per sample (see :func:`plan_cost`)."""
    dims = _kept_dims(plan) if dims is None else dims
    shape_of = (lambda t: static_dims(t.shape)) if shapes is None else (lambda t: shapes.get(t.name))
    costs = {}
    for node in plan.analysis.graph.nodes:
        if node.op in _WEIGHTED and len(node.inputs) > 1 and node.inputs[1].name in dims:
            params = sum(int(np.prod(dims[name])) for name in dict.fromkeys(i.name for i in node.inputs) if name in dims)
            positions = _positions(node, shape_of)
            macs = None if positions is None else int(np.prod(dims[node.inputs[1].name])) * positions
            costs[node.name] = Cost(params, macs)
    return costs


def _kept_dims(plan: Plan) -> dict[str, list[int]]:
    """The shape of every float constant after the plan's removals."""
    graph = plan.analysis.graph
    nodes = {node.name: node for node in graph.nodes}
    dims: dict[str, list[int]] = {
        name: list(np.shape(t.values)) for name, t in graph.tensors().items() if _is_float_constant(t)
    }
    for edit in plan.analysis.tracer.edits:
        if edit.kind in (EditKind.READ, EditKind.OWN):
            name = nodes[edit.node].inputs[edit.input_index].name
            dims[name][edit.axis] = min(dims[name][edit.axis], int(plan.keep(edit.atoms).sum()))
    return dims


def _positions(node: gs.Node, shape_of: Callable[[gs.Tensor], Sequence[int] | None]) -> int | None:
    """How many times each weight is used per sample; None when the activations' size is unknown."""
    if node.op not in _POSITIONS:
        return 1
    tensor, axes = _POSITIONS[node.op]
    shape = shape_of(tensor(node))
    return None if shape is None else int(np.prod(shape[axes]))


def _is_float_constant(tensor: gs.Tensor) -> bool:
    return isinstance(tensor, gs.Constant) and np.issubdtype(np.asarray(tensor.values).dtype, np.floating)
