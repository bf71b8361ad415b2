"""Finds the channel groups of a model: the channels that must be removed together."""

import re
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxcar.errors import OnnxcarError
from onnxcar.graph.channels import Edit, Role, Slot, UnionFind
from onnxcar.graph.context import NodeContext, Unhandled, channel_dim
from onnxcar.graph.ir import import_graph
from onnxcar.graph.registry import handler_for, load_handlers
from onnxcar.graph.shapes import InputShapes, declared_shapes, tensor_shapes


@dataclass(frozen=True)
class Member:
    """A node's part in a group."""

    node: str
    op_type: str
    role: Role


@dataclass(eq=False)
class Group:
    """A set of channels whose removal must happen together, across every member node.

    ``channels[i]`` is the class id (a union-find root) of channel ``i``, numbered as the
    first producer numbers its filters.
    """

    id: int
    channels: np.ndarray
    members: list[Member]
    reasons: list[str] = field(default_factory=list)

    @property
    def producers(self) -> list[str]:
        return [m.node for m in self.members if m.role is Role.PRODUCER]

    @property
    def prunable(self) -> bool:
        return not self.reasons

    @property
    def size(self) -> int:
        return len(self.channels)

    def channel_ids(self, indices) -> set[int]:
        """Class ids of the channels at ``indices``; OnnxcarError for an index the group does not have."""
        outside = [i for i in indices if not 0 <= i < self.size]
        if outside:
            raise OnnxcarError(f"group {self.id} has {self.size} channels, so no channel {outside[0]}")
        return {int(self.channels[i]) for i in indices}


@dataclass
class Tracer:
    """The channel trace built while walking the graph in topological order."""

    uf: UnionFind = field(default_factory=UnionFind)
    slots: dict[str, Slot] = field(default_factory=dict)
    owners: list[str] = field(default_factory=list)
    members: list[tuple[str, str, Role, np.ndarray]] = field(default_factory=list)
    edits: list[Edit] = field(default_factory=list)
    blocks: list[tuple[np.ndarray, str]] = field(default_factory=list)

    def block(self, atoms: np.ndarray, reason: str) -> None:
        self.blocks.append((atoms, reason))

    def opaque(self, count: int, reason: str) -> np.ndarray:
        """Atoms for channels that come from no producer, blocked."""
        atoms = self.uf.add(count)
        self.owners.extend([""] * count)
        self.block(atoms, reason)
        return atoms


@dataclass
class Analysis:
    """The channel groups of a graph and everything surgery needs to remove them."""

    graph: gs.Graph
    model: onnx.ModelProto
    tracer: Tracer
    groups: list[Group]
    root: np.ndarray  # the class id of every atom

    def roots(self, atoms: np.ndarray) -> np.ndarray:
        return self.root[atoms]

    def feasible(self, removed: set[int] | frozenset[int]) -> bool:
        """True when removing the channels ``removed`` leaves every channel tensor at least one channel."""
        gone = np.fromiter(removed, dtype=np.int64, count=len(removed))
        return not any(np.isin(self.root[slot.atoms], gone).all() for slot in self.tracer.slots.values())

    def layer_name(self, node_name: str) -> str:
        """The short name of the layer ``node_name`` (see :func:`layer_name`), unique in the graph."""
        return self._layer_names[node_name]

    def group(self, name: str) -> Group:
        """The group a layer name selects: a producer node name, or its short layer name."""
        for group in self.groups:
            if any(name in (p, self.layer_name(p)) for p in group.producers):
                return group
        known = ", ".join(self.layer_name(g.producers[0]) for g in self.groups)
        raise OnnxcarError(f"no layer named {name!r}; layers: {known}")

    def __post_init__(self) -> None:
        bases = {node.name: layer_name(node) for node in self.graph.nodes}
        taken, seen = set(bases.values()), set()
        self._layer_names: dict[str, str] = {}
        for node in self.graph.nodes:  # in topological order: a later node of a name taken gets a free suffix
            name = base = bases[node.name]
            count = 2
            while base in seen and name in taken:
                name, count = f"{base}#{count}", count + 1
            taken.add(name)
            seen.add(base)
            self._layer_names[node.name] = name


