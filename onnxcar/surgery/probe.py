"""Probe models: score many masked variants of one group without building a model per variant.

The graph is cut just before the group's consumers. The *prefix* computes, once per image,
every tensor that crosses the cut (including residual branches that skip over it). The
*suffix* takes those tensors and a per-sample channel mask (one row per sample), multiplies
each consumer's input by the mask, and finishes the forward pass. Stacking the same images
with different mask rows evaluates many candidates in one session call.
"""

from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxcar.graph.analysis import Group
from onnxcar.graph.channels import EditKind
from onnxcar.graph.ir import export_model
from onnxcar.surgery.apply import masked_graph
from onnxcar.surgery.linear import CANDIDATE_INPUT, linear_consumer, rewrite_linear
from onnxcar.surgery.plan import Plan

MASK_INPUT = "onnxcar_channel_mask"


@dataclass(frozen=True)
class Probe:
    """A prefix and a suffix model for one group; the suffix reads ``cut`` and the mask."""

    prefix: onnx.ModelProto
    suffix: onnx.ModelProto
    cut: tuple[str, ...]  # tensors the prefix computes and the suffix reads
    passthrough: tuple[str, ...]  # model inputs the suffix reads directly
    channels: int  # mask width: the group's channel count
    sources: tuple[tuple[str, int, np.ndarray], ...]  # (tensor, channel axis, group index per position) read by consumers
    linear: bool = False  # the suffix takes one mask row and candidate indices (see surgery.linear)


def build_probe(plan: Plan, group: Group, *, linear: bool = True) -> Probe:
    """The probe of ``group`` on the model with ``plan``'s other channels masked out.

    With ``linear``, a group read by a single Conv or FC layer gets the rank-1 suffix.
    """
    analysis = plan.analysis
    outside = Plan(analysis, plan.removed.difference(group.channels.tolist()))
    graph = masked_graph(outside)
    consumers = _consumer_inputs(plan, group)
    mask = gs.Variable(MASK_INPUT, dtype=np.float32, shape=["rows", group.size])
    extended = gs.Variable("onnxcar_mask_ones", dtype=np.float32)
    graph.nodes.append(
        gs.Node("Pad", "onnxcar_mask_pad", inputs=[mask, gs.Constant("onnxcar_mask_pads", np.array([0, 0, 0, 1], np.int64)),
                                                   gs.Constant("onnxcar_one", np.array(1.0, np.float32))], outputs=[extended])
    )
    nodes = {node.name: node for node in graph.nodes}
    analysed = {node.name: node for node in analysis.graph.nodes}
    position = {int(c): i for i, c in enumerate(group.channels)}
    masked: dict[str, gs.Variable] = {}
    sources = []
    for node_name in consumers:
        node = nodes[node_name]
        source = node.inputs[0]  # masking outside channels may have put a masked copy there
        if source.name not in masked:
            slot = analysis.tracer.slots[analysed[node_name].inputs[0].name]
            index = np.array([position.get(int(r), group.size) for r in analysis.roots(slot.atoms)], np.int64)
            masked[source.name] = _apply_mask(graph, source, slot.axis, index, extended)
            sources.append((source.name, slot.axis, index))
        node.inputs[0] = masked[source.name]
    use_linear = (
        linear
        and len(consumers) == 1
        and len(graph.tensors()[sources[0][0]].outputs) == 1  # only the mask reads it: it may stay untiled
        and linear_consumer(nodes[consumers[0]], sources[0][2], group.size)
    )
    if use_linear:
        candidates = gs.Variable(CANDIDATE_INPUT, dtype=np.int64, shape=["M"])
        rewrite_linear(graph, nodes[consumers[0]], sources[0][2], candidates)
        graph.inputs.append(candidates)
    return _split(graph, analysis.model, mask, group.size, tuple(sources), use_linear)


def _consumer_inputs(plan: Plan, group: Group) -> list[str]:
    """Nodes whose weights (or LRN windows) read the group's channels."""
    channels = set(group.channels.tolist())
    names = []
    for edit in plan.analysis.tracer.edits:
        if edit.kind in (EditKind.READ, EditKind.WINDOW) and channels.intersection(plan.analysis.roots(edit.atoms).tolist()):
            names.append(edit.node)
    return list(dict.fromkeys(names))


