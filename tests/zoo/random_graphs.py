"""Hypothesis strategy drawing random small CNN graphs.

``cnn_graphs(max_blocks=8, max_channels=12)`` -> ``SearchStrategy[onnx.ModelProto]``

Each graph: input ``["batch", C0, H, H]`` (C0 in 1..4, H in {8, 12}), a stem
Conv, then 1..max_blocks blocks drawn from

* ``conv``      Conv (k 1|3, +/- bias) [+ BN] + act (Relu | LeakyRelu | Sigmoid | none)
* ``residual``  conv-BN-act -> conv-BN, Add with the block input (fan-out), act
* ``concat``    two parallel convs from the same input, Concat on channels
* ``split``     Split on channels into 2 pieces, a conv on each, Concat or Add
* ``depthwise`` depthwise conv (group == C; channel multiplier 1 or 2) [+ BN] + act
* ``se``        squeeze-excitation gate: GAP -> conv reduce -> Relu -> conv expand -> Sigmoid -> Mul
* ``maxpool``   MaxPool 2x2 stride 2 (only while H >= 4)
* ``lrn``       LRN (size 1, 3 or 5: onnxruntime runs odd sizes; alpha up to 1, so a wrong window shows)
* ``shuffle``   channel shuffle: Reshape [0, g, C/g, H, W] -> Transpose(0,2,1,3,4) ->
                Reshape [0, C, H, W], g a divisor of C (2..C/2); skipped when C is prime

and a head: GAP -> Flatten -> Gemm, or Flatten -> Gemm directly (output ``output``,
``[batch, classes]``). Opset 17. All weights come from ``np.random.default_rng(seed)``
with ``seed`` drawn by hypothesis, so a model is a deterministic function of the draw.
Channels never exceed ``max_channels``.
"""

from __future__ import annotations

import onnx
from hypothesis import strategies as st

from .handbuilt import GraphBuilder

__all__ = ["cnn_graphs", "BLOCK_KINDS", "ACTIVATIONS"]

BLOCK_KINDS = ("conv", "residual", "concat", "split", "depthwise", "se", "maxpool", "lrn", "shuffle")
ACTIVATIONS = ("Relu", "LeakyRelu", "Sigmoid", "none")


@st.composite
def cnn_graphs(draw, max_blocks: int = 8, max_channels: int = 12) -> onnx.ModelProto:
    seed = draw(st.integers(0, 2**31 - 1), label="seed")
    cin = draw(st.integers(1, 4), label="in_channels")
    hw = draw(st.sampled_from([8, 12]), label="hw")
    g = GraphBuilder(seed, in_channels=cin, hw=hw, name="random_cnn")

    chans = st.integers(2, max_channels)

    def act(x: str) -> str:
        return g.act(x, draw(st.sampled_from(ACTIVATIONS), label="act"))

    def conv(x: str, ci: int, co: int, *, group: int = 1, allow_bn: bool = True,
             bn: bool | None = None) -> str:
        k = 3 if group > 1 else draw(st.sampled_from([1, 3]), label="k")
        use_bn = draw(st.booleans(), label="bn") if (bn is None and allow_bn) else bool(bn)
        bias = False if use_bn else draw(st.booleans(), label="bias")
        y = g.conv(x, ci, co, k, group=group, bias=bias)
        return g.bn(y, co) if use_bn else y

    # stem
    c = draw(chans, label="stem_channels")
    x = act(conv(g.input, cin, c))
    n_blocks = draw(st.integers(1, max_blocks), label="n_blocks")
    for _ in range(n_blocks):
        kind = draw(st.sampled_from(BLOCK_KINDS), label="block")
        if kind == "conv":
            co = draw(chans, label="channels")
            x, c = act(conv(x, c, co)), co
        elif kind == "residual":
            y = act(conv(x, c, c, bn=True))
            y = conv(y, c, c, bn=True)
            x = g.act(g.node("Add", [y, x]), draw(st.sampled_from(["Relu", "none"]), label="act"))
        elif kind == "concat":
            a = draw(st.integers(1, max_channels - 1), label="concat_a")
            b = draw(st.integers(1, max_channels - a), label="concat_b")
            ya, yb = conv(x, c, a), conv(x, c, b)
            x, c = act(g.node("Concat", [ya, yb], axis=1)), a + b
        elif kind == "split":
            if c < 2:
                continue
            s = draw(st.integers(1, c - 1), label="split_at")
            p, q = g.node("Split", [x, g.i64([s, c - s], "split.sizes")], n_out=2, axis=1)
            if draw(st.booleans(), label="split_merge_add"):
                co = draw(chans, label="channels")
                x, c = g.node("Add", [conv(p, s, co), conv(q, c - s, co)]), co
            else:
                a = draw(st.integers(1, max_channels - 1), label="split_a")
                b = draw(st.integers(1, max_channels - a), label="split_b")
                x, c = g.node("Concat", [conv(p, s, a), conv(q, c - s, b)], axis=1), a + b
            x = act(x)
        elif kind == "depthwise":
            mult = 2 if (2 * c <= max_channels and draw(st.booleans(), label="dw_mult2")) else 1
            x, c = act(conv(x, c, c * mult, group=c)), c * mult
        elif kind == "se":
            r = max(1, c // 2)
            s_ = g.gap(x)
            s_ = g.node("Relu", [g.conv(s_, c, r, 1)])
            s_ = g.node("Sigmoid", [g.conv(s_, r, c, 1)])
            x = g.node("Mul", [x, s_])
        elif kind == "maxpool":
            if hw < 4:
                continue
            x = g.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
            hw //= 2
        elif kind == "lrn":
            x = g.node("LRN", [x], size=draw(st.sampled_from([1, 3, 5]), label="lrn_size"),
                       alpha=draw(st.floats(1e-4, 1.0), label="lrn_alpha"), beta=0.75, bias=1.0)
        elif kind == "shuffle":
            divisors = [d for d in range(2, c // 2 + 1) if c % d == 0]
            if not divisors:
                continue
            groups = draw(st.sampled_from(divisors), label="shuffle_groups")
            x = g.node("Reshape", [x, g.i64([0, groups, c // groups, hw, hw], "shuffle.split")])
            x = g.node("Transpose", [x], perm=[0, 2, 1, 3, 4])
            x = g.node("Reshape", [x, g.i64([0, c, hw, hw], "shuffle.merge")])

    if draw(st.booleans(), label="gap_head"):
        g.head(x, c, gap=True)
    else:
        g.head(x, c, gap=False, hw=hw * hw)
    return g.build()
