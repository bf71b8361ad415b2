"""Models whose image height and width are symbolic, as OCR, detection and many exported classifiers have.

* :func:`paddle_like` builds, in code, what a PaddlePaddle (paddle2onnx) export of a small
  MobileNetV3-style classifier looks like: input ``x`` of shape ``[-1, 3, ?, ?]`` (batch
  ``dim_value -1``, height and width named ``?``), generic node names ``Conv@0``,
  ``BatchNormalization@1``..., weights named ``conv1_weights``, ``conv1_bn_scale``...,
  an SE block, a depthwise conv, and a MatMul + Add classifier after global pooling.

:func:`tests.zoo.exported.export` with ``dynamic_hw=True`` gives the torch side: a zoo CNN
exported with ``dynamic_axes`` on batch, height and width.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CLASSES = 4


class _Paddle:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def node(self, op: str, inputs: list[str], out: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op}@{len(self.nodes)}", **attrs))
        return out

    def init(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def conv_bn(self, x: str, name: str, cin: int, cout: int, k: int = 1, stride: int = 1, group: int = 1,
                act: str | None = "Relu") -> str:
        fan_in = cin // group * k * k
        std = (2 / fan_in) ** 0.5
        weight = self.init(f"{name}_weights", self.rng.standard_normal((cout, cin // group, k, k)) * std)
        y = self.node("Conv", [x, weight], f"{name}.conv_out", kernel_shape=[k, k], strides=[stride, stride],
                      pads=[k // 2] * 4, group=group, dilations=[1, 1])
        bn = [self.init(f"{name}_bn_{part}", value) for part, value in (
            ("scale", self.rng.uniform(0.5, 1.5, cout)), ("offset", self.rng.normal(0, 0.1, cout)),
            ("mean", self.rng.normal(0, 0.1, cout)), ("variance", self.rng.uniform(0.5, 1.5, cout)))]
        y = self.node("BatchNormalization", [y, *bn], f"{name}.bn_out", epsilon=1e-5)
        return y if act is None else self.node(act, [y], f"{name}.act_out")

    def se(self, x: str, name: str, c: int) -> str:
        pooled = self.node("GlobalAveragePool", [x], f"{name}.pool_out")
        squeeze = self.init(f"{name}_1_weights", self.rng.standard_normal((c // 4, c, 1, 1)) * (2 / c) ** 0.5)
        s = self.node("Conv", [pooled, squeeze, self.init(f"{name}_1_offset", self.rng.normal(0, 0.1, c // 4))],
                      f"{name}.squeeze_out", kernel_shape=[1, 1])
        s = self.node("Relu", [s], f"{name}.relu_out")
        excite = self.init(f"{name}_2_weights", self.rng.standard_normal((c, c // 4, 1, 1)) * (8 / c) ** 0.5)
        s = self.node("Conv", [s, excite, self.init(f"{name}_2_offset", self.rng.normal(0, 0.1, c))],
                      f"{name}.excite_out", kernel_shape=[1, 1])
        s = self.node("HardSigmoid", [s], f"{name}.gate_out", alpha=0.2, beta=0.5)
        return self.node("Mul", [x, s], f"{name}.out")


def paddle_like(seed: int = 0) -> onnx.ModelProto:
    """A paddle2onnx-style MobileNetV3 block classifier with input ``x: [-1, 3, ?, ?]`` (opset 11)."""
    b = _Paddle(seed)
    y = b.conv_bn("x", "conv1", 3, 8, k=3, stride=2)
    y = b.conv_bn(y, "conv2_expand", 8, 16)
    y = b.conv_bn(y, "conv2_depthwise", 16, 16, k=3, group=16)
    y = b.se(y, "conv2_se", 16)
    y = b.conv_bn(y, "conv2_linear", 16, 12, act=None)
    y = b.conv_bn(y, "conv_last", 12, 16)
    y = b.node("GlobalAveragePool", [y], "pool.out")
    y = b.node("Flatten", [y], "flatten.out", axis=1)
    y = b.node("MatMul", [y, b.init("fc_weights", b.rng.standard_normal((16, CLASSES)) * 0.25)], "fc.matmul_out")
    y = b.node("Add", [y, b.init("fc_offset", b.rng.normal(0, 0.1, CLASSES))], "fc.out")
    b.node("Softmax", [y], "softmax_0.tmp_0", axis=1)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, "?", "?"])
    out = helper.make_tensor_value_info("softmax_0.tmp_0", TensorProto.FLOAT, [-1, CLASSES])
    graph = helper.make_graph(b.nodes, "paddle_like", [x], [out], initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], producer_name="PaddlePaddle",
                              ir_version=6)
    onnx.checker.check_model(model)
    return model
