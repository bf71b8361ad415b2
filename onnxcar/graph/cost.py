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
    graph = plan.analysis.graph
    nodes = {node.name: node for node in graph.nodes}
    dims: dict[str, list[int]] = {
        name: list(np.shape(t.values)) for name, t in graph.tensors().items() if _is_float_constant(t)
    }
    for edit in plan.analysis.tracer.edits:
        if edit.kind in (EditKind.READ, EditKind.OWN):
            name = nodes[edit.node].inputs[edit.input_index].name
            dims[name][edit.axis] = min(dims[name][edit.axis], int(plan.keep(edit.atoms).sum()))
    params = sum(int(np.prod(d)) for d in dims.values())
    shape_of = (lambda t: static_dims(t.shape)) if shapes is None else (lambda t: shapes.get(t.name))
    macs = 0
    for node in graph.nodes:
        if node.op in _WEIGHTED and len(node.inputs) > 1 and node.inputs[1].name in dims:
            positions = _positions(node, shape_of)
            if positions is None:
                return Cost(params, None)
            macs += int(np.prod(dims[node.inputs[1].name])) * positions
    return Cost(params, macs)


def _positions(node: gs.Node, shape_of: Callable[[gs.Tensor], Sequence[int] | None]) -> int | None:
    """How many times each weight is used per sample; None when the activations' size is unknown."""
    if node.op not in _POSITIONS:
        return 1
    tensor, axes = _POSITIONS[node.op]
    shape = shape_of(tensor(node))
    return None if shape is None else int(np.prod(shape[axes]))


def _is_float_constant(tensor: gs.Tensor) -> bool:
    return isinstance(tensor, gs.Constant) and np.issubdtype(np.asarray(tensor.values).dtype, np.floating)