def _apply_mask(graph: gs.Graph, source: gs.Tensor, axis: int, index: np.ndarray, extended: gs.Variable) -> gs.Variable:
    rank = len(source.shape)
    tag = f"onnxcar_mask_{len(graph.nodes)}"
    rows = gs.Variable(f"{tag}_rows", dtype=np.float32)
    shaped = gs.Variable(f"{tag}_shaped", dtype=np.float32)
    out = gs.Variable(f"{tag}_out", dtype=source.dtype)
    shape = np.ones(rank, np.int64)
    shape[0], shape[axis] = 0, len(index)
    graph.nodes.extend(
        [
            gs.Node("Gather", f"{tag}_gather", {"axis": 1}, [extended, gs.Constant(f"{tag}_index", index)], [rows]),
            gs.Node("Reshape", f"{tag}_reshape", inputs=[rows, gs.Constant(f"{tag}_shape", shape)], outputs=[shaped]),
            gs.Node("Mul", f"{tag}_mul", inputs=[source, shaped], outputs=[out]),
        ]
    )
    return out


def _split(graph: gs.Graph, like: onnx.ModelProto, mask: gs.Variable, channels: int, sources, linear: bool) -> Probe:
    graph.toposort()
    downstream = _suffix_nodes(graph, mask)
    produced = {t.name for node in graph.nodes if node.name in downstream for t in node.outputs}
    inputs = {t.name for t in graph.inputs}
    read = [t for node in graph.nodes if node.name in downstream for t in node.inputs] + list(graph.outputs)
    cut, passthrough, seen = [], [], set()
    for tensor in read:
        if isinstance(tensor, gs.Variable) and tensor.name and tensor.name not in produced | seen | {MASK_INPUT, CANDIDATE_INPUT}:
            seen.add(tensor.name)
            (passthrough if tensor.name in inputs else cut).append(tensor)
    outputs = list(graph.outputs)

    prefix = graph.copy()
    prefix_tensors = prefix.tensors()
    prefix.outputs = [prefix_tensors[t.name] for t in cut]
    prefix.inputs = [t for t in prefix.inputs if t.name != CANDIDATE_INPUT]
    prefix_model = export_model(prefix, like) if cut else None

    suffix = graph.copy()
    suffix_tensors = suffix.tensors()
    controls = [suffix_tensors[mask.name]] + ([suffix_tensors[CANDIDATE_INPUT]] if linear else [])
    suffix.inputs = [suffix_tensors[t.name] for t in cut + passthrough]
    untiled = sources[0][0] if linear else None
    for tensor in suffix.inputs:
        tensor.inputs.clear()  # cut from its producer in the prefix
        if tensor.shape is not None:  # distinct symbols: onnxruntime plans memory by them
            tensor.shape = ["images" if tensor.name == untiled else "rows", *tensor.shape[1:]]
    if linear:
        controls[0].shape = [1, channels]
    suffix.inputs += controls
    suffix.outputs = [suffix_tensors[t.name] for t in outputs]
    suffix_model = export_model(suffix, like)
    names = tuple(t.name for t in cut), tuple(t.name for t in passthrough)
    return Probe(prefix_model, suffix_model, *names, channels, sources, linear)


def _suffix_nodes(graph: gs.Graph, mask: gs.Variable) -> set[str]:
    """Names of the nodes the suffix runs: those that depend on the mask or the candidates, and
    what feeds them without being an activation: shape computations (Shape, Gather, Concat...),
    which must see the suffix's rows, and weights dequantized from constants."""
    tainted = {mask.name, CANDIDATE_INPUT}
    names = set()
    for node in graph.nodes:  # topological order
        if any(t.name in tainted for t in node.inputs):
            names.add(node.name)
            tainted.update(t.name for t in node.outputs)
    inputs = {t.name for t in graph.inputs}
    pending = [t for n in graph.nodes if n.name in names for t in n.inputs]
    while pending:
        tensor = pending.pop()
        if isinstance(tensor, gs.Variable) and tensor.inputs and tensor.name not in inputs and not _batch_major(tensor):
            producer = tensor.inputs[0]
            if producer.name not in names:
                names.add(producer.name)
                pending.extend(producer.inputs)
    return names


def _batch_major(tensor: gs.Variable) -> bool:
    """True for an activation with the batch first; False for shape arithmetic and for what a node
    computes from constants alone (a DequantizeLinear of weights: the only such node left unfolded)."""
    if all(isinstance(t, gs.Constant) or not t.name for t in tensor.inputs[0].inputs):
        return False
    shape = tensor.shape
    floating = tensor.dtype is not None and np.issubdtype(np.dtype(tensor.dtype), np.floating)
    return floating and shape is not None and (len(shape) >= 2 or (len(shape) == 1 and not isinstance(shape[0], int)))
