"""Fine-tuning through the torch bridge: it learns, writes back into the same graph, resumes exactly."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

torch = pytest.importorskip("torch")

import onnxcar  # noqa: E402
from onnxcar.bridge.finetune import FinetuneConfig, augment, finetune  # noqa: E402
from onnxcar.cli.main import main  # noqa: E402
from onnxcar.data import DataSpec, load_dataset  # noqa: E402
from onnxcar.data.spec import Preprocess  # noqa: E402
from onnxcar.errors import OnnxcarError  # noqa: E402
from onnxcar.graph import analyze  # noqa: E402
from onnxcar.surgery import make_plan, remove_channels  # noqa: E402
from tests.zoo import handbuilt  # noqa: E402

CLASSES = 4  # of the model's 10 outputs; class c brightens input channel c


def toy_data(n: int, seed: int, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """A learnable task, invariant to crops and flips: the label is the brightened channel."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    images = rng.standard_normal((n, 4, size, size)).astype(np.float32)
    images[np.arange(n), labels] += 2.0
    return images, labels


def dataset(path: Path, labelled: bool = True):
    return load_dataset(DataSpec(str(path), labels_key="labels" if labelled else None,
                                 preprocess=Preprocess.preset("none")))


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, fragment: str) -> None:
    where = f"exit {result.exit_code}\nstdout {result.stdout!r}\nstderr {result.stderr!r}"
    assert result.exit_code == 2, where
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("onnxcar: error: ") and fragment in lines[0], where


