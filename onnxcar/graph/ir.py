"""Turns an ONNX model into the onnx-graphsurgeon graph every analysis works on."""

import onnx
import onnx_graphsurgeon as gs
from onnx_graphsurgeon.logger import G_LOGGER

from onnxcar.errors import OnnxcarError

G_LOGGER.severity = G_LOGGER.ERROR  # its warnings and notes would interleave with onnxcar's output


def import_graph(model: onnx.ModelProto) -> gs.Graph:
    """Imports ``model`` with inferred shapes, folded constants and a unique name on every node."""
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as err:  # onnx raises several unrelated types here
        raise OnnxcarError(f"shape inference failed: {_first_line(err)}") from None
    graph = gs.import_onnx(model)
    try:
        graph.fold_constants(fold_shapes=False, error_ok=False).cleanup()
    except Exception as err:
        raise OnnxcarError(f"constant folding failed: {_first_line(err)}") from None
    _name_nodes(graph)
    return graph


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
