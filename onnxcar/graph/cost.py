"""Parameter and multiply-accumulate counts of a model, before or after a removal plan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx_graphsurgeon as gs

from onnxcar.graph.channels import EditKind
from onnxcar.graph.context import static_dims

if TYPE_CHECKING:
    from onnxcar.surgery.plan import Plan

_WEIGHTED = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


@dataclass(frozen=True)
class Cost:
    """Float parameters, and MACs per sample of Conv, ConvTranspose, Gemm and MatMul layers."""

    params: int
    macs: int

    def to_dict(self) -> dict:
        return {"params": self.params, "macs": self.macs}


def plan_cost(plan: Plan) -> Cost:
    """The cost of the model the plan would leave (of the whole model when it removes nothing)."""
    dims = _kept_dims(plan)
    params = sum(int(np.prod(d)) for d in dims.values())
    return Cost(params, sum(cost.macs for cost in layer_costs(plan, dims).values()))


def layer_costs(plan: Plan, dims: dict[str, list[int]] | None = None) -> dict[str, Cost]:
    """The cost of each Conv, ConvTranspose, Gemm and MatMul node the plan would leave, by node
    name: its float constant inputs (weights and bias) and its MACs per sample."""
    dims = _kept_dims(plan) if dims is None else dims
    costs = {}
    for node in plan.analysis.graph.nodes:
        if node.op in _WEIGHTED and len(node.inputs) > 1 and node.inputs[1].name in dims:
            params = sum(int(np.prod(dims[name])) for name in dict.fromkeys(i.name for i in node.inputs) if name in dims)
            costs[node.name] = Cost(params, int(np.prod(dims[node.inputs[1].name])) * _positions(node))
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


def _positions(node: gs.Node) -> int:
    """How many times each weight is used per sample."""
    if node.op == "Conv":
        shape = static_dims(node.outputs[0].shape)
        return int(np.prod(shape[2:])) if shape else 0
    if node.op == "ConvTranspose":
        shape = static_dims(node.inputs[0].shape)
        return int(np.prod(shape[2:])) if shape else 0
    if node.op == "MatMul":
        shape = static_dims(node.inputs[0].shape)
        return int(np.prod(shape[1:-1])) if shape else 0
    return 1


def _is_float_constant(tensor: gs.Tensor) -> bool:
    return isinstance(tensor, gs.Constant) and np.issubdtype(np.asarray(tensor.values).dtype, np.floating)
