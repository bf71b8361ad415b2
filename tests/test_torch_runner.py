"""The torch runner: OrtRunner's predictions and CAR scores, by --runner torch, and its precisions."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from onnxcar.cli.main import main  # noqa: E402
from onnxcar.data import DataSpec, Preprocess, load_dataset  # noqa: E402
from onnxcar.errors import OnnxcarError  # noqa: E402
from onnxcar.graph import analyze  # noqa: E402
from onnxcar.importance.batch import make_batch  # noqa: E402
from onnxcar.importance.data import Batch, DataScorer, ReductionIndex  # noqa: E402
from onnxcar.tasks import Task  # noqa: E402
from onnxcar.io import load_model  # noqa: E402
from onnxcar.pruning.driver import greedy  # noqa: E402
from onnxcar.runners import make_runner  # noqa: E402
from onnxcar.runners.config import RunnerConfig  # noqa: E402
from onnxcar.runners.ort import OrtRunner  # noqa: E402
from onnxcar.runners.torch_runner import TorchRunner  # noqa: E402
from onnxcar.surgery.verify import random_feeds  # noqa: E402
from tests.conftest import Exhaustive  # noqa: E402
from tests.zoo import exported, handbuilt  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
TORCH = RunnerConfig(runner="torch")
ZOO = {f"exported/{n}": (lambda n=n: exported.export(n, exporter="torchscript", fold_bn=True)) for n in exported.NAMES}
ZOO.update({f"handbuilt/{n}": build for n, build in handbuilt.CASES.items()})


def outputs(model: onnx.ModelProto, feeds: dict, config: RunnerConfig = RunnerConfig()) -> list[np.ndarray]:
    with make_runner(model, config) as runner:
        return runner.run(feeds)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_torch_runner_predicts_like_onnxruntime(name):
    model = ZOO[name]()
    feeds = random_feeds(model, 8, seed=1)
    expected, got = outputs(model, feeds)[0], outputs(model, feeds, TORCH)[0]
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(got.reshape(8, -1).argmax(axis=1), expected.reshape(8, -1).argmax(axis=1))


def test_run_returns_the_named_outputs_in_the_order_asked():
    model = handbuilt.conv_to_output()  # outputs "output" and "features"
    feeds = random_feeds(model, 2, seed=0)
    with OrtRunner(model) as ort_runner, TorchRunner(model) as torch_runner:
        assert [o.name for o in torch_runner.outputs()] == [o.name for o in ort_runner.outputs()] == ["output", "features"]
        assert [(i.name, i.shape, i.type) for i in torch_runner.inputs()] == [
            (i.name, i.shape, i.type) for i in ort_runner.inputs()
        ]
        features, logits = torch_runner.run(feeds, ["features", "output"])
        expected = ort_runner.run(feeds, ["features", "output"])
        np.testing.assert_allclose(features, expected[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(logits, expected[1], rtol=1e-4, atol=1e-5)
        with pytest.raises(OnnxcarError, match="not graph outputs"):
            torch_runner.run(feeds, ["nowhere"])
        with pytest.raises(OnnxcarError, match="no feeds for inputs"):
            torch_runner.run({}, None)


def _write_eval_data(tmp_path, model: onnx.ModelProto):
    feeds = random_feeds(model, 40, seed=3)
    labels = outputs(model, feeds)[0].argmax(axis=1)
    labels[::4] = (labels[::4] + 1) % 10
    onnx.save(model, tmp_path / "model.onnx")
    np.savez(tmp_path / "data.npz", images=feeds["input"], labels=labels)


def test_eval_with_the_torch_runner_equals_onnxruntime(tmp_path):
    _write_eval_data(tmp_path, exported.export("resnet_blocks", exporter="torchscript", fold_bn=False))
    results = {}
    for runner in ("ort", "torch"):
        result = CliRunner().invoke(main, ["eval", str(tmp_path / "model.onnx"), "--data", str(tmp_path / "data.npz"),
                                           "--runner", runner, "--batch-size", "16", "--json"])
        assert result.exit_code == 0, (result.stdout, result.stderr)
        results[runner] = json.loads(result.stdout)
    assert results["torch"] == results["ort"]
    assert results["ort"]["top1"] == pytest.approx(0.75)


@pytest.mark.parametrize("linear", [True, False], ids=["rank-1", "masked"])
def test_car_scores_with_the_torch_runner_equal_onnxruntime(linear):
    model = exported.export("resnet_blocks", exporter="torchscript", fold_bn=False)
    analysis = analyze(model)
    inputs = random_feeds(model, 24, seed=2)
    labels = outputs(model, inputs)[0].argmax(axis=1)
    labels[::3] = (labels[::3] + 1) % 10
    scores = {}
    for runner in ("ort", "torch"):
        scorer = DataScorer(Batch(inputs, labels), Task(), RunnerConfig(batch_size=64, runner=runner), linear=linear)
        group = [g for g in analysis.groups if g.prunable][-1]
        scores[runner] = ReductionIndex(scorer)(analysis, group, frozenset(group.channel_ids([0])))
        scorer.close()
    assert np.isinf(scores["ort"][0]) and np.ptp(scores["ort"][1:]) > 0  # a real ranking, not all ties
    np.testing.assert_array_equal(scores["torch"], scores["ort"])


def test_tf32_and_fp16_precision_on_cpu():
    """On CPU, tf32 is fp32; fp16 moves logits a little and keeps (almost) every top-1."""
    model = exported.export("resnet_blocks", exporter="torchscript", fold_bn=True)
    feeds = random_feeds(model, 64, seed=4)
    fp32 = outputs(model, feeds, TORCH)[0]
    np.testing.assert_array_equal(outputs(model, feeds, RunnerConfig(runner="torch", precision="tf32"))[0], fp32)
    fp16 = outputs(model, feeds, RunnerConfig(runner="torch", precision="fp16"))[0]
    assert fp16.dtype == np.float32
    error = np.abs(fp16 - fp32).max() / np.abs(fp32).max()
    assert 0 < error < 1e-2
    assert np.mean(fp16.argmax(axis=1) == fp32.argmax(axis=1)) >= 0.95


def test_fp16_failure_and_bad_combinations_are_clear_errors():
    model = handbuilt.CASES["identity_dropout_cast"]()  # a Cast back to float32 meets fp16 weights
    with pytest.raises(OnnxcarError, match="not every op of this model runs in half precision"):
        outputs(model, random_feeds(model, 2, seed=0), RunnerConfig(runner="torch", precision="fp16"))
    with pytest.raises(OnnxcarError, match="the ort runner runs fp32, not fp16"):
        make_runner(model, RunnerConfig(precision="fp16"))
    with pytest.raises(OnnxcarError, match="unknown runner"):
        make_runner(model, RunnerConfig(runner="tvm"))
    if not torch.cuda.is_available():
        with pytest.raises(OnnxcarError, match="device cuda needs"):
            TorchRunner(model, RunnerConfig(runner="torch", device="cuda"))


def test_cli_precision_without_the_torch_runner_is_a_one_line_error(tmp_path):
    _write_eval_data(tmp_path, handbuilt.CASES["conv_bias"]())
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "model.onnx"), "--data", str(tmp_path / "data.npz"),
                                       "--precision", "fp16"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["onnxcar: error: the ort runner runs fp32, not fp16 (see --precision, --runner)"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_car_on_cuda_picks_what_onnxruntime_on_cpu_picks():
    """The sample's conv2, 300 images: greedy CAR with early stopping on CUDA, exhaustive CAR on
    CUDA and greedy CAR on onnxruntime's CPU provider remove the same filters."""
    model = load_model(SAMPLES / "alexnet_cifar10.onnx")
    spec = DataSpec(SAMPLES / "cifar10_prune_1000.npz", preprocess=Preprocess.preset("cifar10"), limit=300)
    batch = make_batch(model, load_dataset(spec), Task(), RunnerConfig())
    analysis = analyze(model)
    group = analysis.group("conv2")
    runs = {}
    for label, config, exhaustive in [
        ("ort-cpu", RunnerConfig(device="cpu", batch_size=256), False),
        ("torch-cuda", RunnerConfig(runner="torch", device="cuda", batch_size=1024), False),
        ("torch-cuda-exhaustive", RunnerConfig(runner="torch", device="cuda", batch_size=1024), True),
    ]:
        scorer = DataScorer(batch, Task(), config)
        index = Exhaustive(ReductionIndex(scorer)) if exhaustive else ReductionIndex(scorer)
        runs[label] = [(r.channel, r.metric) for r in greedy(analysis, group, index, 4, scorer=scorer)]
        scorer.close()
    assert runs["torch-cuda"] == runs["torch-cuda-exhaustive"]
    assert [c for c, _ in runs["torch-cuda"]] == [c for c, _ in runs["ort-cpu"]]
    np.testing.assert_allclose([m for _, m in runs["torch-cuda"]], [m for _, m in runs["ort-cpu"]], atol=1 / 300)