def layer_name(node: gs.Node) -> str:
    """A short name for a layer: ``/features/conv1/Conv`` gives ``features/conv1``; an exporter's
    generic node name (``node_Conv_12``, Paddle's ``Conv@0``, ``n0``) gives way to its weight's
    name without the suffix (``features.0.weight`` gives ``features.0``, ``conv1_weights`` ``conv1``)."""
    parts = [p for p in node.name.split("/") if p]
    if len(parts) > 1:
        return "/".join(parts[:-1] if parts[-1].split("_")[0] in _OP_SUFFIXES else parts)
    weight = node.inputs[1].name if len(node.inputs) > 1 and isinstance(node.inputs[1], gs.Constant) else ""
    suffix = next((s for s in _WEIGHT_SUFFIXES if weight.endswith(s) and len(weight) > len(s)), None)
    if suffix and not weight.startswith("onnx::") and _generic(node):
        return weight[: -len(suffix)]
    return node.name


_OP_SUFFIXES = {"Conv", "Gemm", "MatMul", "ConvTranspose"}
_WEIGHT_SUFFIXES = (".weight", "_weights", "_weight", ".w_0", "_w_0", "_W")
"""Endings of weight names: torch, PaddleOCR, Paddle's static graph, Caffe2 (the onnx wheel's models)."""


def _generic(node: gs.Node) -> bool:
    """True for a node name that says only its op and a number: ``Conv@0`` (Paddle), ``p2o.Conv.0``,
    ``node_Conv_12`` or ``node_conv2d_1`` (torch dynamo), ``n0``, ``Conv_12`` (a node that had no name)."""
    op = re.escape(node.op)
    return re.fullmatch(rf"(node_[A-Za-z0-9]+|(p2o\.)?{op}|n)?([_@.:]?[0-9]+)*", node.name) is not None


def analyze(model: onnx.ModelProto, input_shapes: InputShapes | None = None) -> Analysis:
    """Traces every channel of ``model`` and groups the channels that must go together.

    With ``input_shapes`` (every input sized), a tensor whose shape the graph leaves unknown (behind
    shape computations that inference stops at) takes what :func:`_size_free_shapes` finds."""
    load_handlers()
    graph = import_graph(model)
    unknown = [t for t in graph.tensors().values() if isinstance(t, gs.Variable) and t.shape is None]
    if input_shapes and unknown:
        known = _size_free_shapes(model, input_shapes)
        for tensor in unknown:
            if tensor.name in known:
                tensor.shape = known[tensor.name]
    tracer = Tracer()
    _seed_inputs(graph, tracer)
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    for node in graph.nodes:
        _visit(node, tracer, opsets.get(node.domain or ""))
    for tensor in graph.outputs:
        slot = tracer.slots.get(tensor.name)
        if slot is not None:
            tracer.block(slot.atoms, f"channels reach the graph output {tensor.name!r}")
    root = tracer.uf.root_array()
    return Analysis(graph, model, tracer, _collect_groups(tracer, root), root)


def _size_free_shapes(model: onnx.ModelProto, shapes: InputShapes) -> dict[str, list[int | None]]:
    """What holds at every size of each tensor sized at ``shapes``: compared with the model at twice each
    dim it leaves free (the batch included), its rank where the two agree and each dim that does not
    change (the others None); where the model cannot take that size, at twice the batch only, its rank
    alone (a Squeeze without axes drops a batch of 1, so ranks are compared too)."""
    declared = declared_shapes(model)
    one = tensor_shapes(model, shapes)
    for free_dims in (True, False):
        doubled = {name: tuple(2 * size if i == 0 or free_dims and (not declared[name] or declared[name][i] is None)
                               else size for i, size in enumerate(shape)) for name, shape in shapes.items()}
        try:
            other = tensor_shapes(model, doubled)
        except OnnxcarError:
            continue
        return {name: [a if free_dims and a == b else None for a, b in zip(shape, other[name])]
                for name, shape in one.items() if name in other and len(shape) == len(other[name])}
    return {}


