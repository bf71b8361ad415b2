"""Removes or masks channels: the two edits surgery makes to a graph."""

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxcar.graph.channels import Edit, EditKind
from onnxcar.graph.ir import export_model
from onnxcar.surgery.plan import Plan


def remove_channels(plan: Plan) -> onnx.ModelProto:
    """The model with the planned channels physically removed."""
    graph, nodes = _copy(plan)
    opset = _default_opset(plan.analysis.model)
    for edit in plan.analysis.tracer.edits:
        keep = plan.keep(edit.atoms)
        if keep.all() and edit.kind is not EditKind.SPLIT:
            continue
        _REMOVERS[edit.kind](nodes[edit.node], edit, keep, plan, opset)
    return export_model(graph, plan.analysis.model)


def mask_channels(plan: Plan) -> onnx.ModelProto:
    """The model with every weight that reads the planned channels set to zero."""
    return export_model(masked_graph(plan), plan.analysis.model)


def masked_graph(plan: Plan) -> gs.Graph:
    """A copy of the analysed graph with every weight that reads the planned channels zeroed."""
    graph, nodes = _copy(plan)
    for edit in plan.analysis.tracer.edits:
        if edit.kind is EditKind.READ:
            keep = plan.keep(edit.atoms)
            if not keep.all():
                node = nodes[edit.node]
                values = np.array(node.inputs[edit.input_index].values)
                index = [slice(None)] * values.ndim
                index[edit.axis] = ~keep
                values[tuple(index)] = 0
                _set_constant(node, edit.input_index, values)
    return graph


def _copy(plan: Plan) -> tuple[gs.Graph, dict[str, gs.Node]]:
    graph = plan.analysis.graph.copy()
    return graph, {node.name: node for node in graph.nodes}


def _set_constant(node: gs.Node, index: int, values: np.ndarray) -> None:
    old = node.inputs[index]
    shared = sum(1 for consumer in old.outputs for t in consumer.inputs if t is old) > 1
    name = f"{old.name}__{node.name}" if shared else old.name
    node.inputs[index] = gs.Constant(name, np.ascontiguousarray(values))


def _slice_values(node, edit: Edit, keep, plan, opset) -> None:
    values = np.asarray(node.inputs[edit.input_index].values)
    _set_constant(node, edit.input_index, np.compress(keep, values, axis=edit.axis))


def _shape_entry(node, edit: Edit, keep, plan, opset) -> None:
    values = np.array(node.inputs[edit.input_index].values)
    values[edit.axis] = int(keep.sum())
    _set_constant(node, edit.input_index, values)


def _group_count(node, edit: Edit, keep, plan, opset) -> None:
    node.attrs["group"] = int(keep.sum())


def _slice_bounds(node, edit: Edit, keep, plan, opset) -> None:
    start, stop = edit.bounds
    for index, position in ((1, start), (2, stop)):
        values = np.array(node.inputs[index].values)
        values[edit.axis] = int(keep[:position].sum())
        _set_constant(node, index, values)


def _split_sizes(node, edit: Edit, keep, plan, opset) -> None:
    sizes = np.array([int(plan.keep(piece).sum()) for piece in edit.pieces], dtype=np.int64)
    node.attrs.pop("num_outputs", None)
    if opset >= 13:
        while len(node.inputs) < 2:
            node.inputs.append(gs.Variable.empty())
        node.inputs[1] = gs.Constant(f"{node.name}_split", sizes)
    else:
        node.attrs["split"] = sizes.tolist()


_REMOVERS = {
    EditKind.READ: _slice_values,
    EditKind.OWN: _slice_values,
    EditKind.SHAPE: _shape_entry,
    EditKind.GROUP: _group_count,
    EditKind.BOUNDS: _slice_bounds,
    EditKind.SPLIT: _split_sizes,
}


def _default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
