"""Turns an ONNX model into the onnx-graphsurgeon graph every analysis works on."""

import math

import onnx
import onnx_graphsurgeon as gs
from onnx_graphsurgeon.importers.onnx_importer import get_itemsize
from onnx_graphsurgeon.logger import G_LOGGER

from onnxcar.errors import OnnxcarError

G_LOGGER.severity = G_LOGGER.ERROR  # its warnings and notes would interleave with onnxcar's output

FOLD_FLOOR_BYTES = 64 * 2**20
"""Constant folding may always create this many bytes of new constants..."""
FOLD_MODEL_FACTOR = 4
"""...or up to this multiple of the model's own size, whichever is more (int8 weights dequantised to float32)."""

_NEVER_FOLDED = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}  # onnx-graphsurgeon's own list


def import_graph(model: onnx.ModelProto) -> gs.Graph:
    """Imports ``model`` with inferred shapes, folded constants and a unique name on every node."""
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as err:  # onnx raises several unrelated types here
        raise OnnxcarError(f"shape inference failed: {_first_line(err)}") from None
    graph = gs.import_onnx(model)
    unknown = _check_folding(graph, max(FOLD_FLOOR_BYTES, FOLD_MODEL_FACTOR * model.ByteSize()))
    try:
        graph.fold_constants(
            fold_shapes=False, error_ok=False, should_exclude_node=lambda node: any(t.name in unknown for t in node.outputs)
        ).cleanup()
    except Exception as err:
        raise OnnxcarError(f"constant folding failed: {_first_line(err)}") from None
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
    graph.cleanup().toposort()
    for tensor in graph.tensors().values():
        if isinstance(tensor, gs.Variable) and tensor not in graph.inputs and tensor not in graph.outputs:
            tensor.shape = None
    model = gs.export_onnx(graph, do_type_check=True)
    model.ir_version = max(like.ir_version, 4)  # IR 3 wants every initializer listed as an input
    del model.opset_import[:]
    model.opset_import.extend(like.opset_import)
    for field in ("producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(model, field, getattr(like, field))
    del model.metadata_props[:]
    model.metadata_props.extend(like.metadata_props)
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as err:
        raise OnnxcarError(f"shape inference failed on the edited model: {_first_line(err)}") from None


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


def _first_line(err: Exception) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]
