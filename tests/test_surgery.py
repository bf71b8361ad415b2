"""Removing channels equals masking them, on every topology family (RELIABILITY 13-15)."""

import re

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

from onnxcar.errors import OnnxcarError
from onnxcar.graph import Role, analyze
from onnxcar.graph.channels import EditKind
from onnxcar.graph.cost import Cost, layer_costs, plan_cost
from onnxcar.graph.window import window_matrix
from onnxcar.surgery import make_plan, mask_channels, remove_channels, verify_equal
from onnxcar.surgery.plan import Plan
from tests.conftest import remove_half_and_verify
from tests.zoo import classic, detection, exported, handbuilt, quantized, random_graphs


@pytest.mark.parametrize("name", sorted(handbuilt.CASES))
def test_handbuilt_remove_equals_mask(name):
    analysis, pruned, result = remove_half_and_verify(handbuilt.CASES[name]())
    assert any(g.prunable for g in analysis.groups), [g.reasons for g in analysis.groups]
    assert result.max_scaled_error <= 1.0
    before = plan_cost(Plan(analysis, frozenset())).params
    assert sum(int(np.prod(t.dims)) for t in pruned.graph.initializer) < before


@pytest.mark.parametrize("removed, conv1, conv2", [
    (0, Cost(3_648, 3_686_400), Cost(41_568, 10_616_832)),  # the sample's README table
    (24, Cost(1_824, 1_843_200), Cost(20_832, 5_308_416)),  # half of conv1 gone: conv1 and conv2's input halve
])
def test_layer_costs_of_the_sample(removed, conv1, conv2):
    analysis = analyze(onnx.load("samples/alexnet_cifar10.onnx"))
    plan = Plan(analysis, frozenset(analysis.group("conv1").channel_ids(range(removed))))
    costs = layer_costs(plan)
    assert (costs["/conv1/Conv"], costs["/conv2/Conv"]) == (conv1, conv2)
    assert sum(c.macs for c in costs.values()) == plan_cost(plan).macs
    assert sum(c.params for c in costs.values()) == plan_cost(plan).params  # no float constant outside a layer


BLOCK_REASONS = {
    "maxout": "only lose the same channels",
    "softmax_channels": "Softmax normalises over the channel axis",
    "custom_domain_op": "com.acme",
    "conv_to_output": "graph output",
}


@pytest.mark.parametrize("name", sorted(handbuilt.BLOCKED_CASES))
def test_unmappable_ops_block_their_group_with_a_reason(name):
    analysis = analyze(handbuilt.BLOCKED_CASES[name]())
    reasons = [r for g in analysis.groups for r in g.reasons]
    assert any(BLOCK_REASONS[name] in r for r in reasons), reasons
    blocked = next(g for g in analysis.groups if any(BLOCK_REASONS[name] in r for r in g.reasons))
    with pytest.raises(OnnxcarError, match="cannot be pruned"):
        make_plan(analysis, blocked.channel_ids([0]))


@pytest.mark.parametrize("fold_bn", [True, False], ids=["bn-folded", "bn-kept"])
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("name", exported.NAMES)
def test_exported_models_remove_equals_mask(name, exporter, fold_bn):
    model = exported.export(name, exporter=exporter, fold_bn=fold_bn)
    analysis, pruned, _ = remove_half_and_verify(model)
    prunable = [g for g in analysis.groups if g.prunable]
    assert prunable
    conv_producers = {p for g in analysis.groups for p in g.producers if "Conv" in p or "conv" in p.lower()}
    assert conv_producers
    onnx.checker.check_model(pruned, full_check=True)
    assert EXPECTED[name](analysis), [(g.producers, g.reasons) for g in analysis.groups]


def _ops_of(group, role):
    return {m.op_type for m in group.members if m.role.value == role}


def _only_outputs_blocked(analysis) -> bool:
    return _blocked_layers(analysis) <= _at_outputs(analysis)


def _blocked_layers(analysis) -> set[str]:
    """Short names of the Conv and ConvTranspose layers whose output channels cannot be removed."""
    free = {m.node for g in analysis.groups if g.prunable for m in g.members if m.role in (Role.PRODUCER, Role.THROUGH)}
    return {analysis.layer_name(n.name) for n in analysis.graph.nodes
            if n.op in ("Conv", "ConvTranspose") and n.name not in free}


def _at_outputs(analysis) -> set[str]:
    """Short names of the producers whose channels reach a graph output."""
    return {analysis.layer_name(p) for g in analysis.groups if any("graph output" in r for r in g.reasons)
            for p in g.producers}


