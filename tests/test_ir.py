"""Tests for onnxcar.graph.ir: import with bounded constant folding."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxcar.errors import OnnxcarError
from onnxcar.graph import ir


def filled(shape: list[int], *, weight_elements: int = 0, hide_shape: bool = False) -> onnx.ModelProto:
    """y = x + ReduceSum(ConstantOfShape(shape)), plus a second output x + w, w of ``weight_elements`` floats.

    ``hide_shape`` passes the shape through Abs, whose value shape inference does not propagate.
    """
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    nodes = [
        *([helper.make_node("Abs", ["shape"], ["shape_value"])] if hide_shape else []),
        helper.make_node("ConstantOfShape", ["shape_value" if hide_shape else "shape"], ["big"], value=one),
        helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
        helper.make_node("Add", ["x", "total"], ["y"]),
    ]
    initializers = [numpy_helper.from_array(np.array(shape, np.int64), "shape")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]
    if weight_elements:
        initializers.append(numpy_helper.from_array(np.zeros(weight_elements, np.float32), "w"))
        nodes.append(helper.make_node("Add", ["x", "w"], ["w_out"]))  # computed from the input: not folded
        outputs.append(helper.make_tensor_value_info("w_out", TensorProto.FLOAT, [weight_elements]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])], outputs,
                              initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_folding_a_tiny_model_into_gigabytes_is_refused():
    model = filled([1000, 1000, 1000])  # 4 KB of protobuf, 4 GB once folded
    assert model.ByteSize() < 4096
    with pytest.raises(OnnxcarError, match=r"folding would create 4000000004 bytes, .* the largest is tensor 'big' "):
        ir.import_graph(model)


@pytest.mark.parametrize(
    ("shape", "weight_elements", "folds"),
    [
        ([512, 512], 0, False),  # 1 MiB of constants from a model with no weights: over the 64 KiB floor
        ([127, 128], 0, True),  # 63.5 KiB (and the 4-byte sum): within the floor
        ([512, 512], 2**16, True),  # 1 MiB from 256 KiB of weights: within 4x the weights
        ([512, 512], 2**15, False),  # 1 MiB from 128 KiB of weights: over 4x
    ],
)
def test_fold_bound_is_a_floor_or_a_multiple_of_the_weights(monkeypatch, shape, weight_elements, folds):
    monkeypatch.setattr(ir, "FOLD_FLOOR_BYTES", 2**16)
    model = filled(shape, weight_elements=weight_elements)
    if folds:
        graph = ir.import_graph(model)
        (add,) = [n for n in graph.nodes if n.outputs[0].name == "y"]
        assert float(add.inputs[1].values) == np.prod(shape)  # folded to the sum of ones
    else:
        with pytest.raises(OnnxcarError, match="constant folding would create"):
            ir.import_graph(model)


def test_a_size_hidden_from_inference_is_bounded_once_folding_reveals_it():
    """Abs hides the shape from the first inference; the first pass folds it, the next pass sees
    the 4 GB ConstantOfShape and refuses it before computing it."""
    with pytest.raises(OnnxcarError, match=r"folding would create 4000000004 bytes"):
        ir.import_graph(filled([1000, 1000, 1000], hide_shape=True))
