"""Handlers for elementwise math, activations, comparisons and reductions."""

import functools

import torch
import torch.nn.functional as F

from onnxcar.bridge.registry import ints_arg, padded, register

_UNARY = {
    "Abs": torch.abs,
    "Ceil": torch.ceil,
    "Erf": torch.erf,
    "Exp": torch.exp,
    "Floor": torch.floor,
    "Identity": lambda x: x,
    "Log": torch.log,
    "Neg": torch.neg,
    "Not": torch.logical_not,
    "Reciprocal": torch.reciprocal,
    "Relu": F.relu,
    "Sigmoid": torch.sigmoid,
    "Softplus": F.softplus,
    "Sqrt": torch.sqrt,
    "Tanh": torch.tanh,
}
_BINARY = {
    "Add": torch.add,
    "And": torch.logical_and,
    "Equal": torch.eq,
    "Greater": torch.gt,
    "GreaterOrEqual": torch.ge,
    "Less": torch.lt,
    "LessOrEqual": torch.le,
    "Mul": torch.mul,
    "Or": torch.logical_or,
    "Sub": torch.sub,
}
_VARIADIC = {"Max": torch.maximum, "Min": torch.minimum, "Sum": torch.add}
_REDUCE = {"ReduceMax": torch.amax, "ReduceMean": torch.mean, "ReduceMin": torch.amin, "ReduceSum": torch.sum}


def _unary(fn):
    return lambda ctx, inputs, attrs: fn(inputs[0])


def _binary(fn):
    return lambda ctx, inputs, attrs: fn(inputs[0], inputs[1])


def _variadic(fn):
    return lambda ctx, inputs, attrs: functools.reduce(fn, inputs)


def _reduce(fn):
    """A Reduce* handler; axes come as an attribute or (newer opsets) an input."""

    def handler(ctx, inputs, attrs):
        x = inputs[0]
        axes = ints_arg(inputs, 1, attrs, "axes")
        if not axes:
            if attrs.get("noop_with_empty_axes", 0):
                return x
            axes = list(range(x.dim()))
        return fn(x, dim=axes, keepdim=bool(attrs.get("keepdims", 1)))

    return handler


for _table, _make in ((_UNARY, _unary), (_BINARY, _binary), (_VARIADIC, _variadic), (_REDUCE, _reduce)):
    for _op, _fn in _table.items():
        register(_op)(_make(_fn))


@register("Div")
def div(ctx, inputs, attrs):
    a, b = inputs
    integral = not (a.is_floating_point() or b.is_floating_point())
    return torch.div(a, b, rounding_mode="trunc" if integral else None)


@register("Pow")
def pow_(ctx, inputs, attrs):
    return torch.pow(inputs[0], inputs[1]).to(inputs[0].dtype)


@register("Mean")
def mean(ctx, inputs, attrs):
    return functools.reduce(torch.add, inputs) / len(inputs)


@register("Where")
def where(ctx, inputs, attrs):
    return torch.where(*inputs)


@register("LeakyRelu")
def leaky_relu(ctx, inputs, attrs):
    return F.leaky_relu(inputs[0], attrs.get("alpha", 0.01))


@register("PRelu")
def prelu(ctx, inputs, attrs):
    x, slope = inputs
    return torch.where(x >= 0, x, x * slope)


@register("Elu")
def elu(ctx, inputs, attrs):
    return F.elu(inputs[0], attrs.get("alpha", 1.0))


@register("Selu")
def selu(ctx, inputs, attrs):
    alpha, gamma = attrs.get("alpha", 1.67326319217681884765625), attrs.get("gamma", 1.05070102214813232421875)
    return gamma * F.elu(inputs[0], alpha)


@register("HardSigmoid")
def hard_sigmoid(ctx, inputs, attrs):
    return torch.clamp(inputs[0] * attrs.get("alpha", 0.2) + attrs.get("beta", 0.5), 0.0, 1.0)


@register("HardSwish")
def hard_swish(ctx, inputs, attrs):
    return F.hardswish(inputs[0])


@register("Gelu")
def gelu(ctx, inputs, attrs):
    return F.gelu(inputs[0], approximate=attrs.get("approximate", "none"))


@register("Clip")
def clip(ctx, inputs, attrs):
    x, low, high = padded(inputs, 3)
    if ctx.opset < 11:
        low, high = attrs.get("min"), attrs.get("max")
    if low is None and high is None:
        return x
    return torch.clamp(x, low, high)