def _seed_inputs(graph: gs.Graph, tracer: Tracer) -> None:
    for tensor in graph.inputs:
        channels = channel_dim(tensor.shape)
        if channels is not None and channels > 1:
            atoms = tracer.opaque(channels, f"channels of the graph input {tensor.name!r}")
            tracer.slots[tensor.name] = Slot(1, atoms)


def _visit(node: gs.Node, tracer: Tracer, opset: int | None) -> None:
    ctx = NodeContext(tracer, node)
    handler = handler_for(node.domain or "", node.op, opset)
    try:
        if handler is None:
            domain = f" of domain {node.domain!r}" if node.domain not in (None, "", "ai.onnx") else ""
            raise Unhandled(f"{node.op}{domain} has no channel handler")
        handler(ctx)
    except Unhandled as err:
        reason = f"{node.name} ({node.op}): {err}"
        for index in range(len(node.inputs)):
            slot = ctx.slot(index, split=True)
            if slot is not None:
                tracer.block(slot.atoms, reason)
        for output in node.outputs:  # whatever the handler set before it gave up is void
            tracer.slots.pop(output.name, None)
        for index, output in enumerate(node.outputs):
            channels = channel_dim(output.shape)
            if channels is not None and channels > 1 and node.op in ("Conv", "Gemm", "MatMul"):
                tracer.slots[output.name] = Slot(1, tracer.opaque(channels, reason))


def _collect_groups(tracer: Tracer, root: np.ndarray) -> list[Group]:
    by_owner: dict[str, list[int]] = {}
    for atom, owner in enumerate(tracer.owners):
        if owner:
            by_owner.setdefault(owner, []).append(atom)
    # Producers whose channels were coupled form one group.
    link = UnionFind()
    producer_ids = {name: i for i, name in enumerate(by_owner)}
    link.add(len(producer_ids))
    first_owner_of_root: dict[int, str] = {}
    for owner, atoms in by_owner.items():
        for r in root[atoms].tolist():
            link.union(producer_ids[owner], producer_ids[first_owner_of_root.setdefault(r, owner)])
    grouped: dict[int, list[str]] = {}
    for owner in by_owner:  # dict order is the topological order of producers
        grouped.setdefault(link.find(producer_ids[owner]), []).append(owner)

    group_of_root: dict[int, int] = {}
    channel_lists = []
    for index, owners in enumerate(grouped.values()):
        channels = list(dict.fromkeys(root[a] for owner in owners for a in by_owner[owner]))
        channel_lists.append(channels)
        group_of_root.update((int(r), index) for r in channels)

    reasons: list[dict[str, None]] = [{} for _ in channel_lists]
    for atoms, reason in tracer.blocks:
        for index in _groups_touched(root, atoms, group_of_root):
            reasons[index][reason] = None
    members: list[dict[tuple[str, Role], Member]] = [{} for _ in channel_lists]
    for node, op_type, role, atoms in tracer.members:
        for index in _groups_touched(root, atoms, group_of_root):
            members[index].setdefault((node, role), Member(node, op_type, role))

    groups = []
    for index, channels in enumerate(channel_lists):
        why = list(reasons[index])
        if len(channels) < 2:
            why.append("a single channel cannot be pruned")
        groups.append(Group(index, np.asarray(channels, dtype=np.int64), list(members[index].values()), why))
    return groups


def _groups_touched(root: np.ndarray, atoms: np.ndarray, group_of_root: dict[int, int]) -> set[int]:
    return {group_of_root[r] for r in set(root[atoms].tolist()) if r in group_of_root}