def top1(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": images})[0].argmax(axis=1)


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("toy")
    onnx.save(handbuilt.CASES["conv_bn_relu"](), folder / "model.onnx")
    for name, n, seed in (("train", 96, 0), ("val", 48, 1)):
        images, labels = toy_data(n, seed)
        np.savez(folder / f"{name}.npz", images=images, labels=labels)
    return folder


@pytest.fixture(scope="module")
def trained(toy) -> tuple[Path, object]:
    """The CLI run once: 3 epochs of SGD with augmentation."""
    out = toy / "out.onnx"
    result = invoke("finetune", toy / "model.onnx", "--data", toy / "train.npz", "--val", toy / "val.npz", "-o", out,
                    "--epochs", 3, "--lr", 0.1, "--batch-size", 16)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return out, result


def test_accuracy_goes_up_and_report_matches_onnxruntime(toy, trained):
    out, result = trained
    report = json.loads(out.with_suffix(".json").read_text())
    history = report["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]
    assert report["before"] == history[0]["val"] and report["after"] == history[report["best_epoch"]]["val"]
    assert report["after"] == max(h["val"] for h in history[1:])
    assert report["after"] >= report["before"] + 0.4, history
    assert history[1]["lr"] > history[3]["lr"]  # cosine schedule
    images, labels = np.load(toy / "val.npz")["images"], np.load(toy / "val.npz")["labels"]
    assert np.mean(top1(onnx.load(out), images) == labels) == pytest.approx(report["after"])  # eval mode, exact weights
    assert not Path(f"{out}.ckpt").exists()
    assert result.stdout.startswith(f"val top1 {report['before']:.4g} -> {report['after']:.4g} ")
    assert f"best epoch {report['best_epoch']} of 3" in result.stdout


def test_output_is_the_original_graph_with_new_weights(toy, trained):
    original, tuned = onnx.load(toy / "model.onnx"), onnx.load(trained[0])
    for field in ("ir_version", "producer_name", "opset_import", "metadata_props"):
        assert getattr(tuned, field) == getattr(original, field)
    for field in ("node", "input", "output", "value_info", "name"):
        assert getattr(tuned.graph, field) == getattr(original.graph, field)
    before = {i.name: i for i in original.graph.initializer}
    after = {i.name: i for i in tuned.graph.initializer}
    assert list(after) == list(before)
    assert all((a.dims, a.data_type) == (before[n].dims, before[n].data_type) for n, a in after.items())
    changed = {n for n in after if not np.array_equal(numpy_helper.to_array(after[n]), numpy_helper.to_array(before[n]))}
    assert {"conv_a.weight", "classifier.weight", "bn.running_mean", "bn.running_var"} <= changed  # BN trained


def _with_zeros(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """``model`` with every other entry of two weights set to exactly zero; returns those zero masks."""
    zeros = {}
    for init in model.graph.initializer:
        if init.name in ("conv_a.weight", "classifier.weight"):
            values = numpy_helper.to_array(init).copy()
            zeros[init.name] = (np.arange(values.size) % 2 == 0).reshape(values.shape)
            values[zeros[init.name]] = 0
            init.CopyFrom(numpy_helper.from_array(values, init.name))
    return model, zeros


@pytest.mark.parametrize("keep", [True, False])
def test_keep_sparsity_keeps_zeros_at_zero(toy, keep):
    model, zeros = _with_zeros(handbuilt.CASES["conv_bn_relu"]())
    config = FinetuneConfig(epochs=2, lr=0.1, batch_size=16, weight_decay=0.01, keep_sparsity=keep)
    tuned = finetune(model, dataset(toy / "train.npz"), dataset(toy / "val.npz"), config).model
    weights = {i.name: numpy_helper.to_array(i) for i in tuned.graph.initializer}
    for name, zero in zeros.items():
        assert np.all(weights[name][zero] == 0) == keep, name
        original = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == name))
        assert not np.array_equal(weights[name][~zero], original[~zero]), name  # the rest trained


class _Killed(Exception):
    pass


def _kill_after_first_epoch(record: dict) -> None:
    if record["epoch"] == 1:
        raise _Killed


def test_resume_gives_the_same_bytes_as_one_straight_run(toy, tmp_path):
    train, val = dataset(toy / "train.npz"), dataset(toy / "val.npz")
    model = handbuilt.CASES["conv_bn_relu"]()
    config = FinetuneConfig(epochs=2, lr=0.05, batch_size=16, seed=3)
    straight = finetune(model, train, val, config).model.SerializeToString()
    assert finetune(model, train, val, config).model.SerializeToString() == straight  # seeded
    ckpt = tmp_path / "out.onnx.ckpt"
    with pytest.raises(_Killed):
        finetune(model, train, val, config, checkpoint=ckpt, on_epoch=_kill_after_first_epoch)
    assert [h["epoch"] for h in torch.load(ckpt, weights_only=True)["history"]] == [0, 1]
    with pytest.raises(OnnxcarError, match="exists from an earlier run: resume it"):
        finetune(model, train, val, config, checkpoint=ckpt)
    with pytest.raises(OnnxcarError, match="different model, data or settings"):
        finetune(model, train, val, FinetuneConfig(epochs=2, lr=0.05, batch_size=16, seed=4), checkpoint=ckpt,
                 resume=True)
    seen = []
    resumed = finetune(model, train, val, config, checkpoint=ckpt, resume=True, on_epoch=seen.append)
    assert [r["epoch"] for r in seen] == [2] and [h["epoch"] for h in resumed.history] == [0, 1, 2]
    assert resumed.model.SerializeToString() == straight
    other_seed = FinetuneConfig(epochs=2, lr=0.05, batch_size=16, seed=4)
    assert finetune(model, train, val, other_seed).model.SerializeToString() != straight


def test_distillation_without_labels_raises_agreement(tmp_path):
    teacher = handbuilt.CASES["conv_bn_relu"]()
    analysis = analyze(teacher)
    halves = set().union(*(g.channel_ids(range(0, g.size, 2)) for g in analysis.groups if g.prunable))
    onnx.save(remove_channels(make_plan(analysis, halves)), tmp_path / "pruned.onnx")
    onnx.save(teacher, tmp_path / "teacher.onnx")
    rng = np.random.default_rng(5)
    for name, n in (("train", 96), ("val", 48)):
        np.savez(tmp_path / f"{name}.npz", images=rng.standard_normal((n, 4, 8, 8)).astype(np.float32))
    out = tmp_path / "student.onnx"
    result = invoke("finetune", tmp_path / "pruned.onnx", "--data", tmp_path / "train.npz", "--no-labels",
                    "--val", tmp_path / "val.npz", "--teacher", tmp_path / "teacher.onnx", "-o", out,
                    "--epochs", 2, "--optimizer", "adamw", "--lr", 0.01, "--batch-size", 16, "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    report = json.loads(result.stdout)
    assert report["after"] >= report["before"] + 0.3 and report["after"] >= 0.8, report["history"]
    images = np.load(tmp_path / "val.npz")["images"]
    agreement = np.mean(top1(onnx.load(out), images) == top1(teacher, images))
    assert agreement == pytest.approx(report["after"])


def test_augment_crops_padded_images_and_flips_them():
    images = torch.arange(6 * 3 * 8 * 8, dtype=torch.float32).reshape(6, 3, 8, 8) + 1
    out = augment(images, "NCHW", torch.Generator().manual_seed(0))
    nhwc = augment(images.permute(0, 2, 3, 1), "NHWC", torch.Generator().manual_seed(0))
    assert torch.equal(nhwc.permute(0, 3, 1, 2), out)
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    crops = [padded[:, :, y : y + 8, x : x + 8] for y in range(9) for x in range(9)]
    candidates = torch.stack(crops + [c.flip(3) for c in crops], dim=1)  # N, 162, C, H, W
    assert all(any(torch.equal(out[i], c) for c in candidates[i]) for i in range(len(images)))
    assert not torch.equal(out, images)


def test_finetune_without_torch_is_one_line_and_the_rest_of_the_cli_works(toy, tmp_path):
    script = """
import json, sys
sys.modules["torch"] = None
from click.testing import CliRunner
from onnxcar.cli.main import main
model, train, val, out = sys.argv[1:]
runs = {
    "finetune": ["finetune", model, "--data", train, "--val", val, "-o", out],
    "torch_runner": ["eval", model, "--data", val, "--runner", "torch"],
    "ort_runner": ["eval", model, "--data", val, "--json"],
}
results = {k: CliRunner().invoke(main, args) for k, args in runs.items()}
print(json.dumps({k: [r.exit_code, r.stdout, r.stderr] for k, r in results.items()}))
"""
    args = [toy / "model.onnx", toy / "train.npz", toy / "val.npz", tmp_path / "out.onnx"]
    done = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent, timeout=120)
    assert done.returncode == 0, done.stderr
    runs = json.loads(done.stdout)
    for key, what in (("finetune", "onnxcar finetune needs torch"), ("torch_runner", "the torch runner needs torch")):
        code, _, stderr = runs[key]
        assert code == 2 and len(stderr.splitlines()) == 1 and what in stderr, runs[key]
    code, stdout, _ = runs["ort_runner"]
    assert code == 0 and json.loads(stdout)["n"] == 48, runs["ort_runner"]


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["-o", "{tmp}/out.onnx"], "missing --val"),
        (["--val", "{toy}/val.npz"], "missing -o/--output"),
        (["--val", "{toy}/val.npz", "-o", "{tmp}/out.onnx", "--lr", "0"], "learning rate must be positive"),
        (["--val", "{tmp}/rgb.npz", "-o", "{tmp}/out.onnx"], "validation data: images are shaped (48, 3, 8, 8)"),
        (["--val", "{toy}/val.npz", "-o", "{tmp}/stale.onnx"], "stale.onnx.ckpt exists from an earlier run"),
    ],
    ids=["no-val", "no-output", "bad-lr", "wrong-shape", "stale-checkpoint"],
)
def test_bad_inputs_are_one_line_errors(toy, tmp_path, extra, fragment):
    np.savez(tmp_path / "rgb.npz", images=np.zeros((48, 3, 8, 8), np.float32), labels=np.zeros(48, np.int64))
    (tmp_path / "stale.onnx.ckpt").write_bytes(b"")
    extra = [e.format(tmp=tmp_path, toy=toy) for e in extra]
    result = invoke("finetune", toy / "model.onnx", "--data", toy / "train.npz", *extra)
    assert_one_line_error(result, fragment)


