"""Parameter and multiply-accumulate counts of a model, before or after a removal plan."""

from __future__ import annotations

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


@dataclass(frozen=True)
class Cost:
    """Parameters (float constants and quantized weights), and MACs per sample of Conv,
    ConvTranspose, Gemm and MatMul layers (and of the channel window a pruned LRN becomes)."""

    params: int
    macs: int

    def to_dict(self) -> dict:
        return {"params": self.params, "macs": self.macs}


def plan_cost(plan: Plan) -> Cost:
    """The cost of the model the plan would leave (of the whole model when it removes nothing)."""
    graph = plan.analysis.graph
    nodes = {node.name: node for node in graph.nodes}
    dims: dict[str, list[int]] = {
        name: list(np.shape(t.values)) for name, t in graph.tensors().items() if _is_parameter(t)
    }
    params, macs = 0, 0
    for edit in plan.analysis.tracer.edits:
        kept = int(plan.keep(edit.atoms).sum())
        if edit.kind is EditKind.WINDOW and kept < len(edit.atoms):  # surgery writes the window out
            shape = static_dims(nodes[edit.node].outputs[0].shape)
            params += kept * kept
            macs += kept * kept * int(np.prod(shape[2:])) if shape else 0
        elif edit.kind in (EditKind.READ, EditKind.OWN):
            name = stored(nodes[edit.node].inputs[edit.input_index]).name
            if edit.pieces:  # a grouped Conv: every group keeps as many
                kept = int(plan.keep(edit.pieces[0]).sum())
            if name in dims:  # not the integer zero points of a per-channel activation quantizer
                dims[name][edit.axis] = min(dims[name][edit.axis], kept)
    params += sum(int(np.prod(d)) for d in dims.values())
    for node in graph.nodes:
        weight = stored(node.inputs[1]) if node.op in _WEIGHTED and len(node.inputs) > 1 else None
        if weight is not None and weight.name in dims:
            macs += int(np.prod(dims[weight.name])) * _positions(node)
    return Cost(params, macs)


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


def _is_parameter(tensor: gs.Tensor) -> bool:
    """A float constant, or the integers of a quantized one."""
    if not isinstance(tensor, gs.Constant):
        return False
    return np.issubdtype(np.asarray(tensor.values).dtype, np.floating) or any(
        node.op == "DequantizeLinear" and node.inputs[0] is tensor for node in tensor.outputs
    )
