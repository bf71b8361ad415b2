"""Channel atoms, slots and the edits that channel removal implies.

Every output channel of a producer (a Conv filter, a Gemm unit) is an *atom*. A tensor that
carries channels has a :class:`Slot`: the axis they sit on and the atom at each position.
Ops that tie channels together (a residual Add, an SE gate) union atoms; the resulting
classes are the channels that can only be removed together.

In the middle of a channel shuffle (Reshape to ``[N, groups, C / groups, ...]``, Transpose,
Reshape back) the channels span several axes: the slot is *split*. Its groups stay equal
because the same channel of every group is one class; removal shrinks one axis.
"""

from dataclasses import dataclass, field
from enum import Enum

import numpy as np


class UnionFind:
    """Union-find over integer atom ids, with path halving."""

    def __init__(self) -> None:
        self.parent: list[int] = []

    def add(self, count: int) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        return np.arange(start, start + count, dtype=np.int64)

    def find(self, atom: int) -> int:
        parent = self.parent
        while parent[atom] != atom:
            parent[atom] = parent[parent[atom]]
            atom = parent[atom]
        return atom

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def root_array(self) -> np.ndarray:
        """The root of every atom, indexable by atom id."""
        return np.fromiter((self.find(a) for a in range(len(self.parent))), dtype=np.int64, count=len(self.parent))


@dataclass(frozen=True)
class Slot:
    """The channel axis of a tensor and the atom at each position along it.

    A split slot lists in ``split`` the ``(axis, length)`` of every axis its channels span, in
    axis order; ``atoms`` then runs over them in C order, and ``axis`` is the one removal shrinks.
    """

    axis: int
    atoms: np.ndarray
    split: tuple[tuple[int, int], ...] = ()

    @property
    def size(self) -> int:
        return len(self.atoms)

    @property
    def spans(self) -> tuple[tuple[int, int], ...]:
        """``(axis, length)`` of every axis the channels span."""
        return self.split or ((self.axis, self.size),)

    def line(self) -> np.ndarray:
        """The atoms along ``axis`` (for a split slot, at index 0 of its other axes)."""
        if not self.split:
            return self.atoms
        grid = self.atoms.reshape([length for _, length in self.split])
        axes = [axis for axis, _ in self.split]
        return grid[tuple(slice(None) if a == self.axis else 0 for a in axes)]


class Role(str, Enum):
    """How a node takes part in a channel group."""

    PRODUCER = "producer"
    THROUGH = "through"
    CONSUMER = "consumer"


class EditKind(str, Enum):
    """What removing channels does to one constant input of a node."""

    READ = "read"  # weights that read the channels (masking zeroes them)
    OWN = "own"  # per-channel parameters of the channels themselves
    SHAPE = "shape"  # a shape-like constant whose entry counts the channels
    GROUP = "group"  # the Conv ``group`` attribute of a depthwise Conv
    BOUNDS = "bounds"  # Slice starts/ends along the channel axis
    SPLIT = "split"  # Split sizes along the channel axis
    WINDOW = "window"  # an LRN, whose window reads the channels around each one (see graph.window)


@dataclass(frozen=True)
class Edit:
    """One change that removing channels makes to a node.

    ``atoms`` gives the atom at each position along ``axis`` of the node's input ``input_index``
    (for GROUP and SPLIT, of the channel slot the count is taken from; for the READ of a grouped
    Conv, of its whole input, whose ``pieces`` are the channels each block of weight rows reads).
    """

    kind: EditKind
    node: str
    input_index: int
    axis: int
    atoms: np.ndarray
    pieces: tuple[np.ndarray, ...] = field(default=())  # SPLIT: atoms of each output; READ: of each group
    bounds: tuple[int, int] = (0, 0)  # BOUNDS: original start and end positions
