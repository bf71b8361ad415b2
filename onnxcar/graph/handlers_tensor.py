"""Handlers for elementwise ops, concatenation, splitting and layout changes."""

import numpy as np
import onnx_graphsurgeon as gs

from onnxcar.graph.channels import EditKind, Role, Slot
from onnxcar.graph.context import NodeContext, Unhandled, static_dims
from onnxcar.graph.registry import register

UNARY = (
    "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu",
    "Celu", "Softplus", "Softsign", "Erf", "Gelu", "Mish", "ThresholdedRelu", "Identity", "Cast",
    "Neg", "Abs", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Sin",
    "Cos", "Dropout",
)


@register(*UNARY)
def unary(ctx: NodeContext) -> None:
    """Elementwise ops of one tensor (extra inputs are scalars)."""
    source = ctx.slot(0, split=True)
    if source is None:
        return
    ctx.member(Role.THROUGH, source.atoms)
    for index in range(len(ctx.node.outputs)):
        ctx.output(source, index)


@register("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "PRelu", "Where")
def broadcast(ctx: NodeContext) -> None:
    """Broadcasting elementwise ops: couple the channels of every operand that carries them."""
    inputs = [i for i in range(len(ctx.node.inputs)) if ctx.has_input(i)]
    slotted = [(i, s) for i in inputs if (s := ctx.slot(i)) is not None]
    if not slotted:
        return
    shapes = {i: ctx.in_shape(i) for i in inputs}
    if any(shape is None for shape in shapes.values()):
        raise Unhandled(f"{ctx.node.op} operand ranks are unknown")
    rank = max(len(shape) for shape in shapes.values())
    axes = {slot.axis + rank - len(shapes[i]) for i, slot in slotted}
    if len(axes) != 1:
        raise Unhandled(f"{ctx.node.op} operands carry channels on different axes")
    axis = axes.pop()
    width = max(slot.size for _, slot in slotted)
    if width > 1:  # a single-channel operand broadcasts like a constant
        slotted = [(i, slot) for i, slot in slotted if slot.size > 1]
    atoms = slotted[0][1].atoms
    for _, slot in slotted[1:]:
        if slot.size != len(atoms):
            raise Unhandled(f"{ctx.node.op} operands carry different channel counts")
        ctx.union(atoms, slot.atoms)
    slotted_inputs = {i for i, _ in slotted}
    for i in inputs:
        if i in slotted_inputs:
            continue
        local = axis - (rank - len(shapes[i]))
        size = shapes[i][local] if local >= 0 else 1
        if size == 1:
            continue
        if size != len(atoms) or ctx.const(i) is None:
            raise Unhandled(f"{ctx.node.op} input {i} varies along the channel axis but is not a per-channel constant")
        ctx.edit(EditKind.OWN, i, local, atoms)
    ctx.member(Role.THROUGH, atoms)
    ctx.output(Slot(axis, atoms))


@register("QuantizeLinear", "DequantizeLinear")
def quantize(ctx: NodeContext) -> None:
    """Quantizing or dequantizing activations: elementwise, with one scale per tensor or per channel."""
    source = ctx.slot(0)
    if source is None:
        return
    scale, shape = ctx.const(1), ctx.in_shape(0)
    if scale is None or shape is None or int(ctx.attr("block_size", 0)):
        raise Unhandled(f"{ctx.node.op} with a computed scale, an unknown rank or blocks")
    if scale.ndim:
        if int(ctx.attr("axis", 1)) % len(shape) != source.axis:
            raise Unhandled(f"{ctx.node.op} has one scale per entry of an axis other than the channels'")
        for index in (1, 2):
            if ctx.has_input(index):
                ctx.edit(EditKind.OWN, index, 0, source.atoms)
    ctx.member(Role.THROUGH, source.atoms)
    ctx.output(source)


@register("Concat")
def concat(ctx: NodeContext) -> None:
    """Concat on the channel axis lays the inputs' channels end to end."""
    shape = ctx.out_shape(0)
    if shape is None:
        raise Unhandled("Concat output rank is unknown")
    axis = int(ctx.attr("axis")) % len(shape)
    slots = [ctx.slot(i) for i in range(len(ctx.node.inputs))]
    channel_axes = {s.axis for s in slots if s is not None}
    if not channel_axes:
        return
    if len(channel_axes) > 1:
        raise Unhandled("Concat inputs carry channels on different axes")
    channel_axis = channel_axes.pop()
    if axis != channel_axis:
        return broadcast(ctx)
    pieces = []
    for index, slot in enumerate(slots):
        if slot is None:
            width = (ctx.in_shape(index) or [None] * len(shape))[axis]
            if not isinstance(width, int):
                raise Unhandled("Concat input width along the channel axis is unknown")
            slot = Slot(axis, ctx.tracer.opaque(width, f"channels of {ctx.node.inputs[index].name} are not traced"))
        pieces.append(slot.atoms)
    atoms = np.concatenate(pieces)
    ctx.member(Role.THROUGH, atoms)
    ctx.output(Slot(axis, atoms))


@register("Split")
def split(ctx: NodeContext) -> None:
    """Split on the channel axis deals each output a run of channels."""
    source = ctx.slot(0)
    if source is None:
        return
    shape = ctx.in_shape(0)
    if shape is None:
        raise Unhandled("Split input rank is unknown")
    axis = int(ctx.attr("axis", 0)) % len(shape)
    if axis != source.axis:
        ctx.member(Role.THROUGH, source.atoms)
        for index in range(len(ctx.node.outputs)):
            ctx.output(source, index)
        return
    widths = [(ctx.out_shape(i) or [None] * len(shape))[axis] for i in range(len(ctx.node.outputs))]
    if not all(isinstance(w, int) for w in widths) or sum(widths) != source.size:
        raise Unhandled("Split sizes along the channel axis are unknown")
    bounds = np.cumsum([0, *widths])
    pieces = tuple(source.atoms[bounds[i] : bounds[i + 1]] for i in range(len(widths)))
    ctx.member(Role.THROUGH, source.atoms)
    ctx.edit(EditKind.SPLIT, 1, axis, source.atoms, pieces=pieces)
    for index, piece in enumerate(pieces):
        ctx.output(Slot(axis, piece), index)


@register("Slice")
def slice_(ctx: NodeContext) -> None:
    """Slice with step 1 along the channel axis keeps a run of channels."""
    source = ctx.slot(0)
    if source is None:
        return
    if ctx.in_shape(0) is None:
        raise Unhandled("Slice input rank is unknown")
    rank = len(ctx.in_shape(0))
    if ctx.has_input(1):
        values = [ctx.const(i) for i in range(1, 5)]
        if any(v is None for v, i in zip(values, range(1, 5)) if ctx.has_input(i)):
            raise Unhandled("Slice bounds are computed at run time")
    else:  # before opset 10 the bounds are attributes
        values = [ctx.attr(key) for key in ("starts", "ends", "axes")] + [None]
    starts, ends = values[0], values[1]
    axes = values[2] if values[2] is not None else np.arange(len(starts))
    steps = values[3] if values[3] is not None else np.ones(len(starts), dtype=np.int64)
    hits = [k for k, a in enumerate(axes) if int(a) % rank == source.axis]
    if not hits:
        ctx.member(Role.THROUGH, source.atoms)
        ctx.output(source)
        return
    k = hits[0]
    if int(steps[k]) != 1:
        raise Unhandled("Slice with a step along the channel axis")
    start, stop, _ = slice(int(starts[k]), int(ends[k])).indices(source.size)
    atoms = source.atoms[start:stop]
    ctx.member(Role.THROUGH, source.atoms)
    ctx.edit(EditKind.BOUNDS, 0, k, source.atoms, bounds=(start, stop))
    ctx.output(Slot(source.axis, atoms))


def _relayout(ctx: NodeContext, source: Slot, arrange) -> None:
    """Maps channels through a pure data movement (reshape or transpose) given as ``arrange``.

    Channel positions are pushed through the op. Channels that end up varying along one
    output axis form a plain slot; a Reshape that splits the channel axis into several (a
    channel shuffle's ``[N, groups, C / groups, ...]``) gives a split slot (see :func:`_split`).
    """
    in_dims, out_dims = static_dims(ctx.in_shape(0)), static_dims(ctx.out_shape(0))
    if in_dims is None or out_dims is None:
        raise Unhandled(f"{ctx.node.op} needs static shapes to map channels")
    view = [1] * len(in_dims)
    for axis, length in source.spans:
        view[axis] = length
    positions = np.broadcast_to(np.arange(source.size).reshape(view), in_dims)
    try:
        moved = arrange(positions, out_dims)
    except ValueError:
        raise Unhandled(f"{ctx.node.op} batch and channel axes cannot be told apart") from None
    varying = [a for a in range(moved.ndim) if moved.shape[a] > 1 and np.any(np.diff(moved, axis=a) != 0)]
    if not varying:
        raise Unhandled(f"{ctx.node.op} splits or mixes the channel axis")
    ctx.member(Role.THROUGH, source.atoms)
    grid = moved[tuple(slice(None) if a in varying else 0 for a in range(moved.ndim))]
    if len(varying) == 1:
        slot = Slot(varying[0], source.atoms[grid])
    else:
        slot = _split(ctx, source, grid, varying)
    if ctx.node.op == "Reshape":
        _reshape_edit(ctx, slot.axis, slot.line())
    ctx.output(slot)


def _split(ctx: NodeContext, source: Slot, grid: np.ndarray, varying: list[int]) -> Slot:
    """The split slot of channels spread over the axes ``varying``; ``grid`` holds their positions.

    Removal must leave the groups equal, so it takes the same channel from every group: where
    a Reshape first splits the channel axis, the longest new axis (the channels of one group,
    for ``[N, groups, C / groups, ...]``) is the one that shrinks, and its i-th channel is
    coupled across the other axes. A Transpose moves that axis along.
    """
    if grid.size != source.size or len(np.unique(grid)) != source.size:
        raise Unhandled(f"{ctx.node.op} splits or mixes the channel axis")
    atoms = source.atoms[grid.reshape(-1)]
    if source.split:  # the index along the shrinking axis must keep to one axis
        lengths = [length for _, length in source.split]
        column = np.unravel_index(grid, lengths)[[a for a, _ in source.split].index(source.axis)]
        along = [k for k in range(grid.ndim) if np.any(np.diff(column, axis=k) != 0)]
        if len(along) != 1:
            raise Unhandled(f"{ctx.node.op} splits the groups of a channel shuffle")
        shrinking = along[0]
    else:
        shrinking = max(range(grid.ndim), key=lambda k: (grid.shape[k], k))
        for line in np.moveaxis(atoms.reshape(grid.shape), shrinking, 0).reshape(grid.shape[shrinking], -1):
            ctx.union(line[:1].repeat(len(line) - 1), line[1:])
    axis = varying[shrinking]
    return Slot(axis, atoms, tuple((a, grid.shape[k]) for k, a in enumerate(varying)))


def _reshape_edit(ctx: NodeContext, axis: int, atoms: np.ndarray) -> None:
    shape_input = ctx.node.inputs[1]
    if isinstance(shape_input, gs.Constant):
        if int(np.asarray(shape_input.values)[axis]) > 0:
            ctx.edit(EditKind.SHAPE, 1, axis, atoms)
        return
    piece, offset = _concat_piece(shape_input, axis)
    if piece is None:
        raise Unhandled("Reshape shape is computed at run time")
    if int(np.asarray(piece.values).reshape(-1)[offset]) > 0:
        raise Unhandled("Reshape shape counts the channels in a constant inside a computed shape")


def _concat_piece(tensor: gs.Tensor, position: int):
    """The constant piece of a Concat-built shape tensor holding ``position``, with its offset."""
    if len(tensor.inputs) != 1 or tensor.inputs[0].op != "Concat":
        return None, 0
    start = 0
    for piece in tensor.inputs[0].inputs:
        length = (piece.shape or [None])[0]
        if not isinstance(length, int):
            return None, 0
        if start <= position < start + length:
            return (piece, position - start) if isinstance(piece, gs.Constant) else (None, 0)
        start += length
    return None, 0


@register("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def reshape(ctx: NodeContext) -> None:
    source = ctx.slot(0, split=True)
    if source is not None:
        _relayout(ctx, source, lambda positions, dims: positions.reshape(dims))


@register("Transpose")
def transpose(ctx: NodeContext) -> None:
    source = ctx.slot(0, split=True)
    if source is not None:
        perm = ctx.attr("perm")
        _relayout(ctx, source, lambda positions, dims: positions.transpose(perm))


@register("Pad")
def pad(ctx: NodeContext) -> None:
    """Pad that leaves the channel axis alone."""
    source = ctx.slot(0)
    if source is None:
        return
    pads = ctx.attr("pads")
    if pads is None:
        pads = ctx.const(1)
        if pads is None:
            raise Unhandled("Pad amounts are computed at run time")
    if ctx.has_input(3):
        raise Unhandled("Pad with explicit axes")
    rank = len(pads) // 2
    if pads[source.axis] or pads[rank + source.axis]:
        raise Unhandled("Pad pads the channel axis")
    ctx.member(Role.THROUGH, source.atoms)
    ctx.output(source)


@register("Resize", "Upsample")
def resize(ctx: NodeContext) -> None:
    """Spatial resizing that keeps the channel count."""
    source = ctx.slot(0)
    if source is None:
        return
    if ctx.node.op == "Resize" and ctx.attr("axes") is not None:
        raise Unhandled("Resize with explicit axes")
    scale_index = 1 if ctx.node.op == "Upsample" else 2
    scales = ctx.const(scale_index) if ctx.has_input(scale_index) else None
    if ctx.has_input(3):
        sizes = ctx.const(3)
        if sizes is None:
            raise Unhandled("Resize sizes are computed at run time")
        ctx.edit(EditKind.SHAPE, 3, source.axis, source.atoms)
    elif scales is None or float(scales[source.axis]) != 1.0:
        raise Unhandled("Resize scales the channel axis or its scales are computed at run time")
    ctx.member(Role.THROUGH, source.atoms)
    ctx.output(source)


@register("Shape", "Size")
def shape_of(ctx: NodeContext) -> None:
    """Shape reads no values: computed shapes follow the pruned tensor at run time."""
