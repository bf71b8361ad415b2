"""What an op handler sees of the analysis while it visits one node."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx_graphsurgeon as gs

from onnxcar.graph.channels import Edit, EditKind, Role, Slot
from onnxcar.graph.constants import constant_value

if TYPE_CHECKING:
    from onnxcar.graph.analysis import Tracer


class Unhandled(Exception):
    """Raised by a handler when it cannot map the node's channels exactly; blocks them."""


class NodeContext:
    """One node's view of the channel trace: its input slots, constants, shapes and outputs."""

    def __init__(self, tracer: Tracer, node: gs.Node):
        self.tracer = tracer
        self.node = node

    # -- reading ----------------------------------------------------------------------------
    def slot(self, index: int = 0, *, split: bool = False) -> Slot | None:
        """The channel slot of input ``index``; a split slot only where the handler takes one."""
        if index >= len(self.node.inputs) or self.node.inputs[index].name == "":
            return None
        slot = self.tracer.slots.get(self.node.inputs[index].name)
        if slot is not None and slot.split and not split:
            raise Unhandled(
                f"{self.node.op} reads channels split over axes {[a for a, _ in slot.split]} (as in a channel "
                "shuffle, whose groups can only lose the same channels): only Reshape, Transpose and one-input "
                "elementwise ops may read them until a Reshape merges them back"
            )
        return slot

    def const(self, index: int) -> np.ndarray | None:
        """The value of input ``index`` when it is a constant (or dequantized from constants), else None."""
        if index >= len(self.node.inputs):
            return None
        return constant_value(self.node.inputs[index])

    def has_input(self, index: int) -> bool:
        return index < len(self.node.inputs) and self.node.inputs[index].name != ""

    def weight(self, index: int) -> np.ndarray:
        value = self.const(index)
        if value is None:
            raise Unhandled(f"input {index} of {self.node.op} is not a constant")
        return value

    def in_shape(self, index: int = 0) -> list | None:
        return _shape(self.node.inputs[index])

    def out_shape(self, index: int = 0) -> list | None:
        return _shape(self.node.outputs[index])

    def attr(self, name: str, default=None):
        return self.node.attrs.get(name, default)

    # -- writing ----------------------------------------------------------------------------
    def output(self, slot: Slot | None, index: int = 0) -> None:
        if slot is None or index >= len(self.node.outputs):
            return
        name = self.node.outputs[index].name
        if slot.size == 1:  # removing it would leave an empty tensor
            self.tracer.block(slot.atoms, f"tensor {name!r} carries a single channel")
        self.tracer.slots[name] = slot

    def fresh(self, count: int) -> np.ndarray:
        """New atoms, one per output channel of this node, which becomes their producer."""
        atoms = self.tracer.uf.add(count)
        self.tracer.owners.extend([self.node.name] * count)
        self.member(Role.PRODUCER, atoms)
        return atoms

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        for x, y in zip(a.tolist(), b.tolist()):
            self.tracer.uf.union(x, y)

    def block(self, atoms: np.ndarray, reason: str) -> None:
        self.tracer.block(atoms, reason)

    def member(self, role: Role, atoms: np.ndarray) -> None:
        self.tracer.members.append((self.node.name, self.node.op, role, atoms))

    def edit(self, kind: EditKind, input_index: int, axis: int, atoms: np.ndarray, **extra) -> None:
        if kind is EditKind.READ:
            self.member(Role.CONSUMER, atoms)
        self.tracer.edits.append(Edit(kind, self.node.name, input_index, axis, atoms, **extra))


def _shape(tensor: gs.Tensor) -> list | None:
    shape = tensor.shape
    return None if shape is None else list(shape)


def static_dims(shape: list | None) -> list[int] | None:
    """The shape with a symbolic leading batch dimension (a name, None or Paddle's -1) set to 1;
    None if any other dim is unknown."""
    if shape is None:
        return None
    dims = [1 if i == 0 and not (isinstance(d, int) and d >= 0) else d for i, d in enumerate(shape)]
    return dims if all(isinstance(d, int) and d >= 0 for d in dims) else None


def channel_dim(shape: list | None) -> int | None:
    """The static size of axis 1 (the channels of an NCHW tensor), whatever the other dims; None if unknown."""
    return shape[1] if shape is not None and len(shape) >= 2 and isinstance(shape[1], int) and shape[1] >= 0 else None