EXPECTED = {
    # a residual trunk couples the stem with every block's last conv
    "resnet_blocks": lambda a: any(len(g.producers) >= 3 and g.prunable for g in a.groups),
    # the SE expand conv gates the depthwise features, so it joins their group
    "mobilenet_se": lambda a: any(len(g.producers) >= 2 and "Mul" in _ops_of(g, "through") for g in a.groups),
    # dense layers read a concat of earlier features: every layer's group passes a Concat
    "densenet_block": lambda a: sum("Concat" in _ops_of(g, "through") for g in a.groups if g.prunable) >= 3,
    "inception_block": lambda a: sum("Concat" in _ops_of(g, "through") for g in a.groups if g.prunable) >= 4,
    "grouped_conv": lambda a: any(g.prunable and "Conv" in _ops_of(g, "consumer") for g in a.groups),
    # the last conv group is read by the first Gemm/MatMul through Flatten
    "vgg_flatten": lambda a: any(
        g.prunable and _ops_of(g, "consumer") & {"Gemm", "MatMul"} and _ops_of(g, "producer") == {"Conv"} for g in a.groups
    ),
    # channel shuffles: the groups that pass one stay prunable (every group's i-th channel coupled)
    "shufflenet_v1": lambda a: _only_outputs_blocked(a) and any("Transpose" in _ops_of(g, "through") for g in a.groups),
    # the trunk: each unit's untouched half and transformed half are coupled across the shuffles
    "shufflenet_v2": lambda a: _only_outputs_blocked(a) and any(
        len(g.producers) >= 3 and "Transpose" in _ops_of(g, "through") for g in a.groups),
}


def test_plan_refuses_removing_a_whole_group():
    analysis = analyze(handbuilt.CASES["conv_bn_relu"]())
    group = next(g for g in analysis.groups if g.prunable)
    with pytest.raises(OnnxcarError, match="would lose all"):
        make_plan(analysis, set(group.channels.tolist()))


def test_verify_catches_a_wrong_model():
    analysis = analyze(handbuilt.CASES["conv_bn_relu"]())
    group = next(g for g in analysis.groups if g.prunable)
    plan = make_plan(analysis, group.channel_ids([0, 1]))
    wrong = make_plan(analysis, group.channel_ids([2, 3]))
    with pytest.raises(OnnxcarError, match="differs from the masked model"):
        verify_equal(mask_channels(plan), remove_channels(wrong))


def test_dynamic_batch_survives_removal():
    _, pruned, result = remove_half_and_verify(exported.export("resnet_blocks", exporter="torchscript", fold_bn=True))
    assert result.batch_sizes == (1, 3)
    dim = pruned.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_param and not dim.HasField("dim_value")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=random_graphs.cnn_graphs(), seed=st.integers(0, 2**16))
def test_random_graphs_remove_equals_mask(model, seed):
    _, _, result = remove_half_and_verify(model, batch_sizes=(1, 2), seed=seed)
    assert result.max_scaled_error <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("name", classic.CLASSIC_NAMES)
def test_classic_models_remove_equals_mask(name):
    model = classic.load_classic(name, dynamic_batch=True)
    analysis, pruned, result = remove_half_and_verify(model, batch_sizes=(1, 2))
    # LRN (alexnet, zfnet512, inception_v1) and ShuffleNet's channel shuffles included
    assert _only_outputs_blocked(analysis), [(g.producers, g.reasons) for g in analysis.groups if not g.prunable]
    onnx.checker.check_model(pruned, full_check=True)


