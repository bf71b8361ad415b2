"""Turns an ONNX model into the onnx-graphsurgeon graph every analysis works on."""

import math

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime
from onnx_graphsurgeon.importers.onnx_importer import get_itemsize
from onnx_graphsurgeon.logger import G_LOGGER

from onnxcar.errors import OnnxcarError
from onnxcar.io import first_line, infer_shapes

G_LOGGER.severity = G_LOGGER.ERROR  # its warnings and notes would interleave with onnxcar's output
onnxruntime.set_default_logger_severity(3)  # and so would those of the sessions that fold constants

_FOLD_PASSES = 64  # each pass may let inference see the shapes that let the next computation fold

FOLD_FLOOR_BYTES = 64 * 2**20
"""Constant folding may always create this many bytes of new constants..."""
FOLD_MODEL_FACTOR = 4
"""...or up to this multiple of the model's own size, whichever is more (int8 weights dequantised to float32)."""

_NEVER_FOLDED = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}  # onnx-graphsurgeon's own list


def import_graph(model: onnx.ModelProto) -> gs.Graph:
    """Imports ``model`` with inferred shapes, folded constants and a unique name on every node.

    Computations on static shapes fold too (the channel count read by ``x.size(1)`` becomes a
    constant the analysis can map and surgery can edit); dynamic dimensions stay computed,
    except where a Reshape copies one to the same axis (see :func:`_copy_dynamic_dims`).
    Inference and folding alternate until nothing more folds. DequantizeLinear is never
    folded, so a quantized model keeps its integer weights. Folding that would create more
    than the larger of ``FOLD_FLOOR_BYTES`` and ``FOLD_MODEL_FACTOR`` times the model's size is
    refused before anything is computed; a constant of unknown size is not folded.
    """
    limit = max(FOLD_FLOOR_BYTES, FOLD_MODEL_FACTOR * model.ByteSize())
    graph = gs.import_onnx(infer_shapes(model))
    for _ in range(_FOLD_PASSES):
        count = len(graph.nodes)
        _copy_dynamic_dims(graph)
        unknown = _check_folding(graph, limit)
        try:
            graph.fold_constants(
                fold_shapes=True, error_ok=False,
                should_exclude_node=lambda node: _is_dequantize(node) or any(t.name in unknown for t in node.outputs),
            ).cleanup()
        except Exception as err:
            raise OnnxcarError(f"constant folding failed: {first_line(err)}") from None
        if len(graph.nodes) == count:
            break
        graph = gs.import_onnx(infer_shapes(_bare_model(graph), in_place=True))
    _name_nodes(graph)
    return graph


def _check_folding(graph: gs.Graph, limit: int) -> set[str]:
    """Refuses a graph whose constant folding would create more than ``limit`` bytes, before anything is computed.

    Returns the outputs of foldable nodes whose size shape inference left unknown: they
    are not folded (nor is anything computed from them), so folding stays within the bound.
    """
    constant: set[str] = set()
    folded: list[tuple[int, str]] = []
    unknown: set[str] = set()

    def walk(graph: gs.Graph) -> None:
        constant.update(name for name, t in graph.tensors().items() if isinstance(t, gs.Constant))
        for node in graph.nodes:
            for subgraph in node.subgraphs():
                walk(subgraph)
            if node.op in _NEVER_FOLDED or not all(t.is_empty() or t.name in constant for t in node.inputs):
                continue
            sizes = [_nbytes(t) for t in node.outputs]
            if None in sizes:
                unknown.update(t.name for t in node.outputs)
                continue
            constant.update(t.name for t in node.outputs)
            if node.op != "Constant":  # a Constant node's value is part of the model already
                folded.extend(zip(sizes, (t.name for t in node.outputs)))

    walk(graph)
    total = sum(size for size, _ in folded)
    if total > limit:
        size, name = max(folded)
        raise OnnxcarError(
            f"constant folding would create {total} bytes, more than the {limit} allowed for this model "
            f"(the larger of {FOLD_FLOOR_BYTES} and {FOLD_MODEL_FACTOR}x its size); the largest is tensor {name!r} "
            f"({size} bytes)"
        )
    return unknown