@pytest.fixture(scope="module")
def killed_checkpoint(toy, tmp_path_factory) -> tuple[dict, tuple]:
    """The checkpoint a 2-epoch run leaves when killed after epoch 1, and that run's arguments."""
    args = (handbuilt.CASES["conv_bn_relu"](), dataset(toy / "train.npz"), dataset(toy / "val.npz"),
            FinetuneConfig(epochs=2, lr=0.05, batch_size=16, seed=3))
    ckpt = tmp_path_factory.mktemp("ckpt") / "out.onnx.ckpt"
    with pytest.raises(_Killed):
        finetune(*args, checkpoint=ckpt, on_epoch=_kill_after_first_epoch)
    return torch.load(ckpt, weights_only=True), args


def _set(key, value):
    def spoil(state):
        state[key] = value
    return spoil


def _wrong_shape(state):
    name = next(iter(state["model"]))
    state["model"][name] = torch.zeros(1)


def _record_without_val(state):
    del state["history"][1]["val"]


CHECKPOINT_SPOILS = {
    "missing-field": lambda state: state.pop("optimizer"),
    "model-not-tensors": _set("model", 5),
    "weight-of-wrong-shape": _wrong_shape,
    "history-not-a-list": _set("history", "junk"),
    "history-record-without-val": _record_without_val,
    "best-epoch-out-of-range": _set("best_epoch", 99),
    "rng-not-bytes": _set("rng", torch.zeros(3)),
    "rng-wrong-length": _set("rng", torch.zeros(3, dtype=torch.uint8)),
    "optimizer-of-another-model": _set("optimizer", {"state": {}, "param_groups": []}),
}