@pytest.mark.slow
def test_resnet50_every_prunable_group_halved():
    model = exported.resnet50_like()
    analysis = analyze(model)
    prunable = [g for g in analysis.groups if g.prunable]
    assert len(prunable) == len(analysis.groups) - 1  # all but the classifier, whose units are the output
    plan = make_plan(analysis, {c for g in prunable for c in g.channels[: g.size // 2].tolist()})
    verify_equal(mask_channels(plan), remove_channels(plan), batch_sizes=(1, 2))
    assert plan_cost(plan).params < 0.35 * plan_cost(Plan(analysis, frozenset())).params


def test_verification_refuses_inputs_too_large_to_make():
    """Input dims of 2^40 (issue 13, item 16): a one-line error, not a 24 TiB allocation."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 2**40, 1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 3, 2**40, 1])
    model = onnx.helper.make_model(onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))
    with pytest.raises(OnnxcarError, match=r"cannot make test inputs for 'x': \[1, 3, 1099511627776, 1\] holds "
                                           r"3298534883328 values, more than verification allows \(268435456\)"):
        verify_equal(model, model, batch_sizes=(1,))


# ----------------------------------------------------------------------------- coverage: LRN, shuffles, QDQ, detection

def _torch(module, name, exporter="torchscript"):
    return lambda: module.export(name, exporter=exporter, **({"fold_bn": False} if module is exported else {}))


COVERAGE = {
    **{name: handbuilt.CASES[name] for name in (
        "lrn", "channel_shuffle", "slice_opset9", "maxpool_unpool", "convtranspose_grouped", "convtranspose_depthwise")},
    **{f"{name}_{exporter}": _torch(exported, name, exporter)
       for name in ("shufflenet_v1", "shufflenet_v2") for exporter in exported.EXPORTERS},
    "detector": _torch(detection, "detector"),
    "segmenter": _torch(detection, "segmenter"),
    "segmenter_dynamo": _torch(detection, "segmenter", "dynamo"),
    "quantized_sample": quantized.quantized_sample,
}
SLOW_COVERAGE = {"detector_dynamo": _torch(detection, "detector", "dynamo")}


# Only layers whose output channels are the model output's layout stay blocked: the detector's
# last box and class convs of each level (box bins feed the DFL softmax) and the fixed DFL conv.
HEAD_LAYERS = re.compile(r"^detect[./](box|cls)[./].*[./]2$|^detect[./]dfl[./]conv$|^head$")


@pytest.mark.parametrize("name", [*COVERAGE, *(pytest.param(n, marks=pytest.mark.slow) for n in SLOW_COVERAGE)])
def test_coverage_models_remove_equals_mask_at_batch_1_and_2(name):
    model = {**COVERAGE, **SLOW_COVERAGE}[name]()
    analysis, pruned, result = remove_half_and_verify(model, batch_sizes=(1, 2))
    assert result.batch_sizes == (1, 2) and result.max_scaled_error <= 1.0
    blocked = _blocked_layers(analysis)
    assert all(HEAD_LAYERS.search(layer) for layer in blocked), blocked
    onnx.checker.check_model(pruned, full_check=True)


def test_lrn_stays_where_nothing_around_it_is_pruned_and_becomes_a_window_where_it_is():
    analysis = analyze(handbuilt.CASES["lrn"]())
    untouched = remove_channels(make_plan(analysis, analysis.group("conv_b").channel_ids([0, 1])))
    assert "LRN" in {n.op_type for n in untouched.graph.node}
    plan = make_plan(analysis, analysis.group("conv_a").channel_ids([1, 4, 5]))
    rewritten = remove_channels(plan)
    ops = [n.op_type for n in rewritten.graph.node]
    assert "LRN" not in ops and ops.count("Conv") == 3 and "Pow" in ops
    window = next(numpy_helper.to_array(i) for i in rewritten.graph.initializer if i.name.endswith("/window"))
    kept = [0, 2, 3, 6, 7]  # size 3: channel c sums c - 1 .. c + 1 of the original numbering
    np.testing.assert_array_equal(window[:, :, 0, 0], window_matrix(3, 8)[np.ix_(kept, kept)])
    assert plan_cost(plan).params == plan_cost(Plan(analysis, frozenset())).params - 3 * (4 * 9 + 1) - 3 * 8 * 9 + 5 * 5
    # a window over the pruned positions (what LRN on the smaller tensor would do) is caught
    naive = onnx.ModelProto()
    naive.CopyFrom(rewritten)
    tensor = next(i for i in naive.graph.initializer if i.name.endswith("/window"))
    tensor.CopyFrom(numpy_helper.from_array(window_matrix(3, 5).reshape(5, 5, 1, 1), tensor.name))
    with pytest.raises(OnnxcarError, match="differs from the masked model"):
        verify_equal(mask_channels(plan), naive, batch_sizes=(1, 2))
    # the rewritten form is analysed as a channel window: conv_a stays prunable through it
    again = analyze(rewritten)
    assert again.group("conv_a").prunable and "lrn/window_sum" not in again.group("conv_a").producers


def test_shuffle_couples_the_same_channel_of_every_group():
    analysis = analyze(handbuilt.CASES["channel_shuffle"]())
    group = analysis.group("conv_a")
    atoms = next(e.atoms for e in analysis.tracer.edits if e.node == "conv_a" and e.kind is EditKind.OWN)
    roots = analysis.roots(atoms)
    assert group.size == 4 and roots[:4].tolist() == roots[4:].tolist() and len(set(roots[:4].tolist())) == 4


def test_quantized_weights_stay_int8_with_per_channel_scales_sliced():
    model = quantized.quantized_sample()
    analysis = analyze(model)
    plan = make_plan(analysis, analysis.group("conv2").channel_ids(range(0, 96, 2)))
    pruned, masked = remove_channels(plan), mask_channels(plan)
    count = lambda m, ops: sum(n.op_type in ops for n in m.graph.node)  # noqa: E731
    assert count(pruned, {"QuantizeLinear", "DequantizeLinear"}) == count(model, {"QuantizeLinear", "DequantizeLinear"})
    values = {i.name: numpy_helper.to_array(i) for i in pruned.graph.initializer}
    assert values["conv2.weight_quantized"].dtype == np.int8 and values["conv2.weight_quantized"].shape == (48, 48, 3, 3)
    assert values["conv2.weight_scale"].shape == values["conv2.weight_zero_point"].shape == (48,)
    assert values["conv3.weight_quantized"].shape == (192, 48, 3, 3) and values["conv3.weight_scale"].shape == (192,)
    assert values["conv2.bias_quantized"].dtype == np.int32 and values["conv2.bias_quantized"].shape == (48,)
    # masking sets the integers that read removed channels to the zero point
    masked_values = {i.name: numpy_helper.to_array(i) for i in masked.graph.initializer}
    zero = masked_values["conv3.weight_zero_point"].reshape(-1, 1, 1)
    assert (masked_values["conv3.weight_quantized"][:, 0::2] == zero[:, :, :, None]).all()
    verify_equal(masked, pruned, batch_sizes=(1, 2))
