"""Op registry: one handler per ONNX op type, and the helpers handlers share.

A handler is ``fn(ctx, inputs, attrs) -> Tensor | tuple[Tensor, ...]``: ``inputs`` lists
the node's inputs in order (None for an omitted optional one), ``attrs`` maps attribute
names to Python values (tensor attributes as torch tensors).
"""

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from onnx import TensorProto

from onnxcar.errors import OnnxcarError

# ONNX element type -> torch dtype, for Cast and friends.
DTYPES = {
    TensorProto.FLOAT: torch.float32,
    TensorProto.FLOAT16: torch.float16,
    TensorProto.BFLOAT16: torch.bfloat16,
    TensorProto.DOUBLE: torch.float64,
    TensorProto.INT8: torch.int8,
    TensorProto.INT16: torch.int16,
    TensorProto.INT32: torch.int32,
    TensorProto.INT64: torch.int64,
    TensorProto.UINT8: torch.uint8,
    TensorProto.BOOL: torch.bool,
}


@dataclass(frozen=True, slots=True)
class NodeCtx:
    """What a handler may know about its node besides inputs and attributes."""

    name: str
    op_type: str
    opset: int
    num_outputs: int
    training: bool

    def error(self, message: str) -> OnnxcarError:
        """An OnnxcarError naming this node, for the handler to raise."""
        return OnnxcarError(f"{self.op_type} node {self.name!r}: {message}")


Handler = Callable[[NodeCtx, list, dict], "torch.Tensor | tuple[torch.Tensor, ...]"]
OPS: dict[str, Handler] = {}


def register(*op_types: str):
    """Decorator: make the function the handler of ``op_types``."""

    def decorate(fn: Handler) -> Handler:
        for op_type in op_types:
            OPS[op_type] = fn
        return fn

    return decorate


def padded(inputs: list, n: int) -> list:
    """``inputs`` extended with None to length ``n``, so optional inputs can be unpacked."""
    return list(inputs) + [None] * (n - len(inputs))


def ints(t: torch.Tensor) -> list[int]:
    """A 0-d or 1-d int tensor as a list of Python ints."""
    return [int(v) for v in t.reshape(-1).tolist()]


def ints_arg(inputs: list, index: int, attrs: dict, key: str) -> list[int] | None:
    """An int list given as input ``index`` (newer opsets) or attribute ``key`` (older)."""
    if index < len(inputs) and inputs[index] is not None:
        return ints(inputs[index])
    return attrs.get(key)


def to_torch(array: np.ndarray, what: str) -> torch.Tensor:
    """A torch copy of ``array``; ``what`` names it in the error for unsupported dtypes."""
    try:
        return torch.from_numpy(np.array(array, copy=True))
    except TypeError as exc:
        raise OnnxcarError(f"{what} has dtype {array.dtype}, which the torch bridge does not support") from exc
