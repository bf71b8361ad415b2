"""Handlers for constants, shape computations and tensor rearrangement."""

import math

import torch
import torch.nn.functional as F

from onnxcar.bridge.registry import DTYPES, ints, ints_arg, padded, register

_CONSTANT_LISTS = {
    "value_float": torch.float32,
    "value_floats": torch.float32,
    "value_int": torch.int64,
    "value_ints": torch.int64,
}
_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


@register("Constant")
def constant(ctx, inputs, attrs):
    if "value" in attrs:
        return attrs["value"]
    for key, dtype in _CONSTANT_LISTS.items():
        if key in attrs:
            return torch.tensor(attrs[key], dtype=dtype)
    raise ctx.error(f"attributes {sorted(attrs)} are not supported")


@register("ConstantOfShape")
def constant_of_shape(ctx, inputs, attrs):
    shape = inputs[0]
    value = attrs.get("value", torch.zeros(1))
    return torch.full(ints(shape), value.item(), dtype=value.dtype, device=shape.device)


@register("Shape")
def shape(ctx, inputs, attrs):
    x = inputs[0]
    dims = list(x.shape)[attrs.get("start", 0) : attrs.get("end")]
    return torch.tensor(dims, dtype=torch.int64, device=x.device)


@register("Cast")
def cast(ctx, inputs, attrs):
    if attrs["to"] not in DTYPES:
        raise ctx.error(f"casting to ONNX type {attrs['to']} is not supported")
    return inputs[0].to(DTYPES[attrs["to"]])


@register("CastLike")
def cast_like(ctx, inputs, attrs):
    return inputs[0].to(inputs[1].dtype)


@register("Gather")
def gather(ctx, inputs, attrs):
    x, indices = inputs
    axis = attrs.get("axis", 0) % x.dim()
    indices = torch.where(indices < 0, indices + x.shape[axis], indices)
    return x[(slice(None),) * axis + (indices,)]


@register("Flatten")
def flatten(ctx, inputs, attrs):
    x = inputs[0]
    axis = attrs.get("axis", 1)
    axis += x.dim() if axis < 0 else 0
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


@register("Reshape")
def reshape(ctx, inputs, attrs):
    x = inputs[0]
    target = ints_arg(inputs, 1, attrs, "shape")
    if not attrs.get("allowzero", 0):  # 0 copies the input's dim at that position
        target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
    return x.reshape(target)


@register("Transpose")
def transpose(ctx, inputs, attrs):
    x = inputs[0]
    return x.permute(attrs.get("perm", list(reversed(range(x.dim())))))


@register("Concat")
def concat(ctx, inputs, attrs):
    return torch.cat(inputs, dim=attrs["axis"])


@register("Split")
def split(ctx, inputs, attrs):
    x = inputs[0]
    axis = attrs.get("axis", 0)
    sizes = ints_arg(inputs, 1, attrs, "split")
    if not sizes:  # equal chunks, the last one smaller if it must be
        sizes = math.ceil(x.shape[axis] / attrs.get("num_outputs", ctx.num_outputs))
    return torch.split(x, sizes, dim=axis)


@register("Slice")
def slice_(ctx, inputs, attrs):
    x = inputs[0]
    if ctx.opset < 10:
        starts, ends, axes, steps = attrs["starts"], attrs["ends"], attrs.get("axes"), None
    else:
        starts, ends, axes, steps = (None if t is None else ints(t) for t in padded(inputs, 5)[1:5])
    axes = axes or range(len(starts))
    steps = steps or [1] * len(starts)
    index, flips = [slice(None)] * x.dim(), []
    for axis, start, end, step in zip(axes, starts, ends, steps):
        axis %= x.dim()
        picked = range(*slice(start, end, step).indices(x.shape[axis]))
        if step > 0:
            index[axis] = slice(picked.start, picked.stop, step)
        elif picked:  # torch has no negative steps: take ascending, then flip
            index[axis] = slice(picked[-1], picked[0] + 1, -step)
            flips.append(axis)
        else:
            index[axis] = slice(0, 0)
    y = x[tuple(index)]
    return y.flip(flips) if flips else y


@register("Squeeze")
def squeeze(ctx, inputs, attrs):
    x = inputs[0]
    axes = ints_arg(inputs, 1, attrs, "axes")
    return x.squeeze(tuple(axes)) if axes else x.squeeze()


@register("Unsqueeze")
def unsqueeze(ctx, inputs, attrs):
    x = inputs[0]
    axes = ints_arg(inputs, 1, attrs, "axes")
    rank = x.dim() + len(axes)
    for axis in sorted(a % rank for a in axes):
        x = x.unsqueeze(axis)
    return x


@register("Pad")
def pad(ctx, inputs, attrs):
    x = inputs[0]
    mode = attrs.get("mode", "constant")
    if mode not in _PAD_MODES:
        raise ctx.error(f"mode {mode!r} is not supported")
    if ctx.opset < 11:
        pads, value, axes = attrs["pads"], attrs.get("value", 0.0), None
    else:
        _, pads, value, axes = padded(inputs, 4)
        pads, value = ints(pads), 0.0 if value is None else value.item()
        axes = None if axes is None else ints(axes)
    rank = x.dim()
    axes = [a % rank for a in axes] if axes else list(range(rank))
    begin, end = [0] * rank, [0] * rank
    for i, axis in enumerate(axes):
        begin[axis], end[axis] = pads[i], pads[i + len(axes)]
    first = next((i for i in range(rank) if begin[i] or end[i]), rank)
    if first == rank:
        return x
    if mode != "constant":  # in these modes torch wants the pads of all spatial dims
        first = min(first, 2)
    flat = [p for i in reversed(range(first, rank)) for p in (begin[i], end[i])]
    return F.pad(x, flat, mode=_PAD_MODES[mode], value=value if mode == "constant" else None)


@register("Expand")
def expand(ctx, inputs, attrs):
    x, target = inputs
    return x.expand(torch.broadcast_shapes(x.shape, tuple(ints(target))))


@register("Tile")
def tile(ctx, inputs, attrs):
    return inputs[0].repeat(ints(inputs[1]))


@register("Range")
def range_(ctx, inputs, attrs):
    start, limit, delta = inputs
    return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype, device=start.device)
