"""Handlers for layers with weights, normalisation, pooling and reductions."""

import numpy as np

from onnxcar.errors import OnnxcarError
from onnxcar.graph.channels import EditKind, Role, Slot
from onnxcar.graph.context import NodeContext, Unhandled
from onnxcar.graph.registry import register


@register("Conv")
def conv(ctx: NodeContext) -> None:
    """Conv: reads input channels, produces filters; depthwise Conv passes channels through."""
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
    if groups > 1 and in_per_group == 1:
        if source is None:
            return
        atoms = np.repeat(source.atoms, out_channels // groups)
        ctx.member(Role.THROUGH, atoms)
        _own_filters(ctx, atoms)
        ctx.edit(EditKind.GROUP, 0, 1, source.atoms)
        ctx.output(Slot(1, atoms))
        return
    if source is not None:
        local = source.atoms[:in_per_group]
        for group in range(1, groups):  # the same local input index is kept in every group
            ctx.union(local, source.atoms[group * in_per_group : (group + 1) * in_per_group])
        ctx.edit(EditKind.READ, 1, 1, local)
    atoms = np.tile(ctx.fresh(out_channels // groups), groups)
    _own_filters(ctx, atoms)
    ctx.output(Slot(1, atoms))


def _own_filters(ctx: NodeContext, atoms: np.ndarray) -> None:
    ctx.edit(EditKind.OWN, 1, 0, atoms)
    if ctx.has_input(2):
        ctx.weight(2)
        ctx.edit(EditKind.OWN, 2, 0, atoms)


@register("ConvTranspose")
def conv_transpose(ctx: NodeContext) -> None:
    """ConvTranspose with group 1: weights are [in, out, k...]."""
    weight = ctx.weight(1)
    if int(ctx.attr("group", 1)) != 1:
        raise Unhandled("grouped ConvTranspose is not supported")
    if ctx.attr("output_shape") is not None:
        raise Unhandled("ConvTranspose with an explicit output_shape")
    source = ctx.slot(0)
    if source is not None:
        if source.axis != 1:
            raise Unhandled("ConvTranspose input carries channels on an axis other than 1")
        ctx.edit(EditKind.READ, 1, 0, source.atoms)
    atoms = ctx.fresh(weight.shape[1])
    ctx.edit(EditKind.OWN, 1, 1, atoms)
    if ctx.has_input(2):
        ctx.weight(2)
        ctx.edit(EditKind.OWN, 2, 0, atoms)
    ctx.output(Slot(1, atoms))


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
    """Spatial pooling keeps channels apart."""
    source = _channel_axis_one(ctx)
    if source is None:
        return
    if len(ctx.node.outputs) > 1 and ctx.node.outputs[1].outputs:
        raise Unhandled("MaxPool indices count positions across channels")
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
    raise Unhandled("LRN mixes neighbouring channels")


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
