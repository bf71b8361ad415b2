"""What removing each channel would save, in parameters or MACs, kept up to date as channels go.

The counts are those of :func:`onnxcar.graph.cost.plan_cost`: a weight's size is the product of
its dimensions, each channel axis shrunk to the channels it keeps (a grouped Conv: those each
group keeps); MACs weight that by how often a Conv, ConvTranspose, Gemm or MatMul uses it per
sample; a pruned LRN becomes a window of its kept channels squared. Removing a channel shrinks
every axis that holds it, so what it saves depends on what its neighbours already lost.
"""

from collections import defaultdict

import numpy as np

from onnxcar.errors import OnnxcarError
from onnxcar.graph.analysis import Analysis, Group
from onnxcar.graph.channels import EditKind
from onnxcar.graph.constants import stored
from onnxcar.graph.context import static_dims
from onnxcar.graph.cost import _is_parameter, _positions, _weight, plan_cost

MEASURES = ("params", "macs")


class Savings:
    """The ``measure`` (params or macs) of the model after ``removed``, and what each further
    channel of a group would save; ``remove`` updates both."""

    def __init__(self, analysis: Analysis, measure: str, removed: frozenset[int] = frozenset(), shapes=None):
        """``shapes``: the tensor sizes MACs are counted at (see ``plan_cost``)."""
        from onnxcar.surgery.plan import Plan

        if measure not in MEASURES:
            raise ValueError(f"measure must be params or macs, got {measure!r}")
        self.total = getattr(plan_cost(Plan(analysis, frozenset(removed)), shapes), measure)
        if self.total is None:
            raise OnnxcarError("the model's MACs are unknown at symbolic sizes: give data or input shapes",
                               arguments=("input_shapes", "data"))
        graph = analysis.graph
        tensors = graph.tensors()
        nodes = {node.name: node for node in graph.nodes}
        shape_of = lambda t: (shapes or {}).get(t.name) or static_dims(t.shape)  # noqa: E731
        factor: dict[str, int] = defaultdict(int)
        if measure == "params":
            factor.update((name, 1) for name, t in tensors.items() if _is_parameter(t))
        else:
            for node in graph.nodes:
                weight = _weight(node)
                if weight is not None and _is_parameter(weight):
                    factor[weight.name] += _positions(node, shape_of)
        gone = np.fromiter(removed, dtype=np.int64)
        self._edits: list[tuple[np.ndarray, np.ndarray]] = []  # (channel roots, atoms each) per edit
        self._alive: list[int] = []  # atoms each edit keeps
        self._weights: dict[str, tuple[list[int], dict[int, list[int]], int]] = {}  # dims, axis -> edits, factor
        self._weight_of: list[str] = []  # per edit
        self._of_root: dict[int, list[int]] = defaultdict(list)  # root -> edits that hold it
        for edit in analysis.tracer.edits:
            if edit.kind is EditKind.WINDOW:  # a window of its kept channels squared, once any goes
                node = nodes[edit.node]
                name, full = f"window {edit.node}", len(edit.atoms)
                size = 1 if measure == "params" else _positions(node, shape_of)
                dims, axes = [full, full], {0: [len(self._edits)], 1: [len(self._edits)]}
            elif edit.kind in (EditKind.READ, EditKind.OWN):
                tensor = stored(nodes[edit.node].inputs[edit.input_index])
                name = None if tensor is None else tensor.name
                if not factor.get(name):
                    continue
                dims, axes, size = list(np.shape(tensors[name].values)), {}, factor[name]
            else:
                continue
            atoms = edit.pieces[0] if edit.pieces and edit.kind is not EditKind.WINDOW else edit.atoms
            roots, counts = np.unique(analysis.roots(atoms), return_counts=True)
            index = len(self._edits)
            self._edits.append((roots, counts))
            self._weight_of.append(name)
            self._alive.append(int(counts[~np.isin(roots, gone)].sum()))
            dims, axes, _ = self._weights.setdefault(name, (dims, axes, size))
            if edit.kind is not EditKind.WINDOW:
                axes.setdefault(edit.axis, []).append(index)
            for root in roots.tolist():
                self._of_root[root].append(index)
        self._gone = set(int(c) for c in removed)
        self._cache: dict[int, np.ndarray] = {}
        self._group_of = {int(c): g.id for g in analysis.groups for c in g.channels}

    def saved(self, group: Group) -> np.ndarray:
        """What removing each channel of ``group`` alone would save now (0 for channels already gone)."""
        if group.id not in self._cache:
            self._cache[group.id] = self._saved(group.channels)
        return self._cache[group.id]

    def remove(self, channel: int) -> int:
        """Removes the channel (a class id); returns what that saved."""
        if channel in self._gone:
            return 0
        saved = int(self._saved(np.array([channel]))[0])
        self._gone.add(channel)
        for index in self._of_root.get(channel, ()):
            roots, counts = self._edits[index]
            self._alive[index] -= int(counts[np.searchsorted(roots, channel)])
        self.total -= saved
        names = {self._weight_of[index] for index in self._of_root.get(channel, ())}
        edits = [i for name in names for ids in self._weights[name][1].values() for i in ids]
        for group_id in {self._group_of.get(int(r)) for index in edits for r in self._edits[index][0]}:
            self._cache.pop(group_id, None)  # every group with a channel on those weights
        return saved

    def _saved(self, channels: np.ndarray) -> np.ndarray:
        names = {self._weight_of[i] for c in channels.tolist() for i in self._of_root.get(c, ())}
        saved = np.zeros(len(channels), dtype=np.int64)
        for name in sorted(names):
            dims, axes, factor = self._weights[name]
            now = np.array(dims, dtype=np.int64)
            after = np.tile(now, (len(channels), 1))
            for axis, ids in axes.items():
                now[axis] = min(self._alive[i] for i in ids)
                after[:, axis] = np.min([self._alive[i] - self._count(i, channels) for i in ids], axis=0)
            before = int(np.prod(now))
            if name.startswith("window ") and now[0] == dims[0]:
                before = 0  # an LRN no channel has left yet stays an LRN, which costs nothing here
            saved += factor * (before - np.prod(after, axis=1))
        saved[np.isin(channels, list(self._gone))] = 0
        return saved

    def _count(self, index: int, channels: np.ndarray) -> np.ndarray:
        """The atoms of each channel that edit ``index`` still holds (0 for channels it does not hold)."""
        roots, counts = self._edits[index]
        at = np.minimum(np.searchsorted(roots, channels), len(roots) - 1)
        return np.where(roots[at] == channels, counts[at], 0)
