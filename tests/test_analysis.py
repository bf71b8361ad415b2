"""Layer names: the short names inspect shows and ``layers`` accepts."""

import numpy as np
import onnx_graphsurgeon as gs
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxcar.graph import analyze, layer_name


def conv_node(name: str, weight: str, op: str = "Conv") -> gs.Node:
    x = gs.Variable("x", dtype=np.float32, shape=["batch", 3, "h", "w"])
    w = gs.Constant(weight, np.ones((4, 3, 1, 1), np.float32))
    return gs.Node(op, name, inputs=[x, w], outputs=[gs.Variable("y", dtype=np.float32)])


@pytest.mark.parametrize("name, weight, expected", [
    ("/features/conv1/Conv", "features.0.weight", "features/conv1"),  # a path: the node name wins
    ("conv1", "backbone.conv.weight", "conv1"),  # a real node name wins over its weight's
    ("Conv@0", "conv1_weights", "conv1"),  # Paddle (PaddleOCR weights)
    ("p2o.Conv.3", "conv2d_3.w_0", "conv2d_3"),  # Paddle's static graph
    ("n0", "conv1.weight", "conv1"),
    ("node_Conv_12", "layer1.0.conv1.weight", "layer1.0.conv1"),  # torch dynamo
    ("node_conv2d_1", "stem.weight", "stem"),
    ("Conv_7", "res2_0_branch2a_w_0", "res2_0_branch2a"),  # an unnamed node; Caffe2 weights (the onnx wheel)
    ("Conv_7", "onnx::Conv_43", "Conv_7"),  # an anonymous weight says nothing
    ("Conv_7", "W3", "Conv_7"),  # nor does one without a known suffix
    ("Conv@0", ".weight", "Conv@0"),  # nor a bare suffix
])
def test_layer_name(name, weight, expected):
    assert layer_name(conv_node(name, weight)) == expected


def test_names_that_fall_back_to_the_same_weight_name_are_made_unique():
    rng = np.random.default_rng(0)
    weights = {"conv1.weight": (8, 3, 1, 1), "conv1_weights": (8, 8, 1, 1), "head_weights": (4, 8, 1, 1)}
    nodes = [helper.make_node("Conv", [x, w], [y], name=f"Conv@{i}")
             for i, (x, w, y) in enumerate([("x", "conv1.weight", "a"), ("a", "conv1_weights", "b"),
                                            ("b", "head_weights", "c")])]
    nodes.append(helper.make_node("Relu", ["c"], ["out"], name="conv1#2"))  # a node already holds the first pick
    graph = helper.make_graph(
        nodes, "twins", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, "?", "?"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
         for name, shape in weights.items()])
    analysis = analyze(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    names = [analysis.layer_name(f"Conv@{i}") for i in range(3)]
    assert names == ["conv1", "conv1#3", "head"]
    assert analysis.group("conv1#3").producers == ["Conv@1"] and analysis.group("conv1").producers == ["Conv@0"]