@pytest.mark.parametrize("spoil", CHECKPOINT_SPOILS.values(), ids=CHECKPOINT_SPOILS.keys())
def test_checkpoint_with_the_right_run_and_bad_fields_is_a_user_error(killed_checkpoint, tmp_path, spoil):
    """Issue 13, item 16: the run id matches, the fields do not: one line naming the checkpoint."""
    state, args = killed_checkpoint
    state = {k: (dict(v) if isinstance(v, dict) else [dict(r) for r in v] if k == "history" else v)
             for k, v in state.items()}
    spoil(state)
    ckpt = tmp_path / "out.onnx.ckpt"
    torch.save(state, ckpt)
    with pytest.raises(OnnxcarError, match=f"cannot resume from checkpoint {re.escape(str(ckpt))}: .*; delete it") as info:
        finetune(*args, checkpoint=ckpt, resume=True)
    assert "\n" not in str(info.value)


def test_force_never_deletes_the_input_external_data_as_a_stale_checkpoint(toy, tmp_path):
    """Issue 13, item 14: weights stored as OUTPUT.ckpt are the input's, not a checkpoint to clear."""
    onnx.save(onnx.load(toy / "model.onnx"), tmp_path / "model.onnx", save_as_external_data=True,
              location="out.onnx.ckpt", size_threshold=0)
    weights = (tmp_path / "out.onnx.ckpt").read_bytes()
    result = invoke("finetune", tmp_path / "model.onnx", "--data", toy / "train.npz", "--val", toy / "val.npz",
                    "-o", tmp_path / "out.onnx", "--epochs", 1, "--force")
    assert_one_line_error(result, "out.onnx.ckpt: it is external data of the input model")
    assert (tmp_path / "out.onnx.ckpt").read_bytes() == weights


def test_a_model_of_symbolic_size_trains_on_data_of_another_size(tmp_path):
    model = handbuilt.CASES["conv_bn_relu"]()  # declared [batch, 4, 8, 8]
    for dim, name in zip(model.graph.input[0].type.tensor_type.shape.dim[2:], ("height", "width")):
        dim.dim_param = name
    for part, n, seed in (("train", 64, 0), ("val", 32, 1)):
        images, labels = toy_data(n, seed, size=12)
        np.savez(tmp_path / f"{part}.npz", images=images, labels=labels)
    train, val = (onnxcar.Data(str(tmp_path / f"{part}.npz"), preprocess="none") for part in ("train", "val"))
    result = onnxcar.finetune(model, train, val, FinetuneConfig(epochs=2, lr=0.1, batch_size=16),
                              input_shapes={"input": (1, 4, 12, 12)})
    assert [record["epoch"] for record in result.history] == [0, 1, 2]
    images, labels = np.load(tmp_path / "val.npz")["images"], np.load(tmp_path / "val.npz")["labels"]
    assert np.mean(top1(result.model, images) == labels) == pytest.approx(result.after)  # the weights written back
    assert top1(result.model, images[:, :, :8, :8]).shape == (32,)  # and still any size
    static = handbuilt.CASES["conv_bn_relu"]()  # the same model at its declared size refuses the data
    with pytest.raises(OnnxcarError, match=r"images are shaped \(64, 4, 12, 12\) but the model input takes"):
        onnxcar.finetune(static, train, val, FinetuneConfig(epochs=1))
