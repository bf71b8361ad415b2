"""Handlers for layers with weights, normalisation, pooling and reductions."""

import numpy as np

from onnxcar.errors import OnnxcarError
from onnxcar.graph.channels import EditKind, Role, Slot, UnionFind
from onnxcar.graph.context import NodeContext, Unhandled
from onnxcar.graph.registry import register
from onnxcar.graph.window import is_window


@register("Conv")
def conv(ctx: NodeContext) -> None:
    """Conv: reads input channels, produces filters; depthwise Conv and a channel window (a pruned
    LRN, see graph.window) pass channels through."""
    weight = ctx.weight(1)
    groups = int(ctx.attr("group", 1))
    source = ctx.slot(0)
    if weight.ndim < 3 or groups < 1 or weight.shape[0] % groups or (
        source is not None and source.size != weight.shape[1] * groups
    ):
        raise OnnxcarError(f"invalid model: Conv {ctx.node.name!r} has a weight of shape {list(weight.shape)} "
                           f"that does not fit group={groups} and its input")
    out_channels, in_per_group = weight.shape[0], weight.shape[1]
    if source is not None and source.axis != 1:
        raise Unhandled("Conv input carries channels on an axis other than 1")
    if source is not None and groups == 1 and not ctx.has_input(2) and is_window(ctx.node.name, weight):
        ctx.member(Role.THROUGH, source.atoms)
        ctx.edit(EditKind.READ, 1, 1, source.atoms)
        ctx.edit(EditKind.OWN, 1, 0, source.atoms)
        ctx.output(source)
        return
    if groups > 1 and in_per_group == 1:
        if source is not None:
            _depthwise(ctx, source, out_channels // groups)
        return
    if source is not None:
        ctx.edit(EditKind.READ, 1, 1, source.atoms, pieces=_grouped(ctx, source, groups))
    atoms = np.tile(ctx.fresh(out_channels // groups), groups)
    ctx.edit(EditKind.OWN, 1, 0, atoms)
    _own_bias(ctx, atoms)
    ctx.output(Slot(1, atoms))


@register("ConvTranspose")
def conv_transpose(ctx: NodeContext) -> None:
    """ConvTranspose: weights are [in, out / group, k...]; grouped and depthwise as Conv."""
    weight = ctx.weight(1)
    groups = int(ctx.attr("group", 1))
    source = ctx.slot(0)
    if weight.ndim < 3 or groups < 1 or weight.shape[0] % groups or (source is not None and source.size != weight.shape[0]):
        raise OnnxcarError(f"invalid model: ConvTranspose {ctx.node.name!r} has a weight of shape {list(weight.shape)} "
                           f"that does not fit group={groups} and its input")
    if ctx.attr("output_shape") is not None:
        raise Unhandled("ConvTranspose with an explicit output_shape")
    if source is not None and source.axis != 1:
        raise Unhandled("ConvTranspose input carries channels on an axis other than 1")
    if groups > 1 and weight.shape[0] == groups:
        if source is not None:
            _depthwise(ctx, source, weight.shape[1])
        return
    if source is not None:
        _grouped(ctx, source, groups)
        ctx.edit(EditKind.READ, 1, 0, source.atoms)
    filters = ctx.fresh(weight.shape[1])
    ctx.edit(EditKind.OWN, 1, 1, filters)
    atoms = np.tile(filters, groups)
    _own_bias(ctx, atoms)
    ctx.output(Slot(1, atoms))


def _grouped(ctx: NodeContext, source: Slot, groups: int) -> tuple[np.ndarray, ...]:
    """Couples the input channels of a grouped layer so that every group loses as many as the others;
    returns the atoms of each group.

    The k-th positions of all groups are coupled, so a class has as many positions in every
    group. Positions are taken in their order, or with each group's most repeated channels
    first, whichever leaves more classes: after a shuffle whose groups do not divide the
    layer's evenly, a channel straddles two groups, and aligning it by position would chain
    every channel into one class.
    """
    parts = source.atoms.reshape(groups, -1)
    roots = np.array([ctx.tracer.uf.find(int(atom)) for atom in source.atoms]).reshape(parts.shape)
    orders = [np.tile(np.arange(parts.shape[1]), (groups, 1)), np.stack([_most_repeated_first(r) for r in roots])]
    order = max(orders, key=lambda o: _classes_after(np.take_along_axis(roots, o, axis=1)))
    aligned = np.take_along_axis(parts, order, axis=1)
    for part in aligned[1:]:
        ctx.union(aligned[0], part)
    return tuple(parts)


def _most_repeated_first(roots: np.ndarray) -> np.ndarray:
    _, first, inverse, counts = np.unique(roots, return_index=True, return_inverse=True, return_counts=True)
    return np.lexsort((np.arange(len(roots)), first[inverse], -counts[inverse]))


def _classes_after(aligned: np.ndarray) -> int:
    """How many classes the channels of ``aligned`` (groups x positions of class roots) form once
    the k-th positions of all groups are coupled."""
    classes = UnionFind()
    index = {root: i for i, root in enumerate(np.unique(aligned).tolist())}
    classes.add(len(index))
    for column in aligned.T.tolist():
        for root in column[1:]:
            classes.union(index[column[0]], index[root])
    return len(set(classes.root_array().tolist()))


def _depthwise(ctx: NodeContext, source: Slot, multiplier: int) -> None:
    """A depthwise (transposed) Conv gives each channel ``multiplier`` filters of its own: channels
    pass through, and ``group`` shrinks with them."""
    atoms = np.repeat(source.atoms, multiplier)
    ctx.member(Role.THROUGH, atoms)
    ctx.edit(EditKind.OWN, 1, 0, atoms if ctx.node.op == "Conv" else source.atoms)  # ConvTranspose: [in, multiplier, k...]
    _own_bias(ctx, atoms)
    ctx.edit(EditKind.GROUP, 0, 1, source.atoms)
    ctx.output(Slot(1, atoms))


def _own_bias(ctx: NodeContext, atoms: np.ndarray) -> None:
    if ctx.has_input(2):
        ctx.weight(2)
        ctx.edit(EditKind.OWN, 2, 0, atoms)


@register("Gemm")
def gemm(ctx: NodeContext) -> None:
    """Gemm with a constant B: reads features, produces units."""
    if int(ctx.attr("transA", 0)):
        raise Unhandled("Gemm with transA=1")
    weight = ctx.weight(1)
    trans_b = int(ctx.attr("transB", 0))
    source = ctx.slot(0)
    if source is not None:
        ctx.edit(EditKind.READ, 1, 1 if trans_b else 0, source.atoms)
    units = weight.shape[0] if trans_b else weight.shape[1]
    atoms = ctx.fresh(units)
    ctx.edit(EditKind.OWN, 1, 0 if trans_b else 1, atoms)
    bias = ctx.const(2) if ctx.has_input(2) else None
    if ctx.has_input(2) and bias is None:
        raise Unhandled("Gemm bias is not a constant")
    if bias is not None and bias.ndim >= 1 and bias.shape[-1] == units and units > 1:
        ctx.edit(EditKind.OWN, 2, bias.ndim - 1, atoms)
    ctx.output(Slot(1, atoms))


@register("MatMul")
def matmul(ctx: NodeContext) -> None:
    """MatMul by a constant 2-D matrix: a fully connected layer over the last axis."""
    weight = ctx.const(1)
    source = ctx.slot(0)
    if weight is None or weight.ndim != 2:
        raise Unhandled("MatMul whose right operand is not a constant matrix")
    shape = ctx.in_shape(0)
    if shape is None:
        raise Unhandled("MatMul input rank is unknown")
    last = len(shape) - 1
    if source is not None and source.axis != last:
        ctx.member(Role.THROUGH, source.atoms)  # channels are a batch axis of the product
        ctx.output(Slot(source.axis, source.atoms))
        return
    if source is not None:
        ctx.edit(EditKind.READ, 1, 0, source.atoms)
    atoms = ctx.fresh(weight.shape[1])
    ctx.edit(EditKind.OWN, 1, 1, atoms)
    ctx.output(Slot(last, atoms))


@register("BatchNormalization", "InstanceNormalization")
def normalization(ctx: NodeContext) -> None:
    """Per-channel normalisation: its parameters shrink with the channels."""
    source = _channel_axis_one(ctx)
    if source is None:
        return
    for index in range(1, len(ctx.node.inputs)):
        ctx.weight(index)
        ctx.edit(EditKind.OWN, index, 0, source.atoms)
    ctx.member(Role.THROUGH, source.atoms)
    ctx.output(Slot(1, source.atoms))


@register("MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
def pool(ctx: NodeContext) -> None:
    """Spatial pooling keeps channels apart. MaxPool's indices count positions across channels,
    so only a MaxUnpool of the same channels may read them."""
    source = _channel_axis_one(ctx)
    if source is None:
        return
    if len(ctx.node.outputs) > 1 and any(n.op != "MaxUnpool" or n.inputs[0] is ctx.node.outputs[1]
                                         for n in ctx.node.outputs[1].outputs):
        raise Unhandled("MaxPool indices count positions across channels: only MaxUnpool may read them")
    ctx.member(Role.THROUGH, source.atoms)
    for index in range(len(ctx.node.outputs)):
        ctx.output(Slot(1, source.atoms), index)


@register("MaxUnpool")
def max_unpool(ctx: NodeContext) -> None:
    """MaxUnpool puts each value where its MaxPool found it: the values' channels are coupled with
    the pooled channels, position by position, so both lose the same ones."""
    source, indices = _channel_axis_one(ctx), ctx.slot(1)
    if source is None and indices is None:
        return
    if source is None or indices is None or indices.axis != 1 or source.size != indices.size:
        raise Unhandled("MaxUnpool values and indices do not carry the same channels")
    ctx.union(source.atoms, indices.atoms)
    if ctx.has_input(2):
        if ctx.const(2) is None:
            raise Unhandled("MaxUnpool output shape is computed at run time")
        ctx.edit(EditKind.SHAPE, 2, 1, source.atoms)
    ctx.member(Role.THROUGH, source.atoms)
    ctx.output(Slot(1, source.atoms))


@register(
    "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd",
    "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
)
def reduce(ctx: NodeContext) -> None:
    """Reductions over axes other than the channel axis."""
    source = ctx.slot(0)
    if source is None:
        return
    shape = ctx.in_shape(0)
    axes = ctx.attr("axes")
    if axes is None and ctx.has_input(1):
        axes = ctx.const(1)
        if axes is None:
            raise Unhandled(f"{ctx.node.op} axes are computed at run time")
    if shape is None:
        raise Unhandled(f"{ctx.node.op} input rank is unknown")
    rank = len(shape)
    if axes is None or len(axes) == 0:
        if int(ctx.attr("noop_with_empty_axes", 0)):
            ctx.output(source)
            return
        axes = range(rank)
    axes = sorted(int(a) % rank for a in axes)
    if source.axis in axes:
        raise Unhandled(f"{ctx.node.op} reduces over the channel axis")
    keep = int(ctx.attr("keepdims", 1))
    axis = source.axis if keep else source.axis - sum(a < source.axis for a in axes)
    ctx.member(Role.THROUGH, source.atoms)
    ctx.output(Slot(axis, source.atoms))


@register("LRN")
def lrn(ctx: NodeContext) -> None:
    """LRN divides each channel by the energy of its neighbours: its window reads them like a weight."""
    source = _channel_axis_one(ctx)
    if source is None:
        return
    shape = ctx.in_shape(0)
    if shape is None or len(shape) < 3:
        raise Unhandled("LRN input rank is unknown or below 3")
    ctx.member(Role.THROUGH, source.atoms)
    ctx.edit(EditKind.WINDOW, 0, 1, source.atoms)
    ctx.output(Slot(1, source.atoms))


@register("Softmax", "LogSoftmax", "Hardmax", "LpNormalization")
def softmax(ctx: NodeContext) -> None:
    """Normalisations along one axis: fine unless that axis is the channel axis."""
    source = ctx.slot(0)
    if source is None:
        return
    shape = ctx.in_shape(0)
    if shape is None:
        raise Unhandled(f"{ctx.node.op} input rank is unknown")
    default = 1 if ctx.node.op == "LpNormalization" else -1
    if int(ctx.attr("axis", default)) % len(shape) == source.axis:
        raise Unhandled(f"{ctx.node.op} normalises over the channel axis")
    ctx.member(Role.THROUGH, source.atoms)
    ctx.output(source)


def _channel_axis_one(ctx: NodeContext) -> Slot | None:
    source = ctx.slot(0)
    if source is not None and source.axis != 1:
        raise Unhandled(f"{ctx.node.op} input carries channels on an axis other than 1")
    return source
