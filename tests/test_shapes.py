"""Models with symbolic height and width: input shapes, MACs at a shape, pruning and verification (issue 14)."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from PIL import Image

import onnxcar
from onnxcar.cli.main import main
from onnxcar.errors import DataError, OnnxcarError, VerificationError
from onnxcar.graph import analyze
from onnxcar.graph.shapes import declared_shapes, resolve_input_shapes
from onnxcar.surgery import make_plan, mask_channels, remove_channels, verify_equal
from tests.conftest import remove_half_and_verify
from tests.zoo.dynamic import paddle_like


def _torch_dynamic() -> onnx.ModelProto:
    exported = pytest.importorskip("tests.zoo.exported")
    return exported.export("mobilenet_se", fold_bn=False, dynamic_hw=True)


# name: (builder, input name, classes, a prunable layer by the name inspect shows)
MODELS = {
    "paddle": (paddle_like, "x", 4, "conv2_linear"),
    "torch": (_torch_dynamic, "input", 10, "block1/expand/conv"),
}
SIZES = [(1, 3, 24, 64), (1, 3, 33, 47)]


@pytest.fixture(params=list(MODELS))
def case(request):
    build, name, classes, layer = MODELS[request.param]
    return build(), name, classes, layer


def static_twin(model: onnx.ModelProto, shape: tuple[int, ...]) -> onnx.ModelProto:
    """The model with its input declared at ``shape`` (batch aside): what the static path counts."""
    twin = onnx.ModelProto()
    twin.CopyFrom(model)
    for dim, size in zip(twin.graph.input[0].type.tensor_type.shape.dim[1:], shape[1:]):
        dim.Clear()
        dim.dim_value = size
    return twin


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_paddle_like_declares_symbolic_height_and_width():
    assert declared_shapes(paddle_like()) == {"x": [None, 3, None, None]}


@pytest.mark.parametrize("given, data, expected", [
    (None, None, {}),
    (None, {"x": (16, 3, 24, 64)}, {"x": (1, 3, 24, 64)}),
    ({"x": (2, 3, 48, 192)}, {"x": (16, 3, 24, 64)}, {"x": (2, 3, 48, 192)}),  # given wins over the data
])
def test_resolve_input_shapes(given, data, expected):
    assert resolve_input_shapes(paddle_like(), given, data) == expected


@pytest.mark.parametrize("given, message", [
    ({"y": (1, 3, 8, 8)}, "'y', which is not a model input; inputs: x"),
    ({"x": (1, 3, 8)}, r"gives 'x' as [1, 3, 8], but the model input takes [?, 3, ?, ?]"),
    ({"x": (1, 4, 8, 8)}, "gives 'x' as [1, 4, 8, 8]"),
    ({"x": (1, 3, 0, 8)}, "gives 'x' as [1, 3, 0, 8]"),
])
def test_resolve_input_shapes_refuses(given, message):
    with pytest.raises(OnnxcarError, match=message.replace("[", r"\[").replace("?", r"\?")):
        resolve_input_shapes(paddle_like(), given)


def test_inspect_counts_macs_at_the_given_shape(case):
    model, name, _, _ = case
    unknown = onnxcar.inspect(model)
    assert unknown.macs is None and unknown.input_shapes == {name: None}
    assert all(g["macs_share"] is None for g in unknown.groups) and unknown.params > 0
    counted = []
    for shape in SIZES:
        inspection = onnxcar.inspect(model, input_shapes={name: shape})
        twin = onnxcar.inspect(static_twin(model, shape))
        assert inspection.macs == twin.macs and inspection.macs > 0
        assert [g["macs_share"] for g in inspection.groups] == [g["macs_share"] for g in twin.groups]
        assert inspection.input_shapes == {name: list(shape)}
        counted.append(inspection.macs)
    assert counted[0] != counted[1]


def test_inspect_cli_says_unknown_without_a_shape(tmp_path, case):
    model, name, _, _ = case
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    report = json.loads(invoke("inspect", path, "--json").stdout)
    assert report["macs"] is None and report["input_shapes"] == {name: None}
    assert {g["macs_share"] for g in report["groups"]} == {None}
    table = invoke("inspect", path).stdout
    assert "MACs unknown" in " ".join(table.split()) and " 0 MACs" not in table
    sized = json.loads(invoke("inspect", path, "--json", "--input-shape", f"{name}:1x3x24x64").stdout)
    assert sized["macs"] == onnxcar.inspect(model, input_shapes={name: (1, 3, 24, 64)}).macs


def test_layer_names_of_generic_nodes_come_from_weights():
    inspection = onnxcar.inspect(paddle_like())
    assert [g["layers"] for g in inspection.prunable] == [
        ["conv1"], ["conv2_expand", "conv2_se_2"], ["conv2_se_1"], ["conv2_linear"], ["conv_last"]]


def _write_data(path, classes: int, shape: tuple[int, ...], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    np.savez(path, images=rng.standard_normal(shape).astype(np.float32), labels=rng.integers(0, classes, shape[0]))


@pytest.mark.parametrize("mode", ["data", "shape", "neither"])
def test_prune_cli(tmp_path, case, mode):
    model, name, classes, layer = case
    path, out = tmp_path / "m.onnx", tmp_path / "pruned.onnx"
    onnx.save(model, path)
    _write_data(tmp_path / "lines.npz", classes, (32, 3, 24, 64))
    given = {
        "data": ["--data", tmp_path / "lines.npz", "--preprocess", "none", "--criterion", "car"],
        "shape": ["--input-shape", f"{name}:1x3x40x40"],
        "neither": [],
    }[mode]
    result = invoke("prune", path, "--layers", layer, "--count", 2, "-o", out, "--json", *given)
    if mode == "neither":
        assert result.exit_code == 2 and not out.exists()
        line, = result.stderr.splitlines()
        assert line.startswith("onnxcar: error: checking the pruned model needs the size of the model input")
        assert line.endswith("(see --input-shape, --data)")
        return
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    shape = (1, 3, 24, 64) if mode == "data" else (1, 3, 40, 40)
    assert report["input_shapes"] == {name: list(shape)}
    assert report["before"]["macs"] == onnxcar.inspect(model, input_shapes={name: shape}).macs
    assert 0 < report["after"]["macs"] < report["before"]["macs"]
    assert report["verify_max_abs_error"] is not None and len(report["removed"]) == 2
    pruned = onnx.load(out)
    assert declared_shapes(pruned)[name][2:] == [None, None]  # still any size
    session = ort.InferenceSession(out.read_bytes(), providers=["CPUExecutionProvider"])
    for h, w in [(24, 64), (41, 30)]:
        assert session.run(None, {name: np.zeros((2, 3, h, w), np.float32)})[0].shape == (2, classes)


def test_remove_equals_mask_at_two_spatial_sizes(case):
    model, name, _, _ = case
    for shape in SIZES:
        analysis, _, result = remove_half_and_verify(model, input_shapes={name: shape})
        assert result.max_scaled_error <= 1.0 and any(g.prunable for g in analysis.groups)


def test_verification_on_real_samples_can_fail(case):
    model, name, _, _ = case
    analysis = analyze(model)
    group = next(g for g in analysis.groups if g.prunable)
    plan = make_plan(analysis, group.channel_ids([0]))
    masked, pruned = mask_channels(plan), remove_channels(plan)
    samples = {name: np.random.default_rng(3).standard_normal((20, 3, 30, 20)).astype(np.float32)}
    verify_equal(masked, pruned, batch_sizes=(), samples=samples)
    weight = next(i for i in pruned.graph.initializer if len(i.dims) == 4)
    values = onnx.numpy_helper.to_array(weight).copy()
    values.flat[0] += 1.0
    weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))
    with pytest.raises(VerificationError, match="differs from the masked model"):
        verify_equal(masked, pruned, batch_sizes=(), samples=samples)


def test_evaluate_refuses_data_of_another_shape_than_given(tmp_path):
    _write_data(tmp_path / "d.npz", 4, (8, 3, 24, 64))
    data = onnxcar.Data(str(tmp_path / "d.npz"), preprocess="none")
    assert onnxcar.evaluate(paddle_like(), data, input_shapes={"x": (1, 3, 24, 64)}).n == 8
    with pytest.raises(DataError, match=r"shaped \[3, 24, 64\] but input_shapes gives 'x' as \[1, 3, 48, 192\]"):
        onnxcar.evaluate(paddle_like(), data, input_shapes={"x": (1, 3, 48, 192)})


def test_image_folder_of_mixed_sizes_gives_one_size(tmp_path):
    rng = np.random.default_rng(0)
    for index, (h, w) in enumerate([(20, 30), (41, 24), (33, 33), (24, 60)]):
        folder = tmp_path / "lines" / f"c{index % 4}"
        folder.mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    data = onnxcar.Data(str(tmp_path / "lines"), preprocess=onnxcar.Preprocess.preset("cifar10", resize=24, crop=24))
    result = onnxcar.prune(paddle_like(), data=data, criterion="car", target=onnxcar.Count(1), layers=["conv1"])
    assert result.settings["input_shapes"] == {"x": [1, 3, 24, 24]} and result.max_verify_error is not None


def test_the_ir3_inception_v1_of_the_onnx_wheel_is_sized_through_its_lrns():
    """Folding its ConstantOfShape weights leaves initializers that are not inputs, which inference
    under IR 3 ignored: the LRN after conv2/3x3 and every Concat after it had no rank (issue 23)."""
    from tests.zoo import classic

    inspection = onnxcar.inspect(onnx.load(classic.classic_path("inception_v1")))
    assert [g["reason"] for g in inspection.groups if not g["prunable"]] == [
        "n143 (Softmax): Softmax normalises over the channel axis"]
    assert len(inspection.prunable) == 57 and inspection.macs == 1_431_556_352
