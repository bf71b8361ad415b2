"""Hand-built ONNX test models, one (tiny) model per op handler.

Every builder takes no arguments and returns a fresh ``onnx.ModelProto`` with

* one float32 graph input ``input`` of shape ``["batch", C, H, W]`` (C = 4,
  H = W = 8 unless the case says otherwise) — the batch dim is a dim_param,
* one graph output ``output`` (``conv_to_output`` has a second one,
  ``features``),
* opset 17 (``split_equal`` and ``reducemean_axes_input`` use opset 18, ``slice_opset9`` opset 9),
  IR version 8, no ``value_info`` (run shape inference yourself if needed),
* seeded random weights (``np.random.default_rng(seed)``), BN / InstanceNorm
  with non-trivial statistics (random mean, positive random var).

In :data:`CASES` every model has at least one prunable conv (named ``conv_a``
unless noted) whose output channels pass through the op under test and then
reach a consumer Conv / Gemm / MatMul; the graph output always comes from a
consumer (normally the ``head``: GlobalAveragePool -> Flatten -> Gemm).

:data:`BLOCKED_CASES` are models the channel analysis must refuse to prune
through (each builder's docstring says why).  :data:`NOT_RUNNABLE` lists the
case names that onnxruntime cannot execute (custom domain op).

The :class:`GraphBuilder` helper is also used by ``random_graphs.py``.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "GraphBuilder",
    "CASES",
    "BLOCKED_CASES",
    "NOT_RUNNABLE",
    "ALL_CASES",
    "OPSET",
    "IR_VERSION",
]

OPSET = 17
IR_VERSION = 8
NUM_CLASSES = 10


class GraphBuilder:
    """Tiny imperative helper around ``onnx.helper`` with seeded weights.

    All tensor arguments / return values are value *names* (str).
    """

    def __init__(self, seed: int = 0, *, in_channels: int = 4, hw: int | tuple[int, int] = 8,
                 opset: int = OPSET, name: str = "zoo"):
        self.rng = np.random.default_rng(seed)
        self.opset = opset
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.extra_opsets: dict[str, int] = {}
        self._counts: dict[str, int] = {}
        h, w = (hw, hw) if isinstance(hw, int) else hw
        self.in_channels = in_channels
        self.input_shape = ["batch", in_channels, h, w]
        self.input = "input"

    # ---------------------------------------------------------------- naming
    def uniq(self, prefix: str) -> str:
        k = self._counts.get(prefix, 0)
        self._counts[prefix] = k + 1
        return prefix if k == 0 else f"{prefix}_{k}"

    # ------------------------------------------------------------ primitives
    def const(self, value, prefix: str = "const", dtype=np.float32) -> str:
        name = self.uniq(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def i64(self, values, prefix: str = "shape") -> str:
        return self.const(np.asarray(values, dtype=np.int64), prefix, dtype=np.int64)

    def node(self, op: str, inputs: Sequence[str], *, name: str | None = None, n_out: int = 1,
             domain: str = "", **attrs):
        name = self.uniq(name or op.lower())
        outs = [f"{name}_out"] if n_out == 1 else [f"{name}_out{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=name, domain=domain, **attrs))
        return outs[0] if n_out == 1 else outs

    def normal(self, shape, std=1.0, mean=0.0):
        return (self.rng.standard_normal(shape) * std + mean).astype(np.float32)

    def uniform(self, shape, lo, hi):
        return self.rng.uniform(lo, hi, size=shape).astype(np.float32)

    # ---------------------------------------------------------------- layers
    def conv(self, x: str, cin: int, cout: int, k: int = 3, *, stride: int = 1,
             pad: int | None = None, group: int = 1, bias: bool = True, dilation: int = 1,
             name: str = "conv") -> str:
        name = self.uniq(name)
        pad = (k // 2) * dilation if pad is None else pad
        fan_in = (cin // group) * k * k
        w = self.const(self.normal((cout, cin // group, k, k), math.sqrt(2.0 / fan_in)), f"{name}.weight")
        ins = [x, w]
        if bias:
            ins.append(self.const(self.normal((cout,), 0.1), f"{name}.bias"))
        out = f"{name}_out"
        self.nodes.append(helper.make_node(
            "Conv", ins, [out], name=name, kernel_shape=[k, k], strides=[stride, stride],
            pads=[pad] * 4, group=group, dilations=[dilation, dilation]))
        return out

    def conv_transpose(self, x: str, cin: int, cout: int, k: int = 2, *, stride: int = 2,
                       bias: bool = True, group: int = 1, name: str = "convt") -> str:
        name = self.uniq(name)
        fan_in = (cin // group) * k * k / (stride * stride)
        w = self.const(self.normal((cin, cout // group, k, k), math.sqrt(2.0 / fan_in)), f"{name}.weight")
        ins = [x, w]
        if bias:
            ins.append(self.const(self.normal((cout,), 0.1), f"{name}.bias"))
        out = f"{name}_out"
        self.nodes.append(helper.make_node("ConvTranspose", ins, [out], name=name,
                                           kernel_shape=[k, k], strides=[stride, stride], group=group))
        return out

    def bn(self, x: str, c: int, name: str = "bn") -> str:
        name = self.uniq(name)
        scale = self.const(self.uniform((c,), 0.5, 1.5), f"{name}.weight")
        b = self.const(self.normal((c,), 0.1), f"{name}.bias")
        mean = self.const(self.normal((c,), 0.1), f"{name}.running_mean")
        var = self.const(self.uniform((c,), 0.5, 1.5), f"{name}.running_var")
        out = f"{name}_out"
        self.nodes.append(helper.make_node("BatchNormalization", [x, scale, b, mean, var], [out],
                                           name=name, epsilon=1e-5))
        return out

    def instancenorm(self, x: str, c: int, name: str = "inorm") -> str:
        name = self.uniq(name)
        scale = self.const(self.uniform((c,), 0.5, 1.5), f"{name}.weight")
        b = self.const(self.normal((c,), 0.1), f"{name}.bias")
        out = f"{name}_out"
        self.nodes.append(helper.make_node("InstanceNormalization", [x, scale, b], [out],
                                           name=name, epsilon=1e-5))
        return out

    def gemm(self, x: str, cin: int, cout: int, *, bias: bool = True, name: str = "fc",
             out: str | None = None) -> str:
        name = self.uniq(name)
        w = self.const(self.normal((cout, cin), math.sqrt(1.0 / cin)), f"{name}.weight")
        ins = [x, w]
        if bias:
            ins.append(self.const(self.normal((cout,), 0.1), f"{name}.bias"))
        out = out or f"{name}_out"
        self.nodes.append(helper.make_node("Gemm", ins, [out], name=name, transB=1))
        return out

    def act(self, x: str, kind: str | None) -> str:
        if kind is None or kind == "none":
            return x
        if kind == "Relu":
            return self.node("Relu", [x])
        if kind == "LeakyRelu":
            return self.node("LeakyRelu", [x], alpha=0.1)
        if kind == "Sigmoid":
            return self.node("Sigmoid", [x])
        raise ValueError(kind)

    def gap(self, x: str) -> str:
        return self.node("GlobalAveragePool", [x], name="gap")

    def flatten(self, x: str) -> str:
        return self.node("Flatten", [x], axis=1)

    def head(self, x: str, c: int, *, gap: bool = True, hw: int = 1) -> str:
        """[GAP ->] Flatten -> Gemm(c*hw -> 10) producing the graph output ``output``."""
        if gap:
            x = self.gap(x)
        x = self.flatten(x)
        return self.gemm(x, c * hw, NUM_CLASSES, name="classifier", out="output")

    # ----------------------------------------------------------------- model
    def build(self, outputs: Sequence[str] = ("output",), *, infer_output_shapes: bool = True
              ) -> onnx.ModelProto:
        inp = helper.make_tensor_value_info(self.input, TensorProto.FLOAT, self.input_shape)
        outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
        graph = helper.make_graph(self.nodes, self.name, [inp], outs, initializer=self.inits)
        opsets = [helper.make_opsetid("", self.opset)]
        opsets += [helper.make_opsetid(d, v) for d, v in self.extra_opsets.items()]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="onnxcar-zoo",
                                  ir_version=IR_VERSION)
        inferred = onnx.shape_inference.infer_shapes(model) if infer_output_shapes else model
        shapes = {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
        for o in model.graph.output:
            vi = shapes.get(o.name)
            if vi is not None and vi.type.tensor_type.HasField("shape"):
                o.type.CopyFrom(vi.type)
                dims = o.type.tensor_type.shape.dim
                for i, d in enumerate(dims):  # batch is always dim 0; drop unk__ names
                    if i == 0:
                        d.Clear()
                        d.dim_param = "batch"
                    elif d.HasField("dim_param") and d.dim_param.startswith("unk__"):
                        d.Clear()
            else:  # unknown op: every zoo model ends in a [batch, 10] classifier
                o.type.CopyFrom(helper.make_tensor_type_proto(TensorProto.FLOAT, ["batch", NUM_CLASSES]))
        return model


# =========================================================================
# Cases that must be prunable
# =========================================================================

C_IN, C_MID = 4, 8


def _unary_case(op: str, seed: int, **attrs) -> Callable[[], onnx.ModelProto]:
    def build() -> onnx.ModelProto:
        g = GraphBuilder(seed, name=op.lower())
        a = g.conv(g.input, C_IN, C_MID, name="conv_a")
        y = g.node(op, [a], **attrs)
        b = g.conv(y, C_MID, C_MID, name="conv_b")
        g.head(b, C_MID)
        return g.build()
    build.__doc__ = f"conv_a -> {op} -> conv_b -> head"
    return build


def conv_bias() -> onnx.ModelProto:
    """conv_a (with bias) -> Relu -> conv_b -> head"""
    g = GraphBuilder(1, name="conv_bias")
    a = g.conv(g.input, C_IN, C_MID, bias=True, name="conv_a")
    b = g.conv(g.node("Relu", [a]), C_MID, C_MID, name="conv_b")
    g.head(b, C_MID)
    return g.build()


def conv_nobias() -> onnx.ModelProto:
    """conv_a (no bias) -> Relu -> conv_b (no bias) -> head"""
    g = GraphBuilder(2, name="conv_nobias")
    a = g.conv(g.input, C_IN, C_MID, bias=False, name="conv_a")
    b = g.conv(g.node("Relu", [a]), C_MID, C_MID, bias=False, name="conv_b")
    g.head(b, C_MID)
    return g.build()


def conv_bn_relu() -> onnx.ModelProto:
    """conv_a (no bias) -> BatchNormalization -> Relu -> conv_b -> BN -> Relu -> head"""
    g = GraphBuilder(3, name="conv_bn_relu")
    a = g.conv(g.input, C_IN, C_MID, bias=False, name="conv_a")
    x = g.node("Relu", [g.bn(a, C_MID)])
    b = g.conv(x, C_MID, C_MID, bias=False, name="conv_b")
    x = g.node("Relu", [g.bn(b, C_MID)])
    g.head(x, C_MID)
    return g.build()


def instancenorm() -> onnx.ModelProto:
    """conv_a -> InstanceNormalization(per-channel scale/bias) -> Relu -> conv_b -> head"""
    g = GraphBuilder(4, name="instancenorm")
    a = g.conv(g.input, C_IN, C_MID, name="conv_a")
    x = g.node("Relu", [g.instancenorm(a, C_MID)])
    g.head(g.conv(x, C_MID, C_MID, name="conv_b"), C_MID)
    return g.build()


def prelu_per_channel() -> onnx.ModelProto:
    """conv_a -> PRelu(slope [C,1,1]) -> conv_b -> head"""
    g = GraphBuilder(5, name="prelu_per_channel")
    a = g.conv(g.input, C_IN, C_MID, name="conv_a")
    slope = g.const(g.uniform((C_MID, 1, 1), 0.05, 0.3), "prelu.slope")
    x = g.node("PRelu", [a, slope])
    g.head(g.conv(x, C_MID, C_MID, name="conv_b"), C_MID)
    return g.build()


def prelu_scalar() -> onnx.ModelProto:
    """conv_a -> PRelu(slope [1]) -> conv_b -> head"""
    g = GraphBuilder(6, name="prelu_scalar")
    a = g.conv(g.input, C_IN, C_MID, name="conv_a")
    slope = g.const(np.array([0.2], np.float32), "prelu.slope")
    x = g.node("PRelu", [a, slope])
    g.head(g.conv(x, C_MID, C_MID, name="conv_b"), C_MID)
    return g.build()


def clip() -> onnx.ModelProto:
    """conv_a -> Clip(min=0, max=6 as scalar inputs; ReLU6) -> conv_b -> head"""
    g = GraphBuilder(7, name="clip")
    a = g.conv(g.input, C_IN, C_MID, name="conv_a")
    x = g.node("Clip", [a, g.const(np.float32(0.0), "clip.min"), g.const(np.float32(6.0), "clip.max")])
    g.head(g.conv(x, C_MID, C_MID, name="conv_b"), C_MID)
    return g.build()


def gelu_erf_chain() -> onnx.ModelProto:
    """conv_a -> x*0.5*(1+Erf(x/sqrt2)) (Div, Erf, Add, Mul, Mul; scalar consts) -> conv_b -> head

    Node order follows torch's GELU decomposition: ``Mul(x, 1+erf) -> Mul(., 0.5)``.
    """
    g = GraphBuilder(8, name="gelu_erf_chain")
    a = g.conv(g.input, C_IN, C_MID, name="conv_a")
    d = g.node("Div", [a, g.const(np.float32(math.sqrt(2.0)), "gelu.sqrt2")])
    e = g.node("Erf", [d])
    p = g.node("Add", [e, g.const(np.float32(1.0), "gelu.one")])
    m = g.node("Mul", [a, p])
    x = g.node("Mul", [m, g.const(np.float32(0.5), "gelu.half")])
    g.head(g.conv(x, C_MID, C_MID, name="conv_b"), C_MID)
    return g.build()


def identity_dropout_cast() -> onnx.ModelProto:
    """conv_a -> Identity -> Dropout (inference) -> Cast(double) -> Cast(float) -> conv_b -> head"""
    g = GraphBuilder(9, name="identity_dropout_cast")
    a = g.conv(g.input, C_IN, C_MID, name="conv_a")
    x = g.node("Identity", [a])
    x = g.node("Dropout", [x, g.const(np.float32(0.3), "dropout.ratio")])
    x = g.node("Cast", [x], to=TensorProto.DOUBLE)
    x = g.node("Cast", [x], to=TensorProto.FLOAT)
    g.head(g.conv(x, C_MID, C_MID, name="conv_b"), C_MID)
    return g.build()


def _binary_const_case(op: str, seed: int, const_shape, *, positive: bool = False,
                       const_first: bool = False):
    def build() -> onnx.ModelProto:
        g = GraphBuilder(seed, name=f"{op.lower()}_const")
        a = g.conv(g.input, C_IN, C_MID, name="conv_a")
        shape = tuple(C_MID if s == "C" else s for s in const_shape)
        val = g.uniform(shape, 0.5, 1.5) if positive else g.normal(shape, 0.5)
        c = g.const(val, f"{op.lower()}.const")
        x = g.node(op, [c, a] if const_first else [a, c])
        g.head(g.conv(x, C_MID, C_MID, name="conv_b"), C_MID)
        return g.build()
    build.__doc__ = f"conv_a -> {op}(x, const{list(const_shape)}) -> conv_b -> head"
    return build


def residual_add_fanout() -> onnx.ModelProto:
    """conv_a -> Relu = r;  r fans out to conv_b and to Add(bn(conv_b'), r) -> Relu -> conv_c -> head

    Pruning conv_a forces the same channels out of conv_b2 (the other Add operand).
    """
    g = GraphBuilder(10, name="residual_add_fanout")
    r = g.node("Relu", [g.conv(g.input, C_IN, C_MID, name="conv_a")])
    y = g.node("Relu", [g.bn(g.conv(r, C_MID, C_MID, bias=False, name="conv_b1"), C_MID)])
    y = g.bn(g.conv(y, C_MID, C_MID, bias=False, name="conv_b2"), C_MID)
    s = g.node("Relu", [g.node("Add", [y, r])])
    g.head(g.conv(s, C_MID, C_MID, name="conv_c"), C_MID)
    return g.build()


def se_gate() -> onnx.ModelProto:
    """f = Relu(conv_a); s = Sigmoid(conv_expand(Relu(conv_reduce(GAP(f))))); Mul(f, s) -> conv_b -> head"""
    g = GraphBuilder(11, name="se_gate")
    f = g.node("Relu", [g.conv(g.input, C_IN, C_MID, name="conv_a")])
    s = g.gap(f)
    s = g.node("Relu", [g.conv(s, C_MID, 4, k=1, name="se.conv_reduce")])
    s = g.node("Sigmoid", [g.conv(s, 4, C_MID, k=1, name="se.conv_expand")])
    x = g.node("Mul", [f, s])
    g.head(g.conv(x, C_MID, C_MID, name="conv_b"), C_MID)
    return g.build()


def maxpool() -> onnx.ModelProto:
    """conv_a -> MaxPool(2, stride 2) -> conv_b -> head"""
    g = GraphBuilder(12, name="maxpool")
    a = g.conv(g.input, C_IN, C_MID, name="conv_a")
    x = g.node("MaxPool", [a], kernel_shape=[2, 2], strides=[2, 2])
    g.head(g.conv(x, C_MID, C_MID, name="conv_b"), C_MID)
    return g.build()


def averagepool() -> onnx.ModelProto:
    """conv_a -> AveragePool(3, stride 1, pad 1, count_include_pad=0) -> conv_b -> head"""
    g = GraphBuilder(13, name="averagepool")
    a = g.conv(g.input, C_IN, C_MID, name="conv_a")
    x = g.node("AveragePool", [a], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
               count_include_pad=0)
    g.head(g.conv(x, C_MID, C_MID, name="conv_b"), C_MID)
    return g.build()


def _global_pool_case(op: str, seed: int):
    def build() -> onnx.ModelProto:
        g = GraphBuilder(seed, name=op.lower())
        a = g.node("Relu", [g.conv(g.input, C_IN, C_MID, name="conv_a")])
        x = g.node(op, [a])
        b = g.conv(x, C_MID, C_MID, k=1, name="conv_b")
        g.head(b, C_MID, gap=False)
        return g.build()
    build.__doc__ = f"conv_a -> Relu -> {op} -> conv_b (1x1) -> Flatten -> Gemm"
    return build


def reducemean_spatial() -> onnx.ModelProto:
    """conv_a -> ReduceMean(axes=[2,3] as ATTRIBUTE, keepdims=1; opset 17) -> conv_b 1x1 -> Flatten -> Gemm"""
    g = GraphBuilder(16, name="reducemean_spatial")
    a = g.node("Relu", [g.conv(g.input, C_IN, C_MID, name="conv_a")])
    x = g.node("ReduceMean", [a], axes=[2, 3], keepdims=1)
    g.head(g.conv(x, C_MID, C_MID, k=1, name="conv_b"), C_MID, gap=False)
    return g.build()


def reducemean_axes_input() -> onnx.ModelProto:
    """OPSET 18: conv_a -> ReduceMean(axes=[-2,-1] as INPUT, keepdims=1) -> conv_b 1x1 -> Flatten -> Gemm

    (This is the form the dynamo exporter emits.)
    """
    g = GraphBuilder(17, name="reducemean_axes_input", opset=18)
    a = g.node("Relu", [g.conv(g.input, C_IN, C_MID, name="conv_a")])
    x = g.node("ReduceMean", [a, g.i64([-2, -1], "reducemean.axes")], keepdims=1)
    g.head(g.conv(x, C_MID, C_MID, k=1, name="conv_b"), C_MID, gap=False)
    return g.build()


def pad() -> onnx.ModelProto:
    """conv_a -> Pad(spatial only, pads input [0,0,1,1,0,0,1,1], constant 0) -> conv_b (pad 0) -> head"""
    g = GraphBuilder(18, name="pad")
    a = g.conv(g.input, C_IN, C_MID, name="conv_a")
    x = g.node("Pad", [a, g.i64([0, 0, 1, 1, 0, 0, 1, 1], "pad.pads"),
                       g.const(np.float32(0.0), "pad.value")], mode="constant")
    g.head(g.conv(x, C_MID, C_MID, pad=0, name="conv_b"), C_MID)
    return g.build()


def resize() -> onnx.ModelProto:
    """conv_a -> Resize(scales [1,1,2,2], nearest; roi empty) -> conv_b (stride 2) -> head"""
    g = GraphBuilder(19, name="resize")
    a = g.conv(g.input, C_IN, C_MID, name="conv_a")
    x = g.node("Resize", [a, "", g.const(np.array([1, 1, 2, 2], np.float32), "resize.scales")],
               mode="nearest")
    g.head(g.conv(x, C_MID, C_MID, stride=2, name="conv_b"), C_MID)
    return g.build()


def concat_channels() -> onnx.ModelProto:
    """Concat(conv_a[6], conv_b[6], axis=1) -> Relu -> conv_c (12 -> 8) -> head"""
    g = GraphBuilder(20, name="concat_channels")
    a = g.conv(g.input, C_IN, 6, name="conv_a")
    b = g.conv(g.input, C_IN, 6, k=1, name="conv_b")
    x = g.node("Relu", [g.node("Concat", [a, b], axis=1)])
    g.head(g.conv(x, 12, C_MID, name="conv_c"), C_MID)
    return g.build()


def concat_of_concat() -> onnx.ModelProto:
    """Concat(Concat(conv_a[4], conv_b[6]), conv_c[5]) -> conv_d (15 -> 8) -> head"""
    g = GraphBuilder(21, name="concat_of_concat")
    a = g.conv(g.input, C_IN, 4, name="conv_a")
    b = g.conv(g.input, C_IN, 6, name="conv_b")
    c = g.conv(g.input, C_IN, 5, k=1, name="conv_c")
    x = g.node("Concat", [g.node("Concat", [a, b], axis=1), c], axis=1)
    g.head(g.conv(x, 15, C_MID, name="conv_d"), C_MID)
    return g.build()


def split_channels() -> onnx.ModelProto:
    """conv_a (10) -> Split(axis=1, split input [4, 6]; opset 13+) -> conv_b(4->8), conv_c(6->8) -> Add -> head"""
    g = GraphBuilder(22, name="split_channels")
    a = g.node("Relu", [g.conv(g.input, C_IN, 10, name="conv_a")])
    p, q = g.node("Split", [a, g.i64([4, 6], "split.sizes")], n_out=2, axis=1)
    b = g.conv(p, 4, C_MID, name="conv_b")
    c = g.conv(q, 6, C_MID, name="conv_c")
    g.head(g.node("Add", [b, c]), C_MID)
    return g.build()


def split_equal() -> onnx.ModelProto:
    """OPSET 18: conv_a (8) -> Split(axis=1, num_outputs=2, no sizes) -> conv_b(4->8), conv_c(4->8) -> Concat -> head"""
    g = GraphBuilder(23, name="split_equal", opset=18)
    a = g.node("Relu", [g.conv(g.input, C_IN, C_MID, name="conv_a")])
    p, q = g.node("Split", [a], n_out=2, axis=1, num_outputs=2)
    b = g.conv(p, 4, C_MID, name="conv_b")
    c = g.conv(q, 4, C_MID, name="conv_c")
    g.head(g.node("Concat", [b, c], axis=1), 2 * C_MID)
    return g.build()


def slice_channels() -> onnx.ModelProto:
    """conv_a (12) -> Slice(axes=[1], starts=[2], ends=[10]) -> conv_b (8 -> 8) -> head

    Channels 0,1,10,11 of conv_a are dead.
    """
    g = GraphBuilder(24, name="slice_channels")
    a = g.conv(g.input, C_IN, 12, name="conv_a")
    x = g.node("Slice", [a, g.i64([2], "slice.starts"), g.i64([10], "slice.ends"),
                         g.i64([1], "slice.axes"), g.i64([1], "slice.steps")])
    g.head(g.conv(x, 8, C_MID, name="conv_b"), C_MID)
    return g.build()


def flatten_gemm() -> onnx.ModelProto:
    """conv_a (8) -> Relu -> MaxPool 2 (-> 8x4x4) -> Flatten -> Gemm(128 -> 10) = output"""
    g = GraphBuilder(25, name="flatten_gemm")
    a = g.node("Relu", [g.conv(g.input, C_IN, C_MID, name="conv_a")])
    x = g.node("MaxPool", [a], kernel_shape=[2, 2], strides=[2, 2])
    g.head(x, C_MID, gap=False, hw=16)
    return g.build()


def reshape_gemm() -> onnx.ModelProto:
    """conv_a (8) -> MaxPool 2 -> Reshape(const shape [0, -1]) -> Gemm(128 -> 10) = output"""
    g = GraphBuilder(26, name="reshape_gemm")
    a = g.node("Relu", [g.conv(g.input, C_IN, C_MID, name="conv_a")])
    x = g.node("MaxPool", [a], kernel_shape=[2, 2], strides=[2, 2])
    x = g.node("Reshape", [x, g.i64([0, -1], "reshape.shape")])
    g.gemm(x, C_MID * 16, NUM_CLASSES, name="classifier", out="output")
    return g.build()


def reshape_gemm_explicit() -> onnx.ModelProto:
    """conv_a (8) -> MaxPool 2 -> Reshape(const shape [-1, 128] = C*H*W baked in) -> Gemm = output

    The pruner must rewrite the 128 in the shape constant.
    """
    g = GraphBuilder(27, name="reshape_gemm_explicit")
    a = g.node("Relu", [g.conv(g.input, C_IN, C_MID, name="conv_a")])
    x = g.node("MaxPool", [a], kernel_shape=[2, 2], strides=[2, 2])
    x = g.node("Reshape", [x, g.i64([-1, C_MID * 16], "reshape.shape")])
    g.gemm(x, C_MID * 16, NUM_CLASSES, name="classifier", out="output")
    return g.build()


def transpose_nhwc() -> onnx.ModelProto:
    """conv_a -> Transpose(0,2,3,1) -> Relu -> Transpose(0,3,1,2) -> conv_b -> head"""
    g = GraphBuilder(28, name="transpose_nhwc")
    a = g.conv(g.input, C_IN, C_MID, name="conv_a")
    x = g.node("Transpose", [a], perm=[0, 2, 3, 1])
    x = g.node("Relu", [x])
    x = g.node("Transpose", [x], perm=[0, 3, 1, 2])
    g.head(g.conv(x, C_MID, C_MID, name="conv_b"), C_MID)
    return g.build()


def transpose_nhwc_matmul() -> onnx.ModelProto:
    """conv_a -> Transpose(0,2,3,1) -> MatMul(W [C, 6]) -> Add(bias [6]) -> Transpose(0,3,1,2) -> head

    The MatMul over the last (channel) axis is the consumer: pruning conv_a removes rows of W.
    """
    g = GraphBuilder(29, name="transpose_nhwc_matmul")
    a = g.node("Relu", [g.conv(g.input, C_IN, C_MID, name="conv_a")])
    x = g.node("Transpose", [a], perm=[0, 2, 3, 1])
    x = g.node("MatMul", [x, g.const(g.normal((C_MID, 6), math.sqrt(1 / C_MID)), "pointwise.weight")])
    x = g.node("Add", [x, g.const(g.normal((6,), 0.1), "pointwise.bias")])
    x = g.node("Transpose", [x], perm=[0, 3, 1, 2])
    g.head(x, 6)
    return g.build()


def squeeze_unsqueeze() -> onnx.ModelProto:
    """conv_a -> GAP -> Squeeze([2,3]) -> Unsqueeze([2,3]) -> conv_b 1x1 -> Squeeze([2,3]) -> Gemm = output

    (opset 13+ form: axes are int64 inputs)
    """
    g = GraphBuilder(30, name="squeeze_unsqueeze")
    a = g.node("Relu", [g.conv(g.input, C_IN, C_MID, name="conv_a")])
    x = g.node("Squeeze", [g.gap(a), g.i64([2, 3], "squeeze.axes")])
    x = g.node("Unsqueeze", [x, g.i64([2, 3], "unsqueeze.axes")])
    x = g.node("Relu", [g.conv(x, C_MID, C_MID, k=1, name="conv_b")])
    x = g.node("Squeeze", [x, g.i64([2, 3], "squeeze.axes")])
    g.gemm(x, C_MID, NUM_CLASSES, name="classifier", out="output")
    return g.build()


def depthwise_conv() -> onnx.ModelProto:
    """conv_a (8) -> BN -> Relu -> depthwise (group=8, 8->8) -> BN -> Relu -> conv_b 1x1 -> head

    The depthwise conv is not a filter-pruning root on its own: its channels follow conv_a.
    """
    g = GraphBuilder(31, name="depthwise_conv")
    a = g.node("Relu", [g.bn(g.conv(g.input, C_IN, C_MID, bias=False, name="conv_a"), C_MID)])
    d = g.conv(a, C_MID, C_MID, group=C_MID, bias=False, name="conv_dw")
    d = g.node("Relu", [g.bn(d, C_MID)])
    g.head(g.conv(d, C_MID, C_MID, k=1, name="conv_b"), C_MID)
    return g.build()


def depthwise_multiplier() -> onnx.ModelProto:
    """conv_a (6) -> Relu -> conv_dw (group=6, 6 -> 12, multiplier 2) -> Relu -> conv_b (12 -> 8) -> head

    Removing conv_a channel i removes conv_dw output channels 2i and 2i+1.
    """
    g = GraphBuilder(32, name="depthwise_multiplier")
    a = g.node("Relu", [g.conv(g.input, C_IN, 6, name="conv_a")])
    d = g.node("Relu", [g.conv(a, 6, 12, group=6, name="conv_dw")])
    g.head(g.conv(d, 12, C_MID, k=1, name="conv_b"), C_MID)
    return g.build()


def grouped_conv() -> onnx.ModelProto:
    """conv_a (8) -> Relu -> conv_g (group=2, 8 -> 8) -> Relu -> conv_b -> head"""
    g = GraphBuilder(33, name="grouped_conv")
    a = g.node("Relu", [g.conv(g.input, C_IN, C_MID, name="conv_a")])
    x = g.node("Relu", [g.conv(a, C_MID, C_MID, group=2, name="conv_g")])
    g.head(g.conv(x, C_MID, C_MID, k=1, name="conv_b"), C_MID)
    return g.build()


def convtranspose() -> onnx.ModelProto:
    """conv_a (8) -> Relu -> ConvTranspose (8 -> 6, k2 s2; weight [Cin, Cout, k, k]) -> Relu -> conv_b (6 -> 8, s2) -> head"""
    g = GraphBuilder(34, name="convtranspose")
    a = g.node("Relu", [g.conv(g.input, C_IN, C_MID, name="conv_a")])
    x = g.node("Relu", [g.conv_transpose(a, C_MID, 6, name="convt")])
    g.head(g.conv(x, 6, C_MID, stride=2, name="conv_b"), C_MID)
    return g.build()


def matmul_fc() -> onnx.ModelProto:
    """conv_a (8) -> Relu -> MaxPool 2 -> Flatten -> MatMul(W [128, 10]) -> Add(bias [10]) = output"""
    g = GraphBuilder(35, name="matmul_fc")
    a = g.node("Relu", [g.conv(g.input, C_IN, C_MID, name="conv_a")])
    x = g.flatten(g.node("MaxPool", [a], kernel_shape=[2, 2], strides=[2, 2]))
    w = g.const(g.normal((C_MID * 16, NUM_CLASSES), math.sqrt(1 / (C_MID * 16))), "fc.weight")
    x = g.node("MatMul", [x, w])
    b = g.const(g.normal((NUM_CLASSES,), 0.1), "fc.bias")
    g.nodes.append(helper.make_node("Add", [x, b], ["output"], name="fc_add"))
    return g.build()


def gemm_hidden() -> onnx.ModelProto:
    """conv_a (8) -> Relu -> GAP -> Flatten -> Gemm fc1 (8 -> 16) -> Relu -> Gemm classifier (16 -> 10)

    fc1's 16 outputs are prunable too (consumer: classifier).
    """
    g = GraphBuilder(36, name="gemm_hidden")
    a = g.node("Relu", [g.conv(g.input, C_IN, C_MID, name="conv_a")])
    x = g.flatten(g.gap(a))
    x = g.node("Relu", [g.gemm(x, C_MID, 16, name="fc1")])
    g.gemm(x, 16, NUM_CLASSES, name="classifier", out="output")
    return g.build()


def lrn() -> onnx.ModelProto:
    """conv_a -> Relu -> LRN(size=3, alpha=0.5) -> conv_b -> head.

    LRN divides each channel by the energy of its neighbours; removing conv_a channels
    rewrites it with an explicit window over the kept ones (alpha is large so that a wrong
    window shows).
    """
    g = GraphBuilder(60, name="lrn")
    a = g.node("Relu", [g.conv(g.input, C_IN, C_MID, name="conv_a")])
    x = g.node("LRN", [a], size=3, alpha=0.5, beta=0.75, bias=1.0)
    g.head(g.conv(x, C_MID, C_MID, name="conv_b"), C_MID)
    return g.build()


def channel_shuffle() -> onnx.ModelProto:
    """conv_a (8) -> Reshape [0,2,4,8,8] -> Transpose(0,2,1,3,4) -> Reshape [0,8,8,8] -> conv_b -> head.

    The shuffle interleaves two groups of four channels; removal takes the same channel from
    both groups.
    """
    g = GraphBuilder(61, name="channel_shuffle")
    a = g.node("Relu", [g.conv(g.input, C_IN, C_MID, name="conv_a")])
    x = g.node("Reshape", [a, g.i64([0, 2, C_MID // 2, 8, 8], "shuffle.shape5d")])
    x = g.node("Transpose", [x], perm=[0, 2, 1, 3, 4])
    x = g.node("Reshape", [x, g.i64([0, C_MID, 8, 8], "shuffle.shape4d")])
    g.head(g.conv(x, C_MID, C_MID, name="conv_b"), C_MID)
    return g.build()


def slice_opset9() -> onnx.ModelProto:
    """Opset 9: conv_a (12) -> Slice(starts=[2], ends=[10], axes=[1] as attributes) -> conv_b -> head"""
    g = GraphBuilder(65, name="slice_opset9", opset=9)
    a = g.conv(g.input, C_IN, 12, name="conv_a")
    x = g.node("Slice", [a], starts=[2], ends=[10], axes=[1])
    g.head(g.conv(x, 8, C_MID, name="conv_b"), C_MID)
    return g.build()


def maxpool_unpool() -> onnx.ModelProto:
    """SegNet-style: conv_a -> MaxPool(2) with Indices -> conv_b -> MaxUnpool(conv_b, Indices) -> conv_c -> head.

    The indices count positions across channels: conv_b's channels are coupled with conv_a's.
    """
    g = GraphBuilder(66, name="maxpool_unpool")
    a = g.node("Relu", [g.conv(g.input, C_IN, C_MID, name="conv_a")])
    pooled, indices = g.node("MaxPool", [a], n_out=2, kernel_shape=[2, 2], strides=[2, 2])
    b = g.node("Relu", [g.conv(pooled, C_MID, C_MID, name="conv_b")])
    x = g.node("MaxUnpool", [b, indices], kernel_shape=[2, 2], strides=[2, 2])
    g.head(g.conv(x, C_MID, C_MID, name="conv_c"), C_MID)
    return g.build()


def _convtranspose_case(seed: int, group: int, cout: int):
    def build() -> onnx.ModelProto:
        g = GraphBuilder(seed, name=f"convtranspose_group{group}")
        a = g.node("Relu", [g.conv(g.input, C_IN, C_MID, name="conv_a")])
        x = g.node("Relu", [g.conv_transpose(a, C_MID, cout, group=group, name="convt")])
        g.head(g.conv(x, cout, C_MID, stride=2, name="conv_b"), C_MID)
        return g.build()

    build.__doc__ = (f"conv_a (8) -> ConvTranspose(group={group}, 8 -> {cout}, k2 s2) -> conv_b (s2) -> head"
                     + ("; depthwise: channels pass through" if group == C_MID else ""))
    return build


CASES: dict[str, Callable[[], onnx.ModelProto]] = {
    "conv_bias": conv_bias,
    "conv_nobias": conv_nobias,
    "conv_bn_relu": conv_bn_relu,
    "instancenorm": instancenorm,
    "leakyrelu": _unary_case("LeakyRelu", 40, alpha=0.1),
    "prelu_per_channel": prelu_per_channel,
    "prelu_scalar": prelu_scalar,
    "clip": clip,
    "sigmoid": _unary_case("Sigmoid", 41),
    "hardsigmoid": _unary_case("HardSigmoid", 42, alpha=1.0 / 6.0, beta=0.5),
    "hardswish": _unary_case("HardSwish", 43),
    "tanh": _unary_case("Tanh", 44),
    "elu": _unary_case("Elu", 45, alpha=1.0),
    "selu": _unary_case("Selu", 46),
    "softplus": _unary_case("Softplus", 47),
    "gelu_erf_chain": gelu_erf_chain,
    "identity_dropout_cast": identity_dropout_cast,
    "add_per_channel_const": _binary_const_case("Add", 50, ("C", 1, 1)),
    "mul_per_channel_const": _binary_const_case("Mul", 51, (1, "C", 1, 1)),
    "sub_scalar_const": _binary_const_case("Sub", 52, ()),
    "div_per_channel_const": _binary_const_case("Div", 53, ("C", 1, 1), positive=True),
    "residual_add_fanout": residual_add_fanout,
    "se_gate": se_gate,
    "maxpool": maxpool,
    "averagepool": averagepool,
    "globalavgpool": _global_pool_case("GlobalAveragePool", 14),
    "globalmaxpool": _global_pool_case("GlobalMaxPool", 15),
    "reducemean_spatial": reducemean_spatial,
    "reducemean_axes_input": reducemean_axes_input,
    "pad": pad,
    "resize": resize,
    "concat_channels": concat_channels,
    "concat_of_concat": concat_of_concat,
    "split_channels": split_channels,
    "split_equal": split_equal,
    "slice_channels": slice_channels,
    "flatten_gemm": flatten_gemm,
    "reshape_gemm": reshape_gemm,
    "reshape_gemm_explicit": reshape_gemm_explicit,
    "transpose_nhwc": transpose_nhwc,
    "transpose_nhwc_matmul": transpose_nhwc_matmul,
    "squeeze_unsqueeze": squeeze_unsqueeze,
    "depthwise_conv": depthwise_conv,
    "depthwise_multiplier": depthwise_multiplier,
    "grouped_conv": grouped_conv,
    "convtranspose": convtranspose,
    "matmul_fc": matmul_fc,
    "gemm_hidden": gemm_hidden,
    "lrn": lrn,
    "channel_shuffle": channel_shuffle,
    "slice_opset9": slice_opset9,
    "maxpool_unpool": maxpool_unpool,
    "convtranspose_grouped": _convtranspose_case(67, 2, 6),
    "convtranspose_depthwise": _convtranspose_case(68, C_MID, 2 * C_MID),
}


# =========================================================================
# Cases the analysis must BLOCK (conv_a must not be pruned)
# =========================================================================

def softmax_channels() -> onnx.ModelProto:
    """conv_a -> Softmax(axis=1) -> conv_b -> head.

    BLOCKED: softmax over the channel axis mixes all channels (the
    normaliser sums over them).
    """
    g = GraphBuilder(62, name="softmax_channels")
    a = g.conv(g.input, C_IN, C_MID, name="conv_a")
    x = g.node("Softmax", [a], axis=1)
    g.head(g.conv(x, C_MID, C_MID, name="conv_b"), C_MID)
    return g.build()


def custom_domain_op() -> onnx.ModelProto:
    """conv_a -> com.acme::Frobnicate -> conv_b -> head.

    BLOCKED: unknown op, its channel semantics are unknown.
    NOT RUNNABLE: onnxruntime has no kernel for domain ``com.acme``.
    """
    g = GraphBuilder(63, name="custom_domain_op")
    g.extra_opsets["com.acme"] = 1
    a = g.conv(g.input, C_IN, C_MID, name="conv_a")
    x = g.node("Frobnicate", [a], domain="com.acme", strength=0.5)
    g.head(g.conv(x, C_MID, C_MID, name="conv_b"), C_MID)
    return g.build(infer_output_shapes=False)


def conv_to_output() -> onnx.ModelProto:
    """conv_a's raw output is ALSO graph output ``features`` (second output); conv_a -> Relu -> conv_b -> head = ``output``.

    BLOCKED: pruning conv_a would change the shape of a model output.
    """
    g = GraphBuilder(64, name="conv_to_output")
    a = g.conv(g.input, C_IN, C_MID, name="conv_a")
    # rename conv_a's output to "features" so it is the graph output directly
    g.nodes[-1].output[0] = "features"
    a = "features"
    g.head(g.conv(g.node("Relu", [a]), C_MID, C_MID, name="conv_b"), C_MID)
    return g.build(outputs=("output", "features"))


def maxout() -> onnx.ModelProto:
    """conv_a (8) -> Reshape [0,4,2,8,8] -> ReduceMax(axis 2) -> conv_b (4 -> 8) -> head.

    BLOCKED: the reduction reads the channels while they are split over two axes; onnxcar
    maps split channels only through Reshape, Transpose and one-input elementwise ops.
    """
    g = GraphBuilder(69, name="maxout")
    a = g.conv(g.input, C_IN, C_MID, name="conv_a")
    x = g.node("Reshape", [a, g.i64([0, C_MID // 2, 2, 8, 8], "maxout.shape")])
    x = g.node("ReduceMax", [x], axes=[2], keepdims=0)
    g.head(g.conv(x, C_MID // 2, C_MID, name="conv_b"), C_MID)
    return g.build()


BLOCKED_CASES: dict[str, Callable[[], onnx.ModelProto]] = {
    "maxout": maxout,                        # a reduction over channels split by a Reshape
    "softmax_channels": softmax_channels,    # Softmax over axis 1 mixes all channels
    "custom_domain_op": custom_domain_op,    # unknown op in domain com.acme on the channel path
    "conv_to_output": conv_to_output,        # conv output is a graph output (shape is public)
}

#: cases onnxruntime cannot run (only check_model applies)
NOT_RUNNABLE: set[str] = {"custom_domain_op"}

ALL_CASES: dict[str, Callable[[], onnx.ModelProto]] = {**CASES, **BLOCKED_CASES}
