"""MACs at the given input shape through Paddle's Shape -> Cast -> Slice -> Cast -> Concat -> Reshape."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnxcar
from onnxcar.graph.shape_folding import fold_shape_computations
from onnxcar.graph.shapes import tensor_shapes
from onnxcar.io import without_weight_data
from tests.zoo import tasks


@pytest.mark.parametrize("height, width", [(10, 14), (48, 192)])
def test_inspect_counts_macs_after_a_shape_chain(height, width):
    inspection = onnxcar.inspect(tasks.shape_chain_classifier(), input_shapes={"x": (1, 3, height, width)})
    conv1, conv2, fc = 8 * 3 * 9, 16 * 8 * 9, 16 * 4
    assert inspection.macs == (conv1 + conv2) * height * width + fc


def test_the_reshape_after_the_chain_is_sized():
    model = tasks.shape_chain_classifier()
    reshape = next(n for n in model.graph.node if n.op_type == "Reshape")
    assert tensor_shapes(model, {"x": (2, 3, 10, 14)})[reshape.output[0]] == (2, 16)


def test_folding_replaces_only_shape_computations():
    model = without_weight_data(tasks.shape_chain_classifier())
    for dim, size in zip(model.graph.input[0].type.tensor_type.shape.dim, (1, 3, 10, 14)):
        dim.dim_value = size
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    pooled = next(n for n in inferred.graph.node if n.op_type == "GlobalAveragePool").output[0]
    folded = fold_shape_computations(inferred, {pooled: (1, 16, 1, 1)})
    remaining = [n.op_type for n in inferred.graph.node]
    assert folded == 7  # Shape, Cast, Slice, Cast of the batch; Constant, Cast of the tail; Concat
    assert remaining == ["Conv", "Relu", "Conv", "Relu", "GlobalAveragePool", "Reshape", "MatMul"]


def test_a_gate_whose_rank_a_shape_chain_hides_is_prunable_at_a_given_size():
    """Inference leaves the gate's rank unknown; folded at 12x16 and at 24x32, its rank and its size-free dims
    (all but the batch) place the channel axis, and the pruned model still runs at other sizes."""
    model = tasks.hidden_rank_gate()
    unsized = onnxcar.inspect(model).groups
    assert not any(g["prunable"] for g in unsized) and "Mul operand ranks are unknown" in unsized[0]["reason"]
    sized = onnxcar.inspect(model, input_shapes={"x": (1, 3, 12, 16)}).groups
    assert [g["layers"] for g in sized if g["prunable"]] == [["conv1", "gate"]]
    result = onnxcar.prune(model, target=onnxcar.Ratio(0.5), input_shapes={"x": (1, 3, 12, 16)})
    assert result.after.params < result.before.params
    session = ort.InferenceSession(result.model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": np.zeros((3, 3, 20, 7), np.float32)})[0].shape == (3, 4)
