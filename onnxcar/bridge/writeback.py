"""Copy an OnnxModule's current tensors back into the ONNX graph it was built from."""

from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper

from onnxcar.errors import OnnxcarError

if TYPE_CHECKING:
    from onnxcar.bridge.module import OnnxModule

_DATA_FIELDS = ("float_data", "int32_data", "int64_data", "double_data", "uint64_data", "external_data")


def to_onnx_initializers(module: "OnnxModule") -> dict[str, np.ndarray]:
    """The module's float initializers (parameters and BN stats) as arrays, by ONNX name."""
    return {
        name: tensor.detach().cpu().numpy()
        for name, tensor in module.initializers().items()
        if tensor.is_floating_point()
    }


def write_back(model: onnx.ModelProto, module: "OnnxModule") -> onnx.ModelProto:
    """A copy of ``model`` whose float initializers hold ``module``'s current values (see ``set_initializers``)."""
    return set_initializers(model, to_onnx_initializers(module))


def set_initializers(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` whose initializers named in ``values`` hold those arrays.

    Everything else (nodes, names, opset, metadata, doc strings) is copied unchanged;
    each value keeps its initializer's dtype and shape and is stored inline as raw_data.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    unmatched = set(values)
    for init in out.graph.initializer:
        if init.name not in values:
            continue
        array = values[init.name]
        if tuple(array.shape) != tuple(init.dims):
            raise OnnxcarError(
                f"initializer {init.name!r} has shape {tuple(init.dims)} in the graph "
                f"but {tuple(array.shape)} in the new values"
            )
        _set_data(init, array)
        unmatched.discard(init.name)
    if unmatched:
        raise OnnxcarError(f"the graph has no initializers named {sorted(unmatched)}")
    return out


def _set_data(init: onnx.TensorProto, array: np.ndarray) -> None:
    """Replace the tensor's data by ``array`` cast to its dtype, little-endian raw bytes."""
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(init.data_type)).newbyteorder("<")
    for field in _DATA_FIELDS:
        init.ClearField(field)
    init.ClearField("data_location")
    init.raw_data = np.ascontiguousarray(array, dtype=dtype).tobytes()
