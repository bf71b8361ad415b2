"""Constant inputs of a node, including weights stored as integers behind a DequantizeLinear.

A QDQ model (onnxruntime.quantization, QuantFormat.QDQ) keeps each weight as an integer
tensor with a scale and a zero point, per tensor or per channel along one axis; a
DequantizeLinear turns them into the float weight the layer reads. The analysis treats that
float weight as the constant; surgery slices or zeroes the integers and the per-channel
scales and zero points instead, so the model stays quantized.
"""

import numpy as np
import onnx_graphsurgeon as gs


def dequantizer(tensor: gs.Tensor) -> gs.Node | None:
    """The DequantizeLinear that makes ``tensor`` out of constants for one reader, if one does."""
    if isinstance(tensor, gs.Constant) or len(tensor.inputs) != 1 or len(tensor.outputs) != 1:
        return None
    node = tensor.inputs[0]
    if node.op != "DequantizeLinear" or int(node.attrs.get("block_size", 0)):
        return None
    if not all(isinstance(t, gs.Constant) for t in node.inputs if t.name):
        return None
    return node


def stored(tensor: gs.Tensor) -> gs.Constant | None:
    """The constant holding ``tensor``'s values: itself, or the integers behind its DequantizeLinear."""
    if isinstance(tensor, gs.Constant):
        return tensor
    node = dequantizer(tensor)
    return None if node is None else node.inputs[0]


def constant_value(tensor: gs.Tensor) -> np.ndarray | None:
    """The value of ``tensor`` when it is a constant or dequantized from constants, else None."""
    if isinstance(tensor, gs.Constant):
        return np.asarray(tensor.values)
    node = dequantizer(tensor)
    if node is None:
        return None
    integers = np.asarray(node.inputs[0].values)
    return ((integers.astype(np.float64) - zero_points(node)) * _per_axis(node, node.inputs[1].values)).astype(np.float32)


def quantized_axis(node: gs.Node) -> int | None:
    """The axis a DequantizeLinear's scale runs along, or None for one scale per tensor."""
    if np.ndim(node.inputs[1].values) == 0:
        return None
    return int(node.attrs.get("axis", 1)) % np.ndim(node.inputs[0].values)


def zero_points(node: gs.Node) -> np.ndarray:
    """A DequantizeLinear's zero points, broadcast to its integer tensor (0 when it has none)."""
    integers = np.asarray(node.inputs[0].values)
    if len(node.inputs) < 3 or not node.inputs[2].name:
        return np.zeros(integers.shape, np.int64)
    return np.broadcast_to(_per_axis(node, np.asarray(node.inputs[2].values, np.int64)), integers.shape)


def _per_axis(node: gs.Node, values) -> np.ndarray:
    """``values`` (a scalar, or one per entry along the quantized axis) shaped to broadcast."""
    values = np.asarray(values)
    axis = quantized_axis(node)
    if axis is None:
        return values
    shape = [1] * np.ndim(node.inputs[0].values)
    shape[axis] = values.size
    return values.reshape(shape)
