"""Repairs after surgery: the least-squares refit of every consumer of pruned channels, the
BatchNorm re-estimation, and their wiring into prune (library and CLI)."""

import json
import logging

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxcar
from onnxcar.graph import analyze
from onnxcar.repair import REPAIRS, RepairInputs, kept_after, kept_channels, register_repair, run_repair
from onnxcar.repair import taps
from onnxcar.repair.consumers import initializer
from onnxcar.repair.ridge import NormalEquations
from onnxcar.surgery import make_plan, remove_channels
from tests.test_pipeline import SAMPLES
from tests.zoo import run_onnx

COMBINATION = (0.7, -1.3)  # the removed channel is 0.7 * channel 0 - 1.3 * channel 1


class Net:
    """A tiny model written node by node, with seeded weights."""

    def __init__(self, channels: int = 3, size: int = 10, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.channels, self.size = channels, size
        self.nodes, self.inits = [], []

    def const(self, name: str, value) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def op(self, op: str, name: str, inputs: list[str], **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [f"{name}_out"], name=name, **attrs))
        return f"{name}_out"

    def conv(self, name: str, x: str, cin: int, cout: int, k: int = 3, *, group: int = 1, combine: int = 0,
             **attrs) -> str:
        """A Conv; its filters in ``combine`` equal blocks, the last of each block COMBINATION of its first two."""
        weight = self.rng.standard_normal((cout, cin // group, k, k)) / np.sqrt(cin // group * k * k)
        bias = self.rng.standard_normal(cout) * 0.1
        if combine:
            per = cout // combine
            for start in range(0, cout, per):
                last, first, second = start + per - 1, start, start + 1
                weight[last] = COMBINATION[0] * weight[first] + COMBINATION[1] * weight[second]
                bias[last] = COMBINATION[0] * bias[first] + COMBINATION[1] * bias[second]
        return self.op("Conv", name, [x, self.const(f"{name}.weight", weight), self.const(f"{name}.bias", bias)],
                       kernel_shape=[k, k], group=group, **attrs)

    def model(self, output: str) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, "toy",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", self.channels, self.size, self.size])],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        return onnx.shape_inference.infer_shapes(model)


def images(count: int = 64, net: Net | None = None, seed: int = 1) -> np.ndarray:
    channels, size = (3, 10) if net is None else (net.channels, net.size)
    return np.random.default_rng(seed).standard_normal((count, channels, size, size)).astype(np.float32)


def prune_and_repair(model: onnx.ModelProto, layer: str, channels: list[int], data: np.ndarray, repair: str = "lsq"):
    """Removes ``channels`` of ``layer``'s group; returns the pruned model and the repair's result."""
    analysis = analyze(model)
    plan = make_plan(analysis, analysis.group(layer).channel_ids(channels))
    pruned = remove_channels(plan)
    return pruned, run_repair(repair, RepairInputs(model, pruned, kept_channels(plan), {"input": data}))


def assert_restored(original, repaired, data: np.ndarray) -> None:
    expected, = run_onnx(original, data)
    got, = run_onnx(repaired, data)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


def chain(consumer) -> tuple[onnx.ModelProto, str, list[int]]:
    """convA (its last filter a combination of two others) -> ReLU-free consumer -> output."""
    net = Net()
    x = net.conv("convA", "input", 3, 6, combine=1, pads=[1, 1, 1, 1])
    return net.model(consumer(net, x)), "convA", [5]


CONSUMERS = {
    "conv 3x3 padded": lambda net, x: net.conv("convB", x, 6, 4, pads=[1, 1, 1, 1]),
    "conv 3x3 strided": lambda net, x: net.conv("convB", x, 6, 4, strides=[2, 2], pads=[1, 1, 1, 1]),
    "conv 3x3 dilated": lambda net, x: net.conv("convB", x, 6, 4, dilations=[2, 2], pads=[2, 2, 2, 2]),
    "conv 5x5 unpadded": lambda net, x: net.conv("convB", x, 6, 4, k=5),
    "conv auto_pad SAME_UPPER stride 2": lambda net, x: net.conv("convB", x, 6, 4, strides=[2, 2],
                                                                 auto_pad="SAME_UPPER"),
    "conv 1x1": lambda net, x: net.conv("convB", x, 6, 4, k=1),
    "gemm after flatten": lambda net, x: net.op(
        "Gemm", "fc", [net.op("Flatten", "flatten", [x]), net.const("fc.weight", net.rng.standard_normal((5, 600))),
                       net.const("fc.bias", np.zeros(5))], transB=1, alpha=0.5, beta=2.0),
    "matmul after flatten": lambda net, x: net.op(
        "MatMul", "mm", [net.op("Flatten", "flatten", [x]), net.const("mm.weight", net.rng.standard_normal((600, 5)))]),
}


@pytest.mark.parametrize("name", list(CONSUMERS))
def test_lsq_restores_a_removed_linear_combination(name):
    model, layer, channels = chain(CONSUMERS[name])
    count = 800 if "flatten" in name else 64  # more rows than the 501 unknowns of a layer on 5 x 10 x 10 features
    pruned, result = prune_and_repair(model, layer, channels, images(count))
    assert_restored(model, result.model, images(16, seed=7))
    with pytest.raises(AssertionError):
        assert_restored(model, pruned, images(16, seed=7))  # surgery alone does not
    layer, = result.layers
    assert layer["applied"] and layer["heldout_error_after"] < 1e-6 < layer["heldout_error_before"]
    assert layer["ridge"] in (1e-6, 1e-5)


def test_lsq_refits_a_grouped_conv_per_group():
    net = Net()
    x = net.conv("convA", "input", 3, 8, combine=2, pads=[1, 1, 1, 1])
    model = net.model(net.conv("convB", x, 8, 4, group=2, pads=[1, 1, 1, 1]))
    assert analyze(model).group("convA").size == 4  # channel i goes with channel i + 4, one in each group of convB
    pruned, result = prune_and_repair(model, "convA", [3], images())
    assert result.layers[0]["systems"] == 2
    assert_restored(model, result.model, images(16, seed=7))


def test_lsq_refits_depthwise_then_pointwise():
    """A depthwise Conv with equal filters keeps the combination, so the pointwise Conv can absorb it."""
    net = Net()
    x = net.conv("convA", "input", 3, 6, combine=1, pads=[1, 1, 1, 1])
    shared = net.rng.standard_normal((1, 1, 3, 3))
    bias = net.rng.standard_normal(6) * 0.1
    bias[5] = COMBINATION[0] * bias[0] + COMBINATION[1] * bias[1]
    depthwise = net.op("Conv", "dw", [x, net.const("dw.weight", np.repeat(shared, 6, axis=0)),
                                      net.const("dw.bias", bias)], group=6, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    model = net.model(net.conv("pw", depthwise, 6, 4, k=1))
    pruned, result = prune_and_repair(model, "convA", [5], images())
    by_layer = {r["layer"]: r for r in result.layers}
    assert by_layer["dw"]["systems"] == 5 and by_layer["dw"]["unknowns"] == 10
    assert set(by_layer) == {"dw", "pw"}
    assert_restored(model, result.model, images(16, seed=7))


def test_lsq_refits_the_consumer_behind_a_residual_add():
    net = Net()
    a = net.conv("convA", "input", 3, 6, combine=1, pads=[1, 1, 1, 1])
    b = net.conv("convB", "input", 3, 6, combine=1, pads=[1, 1, 1, 1])
    model = net.model(net.conv("convC", net.op("Add", "add", [a, b]), 6, 4, pads=[1, 1, 1, 1]))
    pruned, result = prune_and_repair(model, "convA", [5], images())
    assert [r["layer"] for r in result.layers] == ["convC"]
    assert_restored(model, result.model, images(16, seed=7))


def test_lsq_refits_the_consumer_of_a_concat():
    net = Net()
    a = net.conv("convA", "input", 3, 6, combine=1, pads=[1, 1, 1, 1])
    b = net.conv("convB", "input", 3, 4, pads=[1, 1, 1, 1])
    joined = net.op("Concat", "concat", [b, a], axis=1)
    model = net.model(net.conv("convC", joined, 10, 4, pads=[1, 1, 1, 1]))
    pruned, result = prune_and_repair(model, "convA", [5], images())
    assert result.layers[0]["unknowns"] == 9 * 9 + 1
    assert_restored(model, result.model, images(16, seed=7))


def test_lsq_refits_consumers_in_order_on_the_repaired_network():
    """Pruning convA changes convB's input; refitting convB first lets convC see convB's repaired output."""
    net = Net()
    a = net.op("Relu", "reluA", [net.conv("convA", "input", 3, 6, pads=[1, 1, 1, 1])])
    b = net.op("Relu", "reluB", [net.conv("convB", a, 6, 6, pads=[1, 1, 1, 1])])
    model = net.model(net.conv("convC", b, 6, 4, pads=[1, 1, 1, 1]))
    analysis = analyze(model)
    plan = make_plan(analysis, analysis.group("convA").channel_ids([0, 1]) | analysis.group("convB").channel_ids([2]))
    pruned = remove_channels(plan)
    result = run_repair("lsq", RepairInputs(model, pruned, kept_channels(plan), {"input": images(128)}))
    assert [r["layer"] for r in result.layers] == ["convB", "convC"]
    test = images(32, seed=9)
    expected, = run_onnx(model, test)
    error = {name: np.abs(run_onnx(m, test)[0] - expected).mean() for name, m in (("pruned", pruned),
                                                                                    ("repaired", result.model))}
    assert error["repaired"] < error["pruned"]


def test_lsq_gives_the_same_refit_without_a_cache_of_activations(monkeypatch):
    net = Net()
    a = net.op("Relu", "reluA", [net.conv("convA", "input", 3, 6, pads=[1, 1, 1, 1])])
    b = net.op("Relu", "reluB", [net.conv("convB", a, 6, 6, pads=[1, 1, 1, 1])])
    skip = net.op("Add", "skip", [net.conv("convC", b, 6, 6, pads=[1, 1, 1, 1]), a])
    model = net.model(net.conv("convD", skip, 6, 4, pads=[1, 1, 1, 1]))
    cached = prune_and_repair(model, "convA", [0, 1], images(32))[1].model
    monkeypatch.setattr(taps, "CACHE_BYTES", 0)
    recomputed = prune_and_repair(model, "convA", [0, 1], images(32))[1].model
    for name in ("convB.weight", "convB.bias", "convD.weight", "convD.bias"):
        np.testing.assert_allclose(initializer(cached, name), initializer(recomputed, name), rtol=1e-6, atol=1e-7)


def test_lsq_targets_only_the_kept_filters_of_a_consumer_pruned_itself():
    net = Net()
    x = net.conv("convA", "input", 3, 6, combine=1, pads=[1, 1, 1, 1])
    y = net.conv("convB", x, 6, 5, pads=[1, 1, 1, 1])
    model = net.model(net.conv("convC", net.op("Relu", "relu", [y]), 5, 4, k=1))
    analysis = analyze(model)
    plan = make_plan(analysis, analysis.group("convA").channel_ids([5]) | analysis.group("convB").channel_ids([1, 3]))
    pruned = remove_channels(plan)
    result = run_repair("lsq", RepairInputs(model, pruned, kept_channels(plan), {"input": images()}))
    test = images(8, seed=3)
    tapped = []
    for m in (model, result.model):
        copy = onnx.ModelProto()
        copy.CopyFrom(m)
        copy.graph.output.append(helper.make_tensor_value_info("convB_out", TensorProto.FLOAT, None))
        tapped.append(run_onnx(copy, test)[-1])
    np.testing.assert_allclose(tapped[1], tapped[0][:, [0, 2, 4]], rtol=1e-3, atol=1e-4 * np.abs(tapped[0]).max())


def test_lsq_computes_each_network_segment_by_segment(monkeypatch):
    """Each stage's segment starts from the tensors cached by the stage before, not from the input."""
    net = Net()
    a = net.op("Relu", "reluA", [net.conv("convA", "input", 3, 6, pads=[1, 1, 1, 1])])
    b = net.op("Relu", "reluB", [net.conv("convB", a, 6, 6, pads=[1, 1, 1, 1])])
    model = net.model(net.conv("convC", b, 6, 4, pads=[1, 1, 1, 1]))
    segments = []
    run = taps.make_runner
    monkeypatch.setattr(taps, "make_runner", lambda m, config: segments.append(
        ([i.name for i in m.graph.input], [o.name for o in m.graph.output])) or run(m, config))
    analysis = analyze(model)
    plan = make_plan(analysis, analysis.group("convA").channel_ids([0]) | analysis.group("convB").channel_ids([2]))
    run_repair("lsq", RepairInputs(model, remove_channels(plan), kept_channels(plan), {"input": images(16)}))
    assert segments == [(["input"], ["reluA_out"]), (["input"], ["convB_out"]),
                        (["reluA_out"], ["reluB_out"]), (["convB_out"], ["convC_out"])]


@pytest.mark.parametrize("data", ["constant", "duplicate channels"])
def test_lsq_gives_finite_weights_for_a_singular_system(data):
    net = Net()
    x = net.conv("convA", "input", 3, 6, combine=1, pads=[1, 1, 1, 1])
    model = net.model(net.conv("convB", x, 6, 4, pads=[1, 1, 1, 1]))
    inputs = images(8)
    if data == "constant":
        inputs = np.zeros_like(inputs)
    else:
        inputs[:, 1:] = inputs[:, :1]  # every input channel the same: convA's outputs are collinear
    pruned, result = prune_and_repair(model, "convA", [5], inputs)
    weight = initializer(result.model, "convB.weight")
    assert np.isfinite(weight).all() and np.isfinite(initializer(result.model, "convB.bias")).all()
    assert np.isfinite(run_onnx(result.model, images(4))[0]).all()


def test_normal_equations_of_zero_rows_are_finite():
    equations = NormalEquations(systems=2, unknowns=4, outputs=3)
    equations.add(np.zeros((2, 10, 4)), np.ones((2, 10, 3)), part=0)
    equations.add(np.zeros((2, 5, 4)), np.ones((2, 5, 3)), part=1)
    fit = equations.solve(np.zeros((2, 4, 3)))
    assert np.isfinite(fit.solution).all() and fit.error == pytest.approx(1.0)


def test_lsq_warns_when_a_consumer_has_fewer_rows_than_unknowns(caplog):
    model, layer, channels = chain(CONSUMERS["gemm after flatten"])
    with caplog.at_level(logging.WARNING):
        _, result = prune_and_repair(model, layer, channels, images(40))
    assert result.layers[0]["rows"] == 36 and result.layers[0]["unknowns"] == 501
    assert any("36 rows for 501 unknowns" in r.message for r in caplog.records)
    assert np.isfinite(initializer(result.model, "fc.weight")).all()


def test_lsq_skips_a_consumer_with_computed_weights(caplog):
    model, layer, channels = chain(CONSUMERS["conv 3x3 padded"])
    analysis = analyze(model)
    plan = make_plan(analysis, analysis.group(layer).channel_ids(channels))
    pruned = remove_channels(plan)
    conv = next(n for n in pruned.graph.node if n.name == "convB")
    position = list(pruned.graph.node).index(conv)
    pruned.graph.node.insert(position, helper.make_node("Identity", [conv.input[1]], ["computed"], name="compute"))
    conv.input[1] = "computed"
    with caplog.at_level(logging.WARNING):
        result = run_repair("lsq", RepairInputs(model, pruned, kept_channels(plan), {"input": images()}))
    assert result.layers == []
    assert any("not refitting convB: its weights are not constants" in r.message for r in caplog.records)


def test_bn_reestimates_the_remaining_batchnorm_statistics():
    net = Net()
    x = net.conv("convA", "input", 3, 6, pads=[1, 1, 1, 1])
    y = net.conv("convB", net.op("Relu", "relu", [x]), 6, 4, pads=[1, 1, 1, 1])
    norm = net.op("BatchNormalization", "bn", [y, net.const("bn.scale", np.ones(4)), net.const("bn.bias", np.zeros(4)),
                                                net.const("bn.mean", np.zeros(4)), net.const("bn.var", np.ones(4))])
    model = net.model(norm)
    data = images(32)
    pruned, result = prune_and_repair(model, "convA", [0, 1], data, repair="bn")
    features = pruned.graph.node[[n.op_type for n in pruned.graph.node].index("BatchNormalization")].input[0]
    tapped = onnx.ModelProto()
    tapped.CopyFrom(pruned)
    tapped.graph.output.append(helper.make_tensor_value_info(features, TensorProto.FLOAT, None))
    values = run_onnx(tapped, data)[-1].astype(np.float64)
    np.testing.assert_allclose(initializer(result.model, "bn.mean"), values.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(initializer(result.model, "bn.var"), values.var(axis=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert result.layers[0]["layer"] == "bn" and result.layers[0]["channels"] == 4


def test_none_returns_the_pruned_model_and_a_plugin_can_register_a_repair():
    model, layer, channels = chain(CONSUMERS["conv 1x1"])
    pruned, result = prune_and_repair(model, layer, channels, images(4), repair="none")
    assert result.model is pruned

    @register_repair("test-identity", needs_data=False, help="a test repair")
    def identity(inputs):
        return onnxcar.repair.RepairResult(inputs.pruned, [{"layer": "all"}])

    assert "test-identity" in REPAIRS.names()
    assert run_repair("test-identity", RepairInputs(model, pruned, {}, {})).layers == [{"layer": "all"}]


@pytest.fixture
def toy_files(tmp_path):
    """A chain model with a removable linear combination, and float image data for it."""
    model, _, _ = chain(CONSUMERS["conv 3x3 padded"])
    path = tmp_path / "toy.onnx"
    onnx.save(model, path)
    data = tmp_path / "data.npz"
    np.savez(data, images=images(60))
    return path, data


def test_prune_repairs_after_the_check_and_reports_it(toy_files, tmp_path):
    path, data = toy_files
    spec = onnxcar.Data(str(data), preprocess="none", labels_key=None)
    result = onnxcar.prune(path, target=onnxcar.Count(1), layers=["convA"], criterion="l1", data=spec,
                           task="regression", repair="lsq")
    entry = result.report["repair"]
    assert entry["name"] == "lsq" and entry["images"] == 60 and entry["layers"][0]["layer"] == "convB"
    assert entry["metric_after"] < entry["metric_before"] and entry["kept"]  # MSE against the original's outputs
    assert result.final_metric == entry["metric_after"] and result.max_verify_error is not None
    assert entry["peak_bytes"] > 0 and result.timings["repair"] >= 0
    unrepaired = onnxcar.prune(path, target=onnxcar.Count(1), layers=["convA"], criterion="l1", data=spec,
                               task="regression")
    assert unrepaired.report["repair"] is None


def test_prune_keeps_the_pruned_model_when_the_repair_worsens_the_pruning_set_metric(toy_files):
    @register_repair("test-scale", help="a test repair that scales one layer's weights")
    def scale(inputs):
        model = onnx.ModelProto()
        model.CopyFrom(inputs.pruned)
        weight = next(t for t in model.graph.initializer if t.name == "convB.weight")
        weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 5, weight.name))
        return onnxcar.repair.RepairResult(model)

    path, data = toy_files
    spec = onnxcar.Data(str(data), preprocess="none", labels_key=None)
    result = onnxcar.prune(path, target=onnxcar.Count(1), layers=["convA"], criterion="l1", data=spec,
                           task="regression", repair="test-scale")
    entry = result.report["repair"]
    assert not entry["kept"] and entry["metric_after"] > entry["metric_before"]
    assert result.final_metric == entry["metric_before"]
    kept = [c for c in range(6) if c != result.removals[0].channel]
    np.testing.assert_array_equal(initializer(result.model, "convB.weight"),
                                  initializer(onnx.load(path), "convB.weight")[:, kept])


def test_cli_refuses_a_repair_without_data(run_cli, toy_files, tmp_path):
    path, _ = toy_files
    result = run_cli("prune", path, "--count", "1", "--repair", "lsq", "-o", tmp_path / "out.onnx")
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "repair needs data" in result.output and "--repair-data" in result.output
    assert not (tmp_path / "out.onnx").exists()


def test_cli_repairs_on_repair_data(run_cli, toy_files, tmp_path):
    path, data = toy_files
    out = tmp_path / "out.onnx"
    result = run_cli("prune", path, "--layers", "convA", "--count", "1", "--repair", "lsq", "--repair-data", data,
                     "--repair-limit", "40", "--json", "-o", out)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["repair"]["images"] == 40 and report["repair"]["metric_before"] is None
    assert report["repair"]["layers"][0]["applied"]
    assert np.isfinite(run_onnx(onnx.load(out), images(4))[0]).all()


RECIPE = f"""
model = "{SAMPLES / 'alexnet_cifar10.onnx'}"

[data.prune]
path = "{SAMPLES / 'cifar10_prune_1000.npz'}"
preprocess = "cifar10"
limit = 100

[data.train]
path = "{SAMPLES / 'cifar10_prune_1000.npz'}"
preprocess = "cifar10"
limit = 300

[[stages]]
kind = "prune"
criterion = "l1"
layers = ["conv1"]
count = 8
repair = "lsq"
repair_data = "train"
repair_limit = 200

[gates]
max_params = 2_000_000
"""


def test_a_recipe_prune_stage_repairs_on_its_data_role(tmp_path, run_cli):
    from onnxcar.pipeline.recipe import load_recipe

    path = tmp_path / "recipe.toml"
    path.write_text(RECIPE)
    stage, = load_recipe(path).stages
    assert stage.roles == ("train",) and stage.settings()["repair"] == "lsq"
    result = run_cli("run", path, "--output-dir", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    entry = json.loads(result.output)["stages"][0]["report"]["repair"]
    assert entry["name"] == "lsq" and entry["images"] == 200 and entry["layers"][0]["layer"] == "/conv2/Conv"


def test_kept_after_lets_the_registry_repair_a_prune_result(toy_files):
    path, _ = toy_files
    original = onnx.load(path)
    result = onnxcar.prune(original, target=onnxcar.Count(1), layers=["convA"], criterion="l1")
    kept = kept_after(original, result.removals)
    assert list(kept) == ["convA_out"] and len(kept["convA_out"]) == 5
    repaired = run_repair("lsq", RepairInputs(original, result.model, kept, {"input": images(64)}))
    assert [r["layer"] for r in repaired.layers] == ["convB"] and repaired.layers[0]["applied"]
