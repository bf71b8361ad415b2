"""The runner protocol: what every backend that executes an ONNX model offers."""

from typing import NamedTuple, Protocol

import numpy as np
import onnx

_ORT_TYPE_NAMES = {"float32": "float", "float64": "double"}


class ValueInfo(NamedTuple):
    """A graph input or output: name, shape (ints, or a name or None where symbolic) and type (``tensor(float)``)."""

    name: str
    shape: list
    type: str


def graph_signature(model: onnx.ModelProto) -> tuple[list[ValueInfo], list[ValueInfo]]:
    """The graph inputs (initializers excluded) and outputs as runners describe them."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = [_value_info(v) for v in model.graph.input if v.name not in initializers]
    return inputs, [_value_info(v) for v in model.graph.output]


def _value_info(value: onnx.ValueInfoProto) -> ValueInfo:
    tensor = value.type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name if tensor.elem_type else "undefined"
    return ValueInfo(value.name, shape, f"tensor({_ORT_TYPE_NAMES.get(dtype, dtype)})")


class Runner(Protocol):
    """Runs one model on numpy feeds; a context manager that releases its backend on exit."""

    def inputs(self) -> list[ValueInfo]:
        """The graph inputs the feeds must name (initializers excluded)."""
        ...

    def outputs(self) -> list[ValueInfo]:
        """The graph outputs, in order."""
        ...

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> list[np.ndarray]:
        """The graph outputs ``outputs`` (default: all), in that order, for ``feeds``."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> "Runner": ...

    def __exit__(self, *exc) -> None: ...
