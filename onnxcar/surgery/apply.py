"""Removes or masks channels: the two edits surgery makes to a graph."""

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxcar.graph.channels import Edit, EditKind
from onnxcar.graph.constants import dequantizer, quantized_axis, zero_points
from onnxcar.graph.ir import export_model
from onnxcar.surgery.lrn import expand_lrn
from onnxcar.surgery.plan import Plan


def remove_channels(plan: Plan) -> onnx.ModelProto:
    """The model with the planned channels physically removed."""
    graph, nodes = _copy(plan)
    opset = _default_opset(plan.analysis.model)
    for edit in plan.analysis.tracer.edits:
        keep = plan.keep(edit.atoms)
        if keep.all() and edit.kind is not EditKind.SPLIT:
            continue
        _REMOVERS[edit.kind](graph, nodes[edit.node], edit, keep, plan, opset)
    return export_model(graph, plan.analysis.model)


def mask_channels(plan: Plan) -> onnx.ModelProto:
    """The model with every weight that reads the planned channels set to zero."""
    return export_model(masked_graph(plan), plan.analysis.model)


def masked_graph(plan: Plan) -> gs.Graph:
    """A copy of the analysed graph with every weight that reads the planned channels zeroed
    (and every LRN window blind to them)."""
    graph, nodes = _copy(plan)
    for edit in plan.analysis.tracer.edits:
        if edit.kind in _MASKERS:
            keep = plan.keep(edit.atoms)
            if not keep.all():
                _MASKERS[edit.kind](graph, nodes[edit.node], edit, keep, plan)
    return graph


def _zero_read(graph, node, edit: Edit, keep, plan) -> None:
    """Zeroes the weights that read removed channels (quantized ones: sets them to the zero point)."""
    source = dequantizer(node.inputs[edit.input_index])
    holder, index = (node, edit.input_index) if source is None else (source, 0)
    values = np.array(holder.inputs[index].values)
    removed = np.zeros(values.shape, dtype=bool)
    for rows, kept in _row_blocks(values, edit, keep, plan):
        where = [rows] + [slice(None)] * (values.ndim - 1)
        where[edit.axis] = ~kept
        removed[tuple(where)] = True
    values[removed] = 0 if source is None else zero_points(source)[removed]
    _set_constant(holder, index, values)


def _row_blocks(values: np.ndarray, edit: Edit, keep, plan) -> list[tuple[slice, np.ndarray]]:
    """(rows, kept entries along the axis) of each block of weight rows: one block, or for a grouped
    Conv one per group, each reading its own channels."""
    flags = [plan.keep(piece) for piece in edit.pieces] or [keep]
    size = len(values) // len(flags)
    return [(slice(k * size, (k + 1) * size), kept) for k, kept in enumerate(flags)]


def _blind_window(graph, node, edit: Edit, keep, plan) -> None:
    """Masks an LRN's input: its window then sums only the kept channels, and the masked
    channels' own outputs are read by zeroed weights alone."""
    source = node.inputs[edit.input_index]
    shape = [1] * len(source.shape)
    shape[edit.axis] = len(keep)
    mask = gs.Constant(f"{node.name}/window_mask", keep.astype(np.dtype(source.dtype or np.float32)).reshape(shape))
    masked = gs.Variable(f"{node.name}/window_masked", dtype=source.dtype)
    graph.nodes.append(gs.Node("Mul", f"{node.name}/window_mask", inputs=[source, mask], outputs=[masked]))
    node.inputs[edit.input_index] = masked


_MASKERS = {EditKind.READ: _zero_read, EditKind.WINDOW: _blind_window}


def _copy(plan: Plan) -> tuple[gs.Graph, dict[str, gs.Node]]:
    graph = plan.analysis.graph.copy()
    return graph, {node.name: node for node in graph.nodes}


def _set_constant(node: gs.Node, index: int, values: np.ndarray) -> None:
    old = node.inputs[index]
    shared = sum(1 for consumer in old.outputs for t in consumer.inputs if t is old) > 1
    name = f"{old.name}__{node.name}" if shared else old.name
    node.inputs[index] = gs.Constant(name, np.ascontiguousarray(values))


def _slice_values(graph, node, edit: Edit, keep, plan, opset) -> None:
    """Keeps the kept entries along the axis; of a quantized weight, its integers and, when they
    run along that axis, its scales and zero points."""
    source = dequantizer(node.inputs[edit.input_index])
    holder, index = (node, edit.input_index) if source is None else (source, 0)
    values = np.asarray(holder.inputs[index].values)
    blocks = [np.compress(kept, values[rows], axis=edit.axis) for rows, kept in _row_blocks(values, edit, keep, plan)]
    _set_constant(holder, index, np.concatenate(blocks))
    if source is not None and quantized_axis(source) == edit.axis:
        for k in range(1, len(source.inputs)):
            if source.inputs[k].name:
                _set_constant(source, k, np.compress(keep, source.inputs[k].values))


def _shape_entry(graph, node, edit: Edit, keep, plan, opset) -> None:
    values = np.array(node.inputs[edit.input_index].values)
    values[edit.axis] = int(keep.sum())
    _set_constant(node, edit.input_index, values)


def _group_count(graph, node, edit: Edit, keep, plan, opset) -> None:
    node.attrs["group"] = int(keep.sum())


def _slice_bounds(graph, node, edit: Edit, keep, plan, opset) -> None:
    start, stop = edit.bounds
    for index, key, position in ((1, "starts", start), (2, "ends", stop)):
        if len(node.inputs) > index:
            values = np.array(node.inputs[index].values)
            values[edit.axis] = int(keep[:position].sum())
            _set_constant(node, index, values)
        else:  # before opset 10
            node.attrs[key] = [int(keep[:position].sum()) if k == edit.axis else v for k, v in enumerate(node.attrs[key])]


def _split_sizes(graph, node, edit: Edit, keep, plan, opset) -> None:
    sizes = np.array([int(plan.keep(piece).sum()) for piece in edit.pieces], dtype=np.int64)
    node.attrs.pop("num_outputs", None)
    if opset >= 13:
        while len(node.inputs) < 2:
            node.inputs.append(gs.Variable.empty())
        node.inputs[1] = gs.Constant(f"{node.name}_split", sizes)
    else:
        node.attrs["split"] = sizes.tolist()


def _expand_window(graph, node, edit: Edit, keep, plan, opset) -> None:
    expand_lrn(graph, node, keep)


_REMOVERS = {
    EditKind.READ: _slice_values,
    EditKind.OWN: _slice_values,
    EditKind.SHAPE: _shape_entry,
    EditKind.GROUP: _group_count,
    EditKind.BOUNDS: _slice_bounds,
    EditKind.SPLIT: _split_sizes,
    EditKind.WINDOW: _expand_window,
}


def _default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