def _nbytes(tensor: gs.Tensor) -> int | None:
    """The bytes of a tensor of static shape and known type; None otherwise."""
    shape = tensor.shape
    if tensor.dtype is None or shape is None or not all(isinstance(d, int) and d >= 0 for d in shape):
        return None
    try:
        itemsize = get_itemsize(tensor.dtype)
    except Exception:  # onnx-graphsurgeon raises its own exception for types it has no size for
        return None
    return None if itemsize is None else math.prod(shape) * itemsize


def export_model(graph: gs.Graph, like: onnx.ModelProto) -> onnx.ModelProto:
    """Exports ``graph`` with the metadata, IR version and opsets of ``like``; shapes are re-inferred."""
    model = _bare_model(graph)
    model.ir_version = max(like.ir_version, 4)  # IR 3 wants every initializer listed as an input
    del model.opset_import[:]
    model.opset_import.extend(like.opset_import)
    for field in ("producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(model, field, getattr(like, field))
    del model.metadata_props[:]
    model.metadata_props.extend(like.metadata_props)
    return infer_shapes(model, "shape inference failed on the edited model", in_place=True)


def _bare_model(graph: gs.Graph) -> onnx.ModelProto:
    """``graph`` as a model with no intermediate shapes, which inference then recomputes."""
    graph.cleanup().toposort()
    for tensor in graph.tensors().values():
        if isinstance(tensor, gs.Variable) and tensor not in graph.inputs and tensor not in graph.outputs:
            tensor.shape = None
    return gs.export_onnx(graph, do_type_check=True)


def _copy_dynamic_dims(graph: gs.Graph) -> None:
    """Writes 0 ("copy the input's dim") for a computed Reshape shape entry that reads the dynamic
    dim its input has on the same axis, as ``x.view(x.size(0), ...)`` does, so the shape can fold."""
    for node in graph.nodes:
        if node.op != "Reshape" or int(node.attrs.get("allowzero", 0)) or node.inputs[0].shape is None:
            continue
        data, shape = node.inputs
        if len(shape.inputs) != 1 or shape.inputs[0].op != "Concat" or len(shape.outputs) != 1:
            continue
        concat = shape.inputs[0]
        position = 0
        for index, piece in enumerate(list(concat.inputs)):
            length = (piece.shape or [None])[0]
            if not isinstance(length, int):
                break
            dim = _dim_read(piece) if length == 1 else None
            if isinstance(dim, str) and position < len(data.shape) and data.shape[position] == dim:
                concat.inputs[index] = gs.Constant(f"{concat.name}_copy_{index}", np.zeros(1, np.int64))
            position += length


def _dim_read(tensor: gs.Tensor):
    """The dim (an int or a symbol) ``tensor`` holds when it reads one dim of some tensor's shape."""
    while len(tensor.inputs) == 1 and tensor.inputs[0].op in ("Unsqueeze", "Squeeze", "Cast", "Identity"):
        tensor = tensor.inputs[0].inputs[0]
    if len(tensor.inputs) != 1 or tensor.inputs[0].op != "Gather" or int(tensor.inputs[0].attrs.get("axis", 0)):
        return None
    source, index = tensor.inputs[0].inputs
    if not isinstance(index, gs.Constant) or index.values.size != 1 or len(source.inputs) != 1:
        return None
    shape_node = source.inputs[0]
    shape = shape_node.inputs[0].shape if shape_node.op == "Shape" else None
    if shape is None:
        return None
    dims = shape[int(shape_node.attrs.get("start", 0)) : shape_node.attrs.get("end")]
    position = int(index.values.reshape(-1)[0])
    return dims[position] if -len(dims) <= position < len(dims) else None


def _is_dequantize(node: gs.Node) -> bool:
    return node.op == "DequantizeLinear"


def _name_nodes(graph: gs.Graph) -> None:
    """Gives every unnamed or duplicate-named node a unique, deterministic name."""
    seen = {node.name for node in graph.nodes if node.name}
    named: set[str] = set()
    for index, node in enumerate(graph.nodes):
        if not node.name or node.name in named:
            candidate, suffix = f"{node.op}_{index}", 0
            while candidate in seen:
                suffix += 1
                candidate = f"{node.op}_{index}_{suffix}"
            node.name = candidate
            seen.add(candidate)
        named.add(node.name)
