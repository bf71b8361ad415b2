"""The layers whose weights Deep Compression codes: Conv, Gemm and MatMul weights stored as float32 initializers."""

from dataclasses import dataclass

import onnx
from onnx import TensorProto

from onnxcar.errors import OnnxcarError
from onnxcar.graph.analysis import layer_name
from onnxcar.graph.ir import import_graph

KINDS = ("conv", "fc")

WEIGHT_INPUTS: dict[str, tuple[str, tuple[int, ...]]] = {
    # op type: (kind, the inputs that may hold the weight, in the order they are tried)
    "Conv": ("conv", (1,)),
    "Gemm": ("fc", (1, 0)),
    "MatMul": ("fc", (1, 0)),
}


@dataclass(frozen=True)
class WeightLayer:
    """A layer's weight tensor: the layer's short name (as ``onnxcar inspect`` shows it), its kind and initializer."""

    name: str
    kind: str  # conv or fc
    tensor: str

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "tensor": self.tensor}


def weight_layers(model: onnx.ModelProto, names: tuple[str, ...] = ()) -> list[WeightLayer]:
    """The model's weight layers in graph order, or those named (by short name, node name or tensor)."""
    floats = {i.name for i in model.graph.initializer if i.data_type == TensorProto.FLOAT and len(i.dims) >= 2}
    found: dict[str, tuple[WeightLayer, str]] = {}
    for node in import_graph(model).nodes:
        kind, inputs = WEIGHT_INPUTS.get(node.op, (None, ()))
        tensor = next((node.inputs[i].name for i in inputs if i < len(node.inputs) and node.inputs[i].name in floats),
                      None)
        if tensor is not None and tensor not in found:  # a shared weight belongs to its first reader
            found[tensor] = (WeightLayer(layer_name(node), kind, tensor), node.name)
    if not names:
        if not found:
            raise OnnxcarError("the model has no Conv, Gemm or MatMul weights stored as float32 initializers")
        return [layer for layer, _ in found.values()]
    chosen = []
    for name in names:
        match = next((layer for layer, node in found.values() if name in (layer.name, node, layer.tensor)), None)
        if match is None:
            known = ", ".join(layer.name for layer, _ in found.values())
            raise OnnxcarError(f"no weight layer named {name!r}; layers: {known}")
        if match not in chosen:
            chosen.append(match)
    return chosen
