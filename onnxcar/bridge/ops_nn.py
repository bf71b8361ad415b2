"""Handlers for convolution, pooling, normalization, dense and dropout ops."""

import math

import torch
import torch.nn.functional as F

from onnxcar.bridge.registry import ints, padded, register

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _geometry(attrs: dict, kernel: list[int]) -> tuple[list[int], list[int]]:
    """Strides and dilations, defaulting to 1 per spatial dim."""
    ones = [1] * len(kernel)
    return attrs.get("strides", ones), attrs.get("dilations", ones)


def _pads(ctx, attrs, x, kernel, strides, dilations) -> tuple[list[int], list[int]]:
    """Begin and end pads per spatial dim, resolving auto_pad against the input size."""
    n = len(kernel)
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad == "NOTSET":
        pads = attrs.get("pads", [0] * 2 * n)
        return pads[:n], pads[n:]
    if auto_pad == "VALID":
        return [0] * n, [0] * n
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        raise ctx.error(f"unknown auto_pad {auto_pad!r}")
    begin, end = [], []
    for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations):
        total = max(0, (math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size)
        begin.append(total // 2 if auto_pad == "SAME_UPPER" else total - total // 2)
        end.append(total - begin[-1])
    return begin, end


def _torch_pad(begin: list[int], end: list[int]) -> list[int]:
    """ONNX-style begin/end pads of the trailing dims in F.pad order (last dim first)."""
    return [p for b, e in zip(reversed(begin), reversed(end)) for p in (b, e)]


@register("Conv")
def conv(ctx, inputs, attrs):
    x, w, b = padded(inputs, 3)
    kernel = list(w.shape[2:])
    strides, dilations = _geometry(attrs, kernel)
    begin, end = _pads(ctx, attrs, x, kernel, strides, dilations)
    if begin != end:
        x, begin = F.pad(x, _torch_pad(begin, end)), [0] * len(kernel)
    return _CONV[len(kernel)](x, w, b, strides, begin, dilations, attrs.get("group", 1))


@register("ConvTranspose")
def conv_transpose(ctx, inputs, attrs):
    x, w, b = padded(inputs, 3)
    kernel = list(w.shape[2:])
    n = len(kernel)
    strides, dilations = _geometry(attrs, kernel)
    output_padding = attrs.get("output_padding", [0] * n)
    y = _CONV_T[n](x, w, b, strides, 0, output_padding, attrs.get("group", 1), dilations)
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if "output_shape" in attrs or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        target = attrs.get("output_shape", [size * s for size, s in zip(x.shape[2:], strides)])[-n:]
        totals = [full - want for full, want in zip(y.shape[2:], target)]
        small = [t // 2 for t in totals]
        big = [t - h for t, h in zip(totals, small)]
        begin, end = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
    elif auto_pad == "VALID":
        return y
    else:
        pads = attrs.get("pads", [0] * 2 * n)
        begin, end = pads[:n], pads[n:]
    return F.pad(y, [-p for p in _torch_pad(begin, end)]) if any(begin + end) else y


@register("BatchNormalization")
def batch_norm(ctx, inputs, attrs):
    x, scale, bias, mean, var = inputs[:5]
    if ctx.training and (mean.requires_grad or var.requires_grad):
        # The stats alias a trainable tensor (exporters dedupe equal initializers):
        # train on batch statistics but leave that tensor alone.
        mean, var = mean.detach().clone(), var.detach().clone()
    momentum = 1.0 - attrs.get("momentum", 0.9)
    return F.batch_norm(x, mean, var, scale, bias, ctx.training, momentum, attrs.get("epsilon", 1e-5))


@register("InstanceNormalization")
def instance_norm(ctx, inputs, attrs):
    x, scale, bias = inputs
    return F.instance_norm(x, weight=scale, bias=bias, eps=attrs.get("epsilon", 1e-5))


def _pool_setup(ctx, attrs, x):
    """Kernel, strides, dilations and begin/end pads of a pooling node."""
    kernel = attrs["kernel_shape"]
    strides, dilations = _geometry(attrs, kernel)
    return kernel, strides, dilations, *_pads(ctx, attrs, x, kernel, strides, dilations)


def _native_pads(kernel, dilations, begin, end) -> bool:
    """Whether torch's own pool padding can express these pads."""
    return begin == end and all(p <= ((k - 1) * d + 1) // 2 for p, k, d in zip(begin, kernel, dilations))


def _crop_ceil(y, x, kernel, strides, dilations, begin, end):
    """Drop ceil-mode windows that start in the end padding, as ORT and torch do."""
    for i, (size, k, s, d, b, e) in enumerate(zip(x.shape[2:], kernel, strides, dilations, begin, end)):
        count = math.ceil((size + b + e - (k - 1) * d - 1) / s) + 1
        if (count - 1) * s >= size + b:
            count -= 1
        y = y.narrow(2 + i, 0, count)
    return y


@register("MaxPool")
def max_pool(ctx, inputs, attrs):
    x = inputs[0]
    kernel, strides, dilations, begin, end = _pool_setup(ctx, attrs, x)
    ceil_mode = bool(attrs.get("ceil_mode", 0))
    pool = _MAX_POOL[len(kernel)]
    if ctx.num_outputs > 1:
        if not _native_pads(kernel, dilations, begin, end) or attrs.get("storage_order", 0):
            raise ctx.error("the Indices output needs pads torch can express and row-major storage order")
        y, within = pool(x, kernel, strides, begin, dilations, ceil_mode=ceil_mode, return_indices=True)
        planes = math.prod(x.shape[2:]) * torch.arange(x.shape[0] * x.shape[1], device=x.device)
        return y, within + planes.reshape(*x.shape[:2], *[1] * len(kernel))  # ONNX counts over the whole tensor
    if _native_pads(kernel, dilations, begin, end):
        return pool(x, kernel, strides, begin, dilations, ceil_mode=ceil_mode)
    padded_x = F.pad(x, _torch_pad(begin, end), value=-math.inf)
    y = pool(padded_x, kernel, strides, 0, dilations, ceil_mode=ceil_mode)
    return _crop_ceil(y, x, kernel, strides, dilations, begin, end) if ceil_mode else y


@register("MaxUnpool")
def max_unpool(ctx, inputs, attrs):
    x, indices, output_shape = padded(inputs, 3)
    kernel = attrs["kernel_shape"]
    strides = attrs.get("strides", [1] * len(kernel))
    pads = attrs.get("pads", [0] * 2 * len(kernel))
    if output_shape is not None:
        size = ints(output_shape)[2:]
    else:
        size = [(n - 1) * s - b - e + k for n, s, b, e, k in zip(x.shape[2:], strides, pads, pads[len(kernel):], kernel)]
    out = x.new_zeros(x.shape[0] * x.shape[1] * math.prod(size))
    return out.scatter(0, indices.reshape(-1), x.reshape(-1)).reshape(*x.shape[:2], *size)


@register("AveragePool")
def average_pool(ctx, inputs, attrs):
    x = inputs[0]
    kernel, strides, dilations, begin, end = _pool_setup(ctx, attrs, x)
    if any(d != 1 for d in dilations):
        raise ctx.error("dilations are not supported")
    ceil_mode = bool(attrs.get("ceil_mode", 0))
    include_pad = bool(attrs.get("count_include_pad", 0))
    pool = _AVG_POOL[len(kernel)]
    if _native_pads(kernel, dilations, begin, end):
        return pool(x, kernel, strides, begin, ceil_mode, include_pad)
    pads = _torch_pad(begin, end)
    y = pool(F.pad(x, pads), kernel, strides, 0, ceil_mode, True)
    if not include_pad:  # rescale by the share of each window that covers real input
        y = y / pool(F.pad(torch.ones_like(x[:1, :1]), pads), kernel, strides, 0, ceil_mode, True)
    return _crop_ceil(y, x, kernel, strides, dilations, begin, end) if ceil_mode else y


@register("GlobalAveragePool")
def global_average_pool(ctx, inputs, attrs):
    x = inputs[0]
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


@register("GlobalMaxPool")
def global_max_pool(ctx, inputs, attrs):
    x = inputs[0]
    return x.amax(dim=tuple(range(2, x.dim())), keepdim=True)


@register("LRN")
def lrn(ctx, inputs, attrs):
    x = inputs[0]
    size = attrs["size"]
    n, c = x.shape[:2]
    squares = (x * x).reshape(n, 1, c, -1)  # channels as a spatial dim, summed by a pool
    window = F.pad(squares, (0, 0, (size - 1) // 2, size // 2))
    sums = F.avg_pool2d(window, (size, 1), stride=1) * size
    denom = (attrs.get("bias", 1.0) + attrs.get("alpha", 1e-4) / size * sums) ** attrs.get("beta", 0.75)
    return x / denom.reshape(x.shape)


@register("Gemm")
def gemm(ctx, inputs, attrs):
    a, b, c = padded(inputs, 3)
    a = a.transpose(0, 1) if attrs.get("transA", 0) else a
    b = b.transpose(0, 1) if attrs.get("transB", 0) else b
    y = a @ b
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    if alpha != 1.0:
        y = y * alpha
    if c is not None:
        y = y + (c * beta if beta != 1.0 else c)
    return y


@register("MatMul")
def matmul(ctx, inputs, attrs):
    return torch.matmul(inputs[0], inputs[1])


@register("Dropout")
def dropout(ctx, inputs, attrs):
    # The module's train/eval mode decides, not the opset-12 training_mode input.
    x, ratio = padded(inputs, 2)[:2]
    p = float(ratio) if ratio is not None else attrs.get("ratio", 0.5)
    if ctx.num_outputs < 2:
        return F.dropout(x, p, ctx.training)
    if not ctx.training:
        return x, torch.ones_like(x, dtype=torch.bool)
    keep = torch.rand_like(x) >= p
    return x * keep / (1.0 - p), keep


def _softmax(fn):
    """A Softmax-like handler; before opset 13 the input is coerced to 2-D at ``axis``."""

    def handler(ctx, inputs, attrs):
        x = inputs[0]
        if ctx.opset >= 13:
            return fn(x, dim=attrs.get("axis", -1))
        axis = attrs.get("axis", 1) % max(x.dim(), 1)
        return fn(x.reshape(math.prod(x.shape[:axis]), -1), dim=1).reshape(x.shape)

    return handler


register("Softmax")(_softmax(F.softmax))
register("LogSoftmax")(_softmax(F.log_softmax))
