"""The onnxcar command-line contract: help and version, one-line user errors, and the JSON of inspect, eval, score.

Most cases run in-process through click's CliRunner; a few key ones run the installed ``onnxcar``
console script as a real subprocess, where stderr is the process's own (so C++ log lines count too).
"""

import errno
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import numpy_helper
from PIL import Image

from onnxcar import __version__
from onnxcar.cli.main import main
from tests.hostile import dds, npy_raw
from tests.zoo import handbuilt

COMMANDS = ("inspect", "eval", "score", "prune")
N_IMAGES = 48


# ----------------------------------------------------------------------------- helpers


def invoke(*args):
    """Runs the CLI in-process; returns click's Result (stdout and stderr apart)."""
    return CliRunner().invoke(main, [str(a) for a in args])


def cli_command() -> list[str]:
    """The installed console script, or the same entry point through this interpreter."""
    script = shutil.which("onnxcar")
    return [script] if script else [sys.executable, "-c", "from onnxcar.cli.main import main; main()"]


def run_process(*args, cwd=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*cli_command(), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


def assert_user_error(code: int, stdout: str, stderr: str, *fragments: str, exception=None) -> str:
    """Exit 2, nothing on stdout, exactly one stderr line ``onnxcar: error: ...`` holding ``fragments``."""
    where = f"exit {code}\nstdout: {stdout!r}\nstderr: {stderr!r}"
    assert exception is None or isinstance(exception, SystemExit), f"{exception!r}\n{where}"
    assert "Traceback" not in stdout + stderr, where
    assert code == 2, where
    lines = stderr.splitlines()
    assert len(lines) == 1, where
    assert lines[0].startswith("onnxcar: error: "), where
    assert stdout == "", where
    for fragment in fragments:
        assert fragment in lines[0], where
    return lines[0]


def assert_cli_error(result, *fragments: str) -> str:
    return assert_user_error(result.exit_code, result.stdout, result.stderr, *fragments, exception=result.exception)


def assert_ok(result):
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr, result.exception)
    return result


def logits(model_path, images: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


def flipped(data: bytes, position: int, bit: int) -> bytes:
    out = bytearray(data)
    out[position] ^= 1 << bit
    return bytes(out)


def offset_of(data: bytes, needle: bytes) -> int:
    position = data.find(needle)
    assert position >= 0 and data.find(needle, position + 1) < 0, f"{needle!r} is not unique in the model"
    return position


# ----------------------------------------------------------------------------- the workspace


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> SimpleNamespace:
    """A good model (flatten_gemm: conv_a 4->8 -> Relu -> MaxPool -> Flatten -> Gemm 128->10) with data, and bad files."""
    root = tmp_path_factory.mktemp("cli")
    model = handbuilt.CASES["flatten_gemm"]()
    good = model.SerializeToString()
    w = SimpleNamespace(root=root, model=root / "model.onnx")
    w.model.write_bytes(good)

    rng = np.random.default_rng(0)
    images = rng.standard_normal((N_IMAGES, 4, 8, 8), dtype=np.float32)
    predicted = logits(w.model, images).argmax(axis=1)
    labels = np.where(rng.random(N_IMAGES) < 0.6, predicted, rng.integers(0, 10, N_IMAGES)).astype(np.int64)
    w.images, w.labels = images, labels
    w.data = root / "data.npz"
    np.savez(w.data, images=images, labels=labels)

    # ---- broken models
    w.missing = root / "missing.onnx"
    w.folder = root / "a_folder.onnx"
    w.folder.mkdir()
    w.empty = root / "empty.onnx"
    w.empty.write_bytes(b"")
    w.truncated = root / "truncated.onnx"
    w.truncated.write_bytes(good[: len(good) // 2])
    w.text = root / "text.onnx"
    w.text.write_text("this is a text file, not an ONNX model\n")
    flips = {
        # ir_version 8 -> 24 (byte 1 is the varint after the field tag 0x08)
        "flip_ir_version": (1, 4),
        # op_type "Conv" -> "Bonv": an op no opset defines
        "flip_op_type": (offset_of(good, b'"\x04Conv') + 2, 0),
        # the node name "conv_a" -> "\xe3onv_a": not UTF-8
        "flip_name_utf8": (offset_of(good, b"\x1a\x06conv_a") + 2, 7),
        # Conv attribute group 1 -> 0, and 1 -> 3 (which divides neither 4 inputs nor 8 filters)
        "flip_group_zero": (offset_of(good, b"\n\x05group\x18\x01") + 8, 0),
        "flip_group_three": (offset_of(good, b"\n\x05group\x18\x01") + 8, 1),
        # conv_a's input "conv_a.weight" becomes its name (field 1 -> 3): Conv(input, conv_a.bias)
        "flip_weight_dropped": (offset_of(good, b"\n\x05input\n\rconv_a.weight") + 7, 4),
    }
    for name, (position, bit) in flips.items():
        path = root / f"{name}.onnx"
        path.write_bytes(flipped(good, position, bit))
        setattr(w, name, path)

    # ---- broken data
    def npz(name, **arrays):
        path = root / f"{name}.npz"
        np.savez(path, **arrays)
        setattr(w, name, path)

    nan, inf = images.copy(), images.copy()
    nan[5, 1, 2, 3] = np.nan
    inf[7, 0, 0, 0] = np.inf
    npz("wrong_shape", images=rng.standard_normal((N_IMAGES, 3, 8, 8), dtype=np.float32), labels=labels)
    npz("wrong_hw", images=rng.standard_normal((N_IMAGES, 4, 9, 8), dtype=np.float32), labels=labels)
    npz("nhwc", images=np.ascontiguousarray(images.transpose(0, 2, 3, 1)), labels=labels)
    npz("nan_images", images=nan, labels=labels)
    npz("inf_images", images=inf, labels=labels)
    npz("label_too_high", images=images, labels=np.where(np.arange(N_IMAGES) == 3, 10, labels))
    npz("label_negative", images=images, labels=np.where(np.arange(N_IMAGES) == 3, -1, labels))
    npz("float_labels", images=images, labels=labels.astype(np.float32))
    npz("label_count", images=images, labels=labels[:-1])
    npz("zero_images", images=images[:0], labels=labels[:0])
    npz("no_arrays")
    npz("no_labels", images=images)
    npz("uint8_images", images=(rng.random((N_IMAGES, 4, 8, 8)) * 255).astype(np.uint8), labels=labels)
    w.not_npz = root / "not_an_archive.npz"
    w.not_npz.write_text("not a zip file\n")
    return w


def fill(args, w: SimpleNamespace, tmp_path) -> list[str]:
    """Replaces ``{name}`` tokens by the workspace path of that name ({out}: a fresh output in tmp_path)."""
    names = {**vars(w), "out": tmp_path / "out.onnx"}
    return [str(names[a[1:-1]]) if a.startswith("{") and a.endswith("}") else a for a in args]


# ----------------------------------------------------------------------------- help, version, -q/-v


def test_group_help_lists_every_command():
    for flag in ("--help", "-h"):
        result = assert_ok(invoke(flag))
        assert result.stdout.startswith("Usage:"), result.stdout
        for command in COMMANDS:
            assert command in result.stdout
        assert "--version" in result.stdout and "--quiet" in result.stdout and "--verbose" in result.stdout


COMMAND_OPTIONS = {
    "inspect": ["MODEL", "--json", "--all"],
    "eval": ["MODEL", "--data", "--task", "--json", "--no-labels", "--preprocess", "--batch-size"],
    "score": ["MODEL", "--layer", "--data", "--json", "--random-seed"],
    "prune": ["MODEL", "--criterion", "--ratio", "--count", "--max-drop", "--layers", "--per-iter", "--resume",
              "--force", "--output", "--report", "--data", "--no-labels", "--json"],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_command_help(command, flag):
    result = assert_ok(invoke(command, flag))
    first = result.stdout.splitlines()[0]
    assert first.startswith("Usage:") and f" {command} [OPTIONS] MODEL" in first, result.stdout
    for option in COMMAND_OPTIONS[command]:
        assert option in result.stdout, (command, option)
    assert result.stderr == ""


def test_version():
    result = assert_ok(invoke("--version"))
    assert __version__ in result.stdout
    assert result.stdout.strip().endswith(__version__)
    assert metadata.version("onnxcar") == __version__


@pytest.mark.parametrize("flags", [["-q"], ["--quiet"], ["-v"], ["-vv"], ["--verbose"], ["-q", "-v"]])
@pytest.mark.parametrize("after", [False, True], ids=["before-command", "after-command"])
def test_quiet_and_verbose_are_accepted(ws, flags, after):
    plain = json.loads(assert_ok(invoke("inspect", ws.model, "--json")).stdout)
    args = ["inspect", ws.model, "--json", *flags] if after else [*flags, "inspect", ws.model, "--json"]
    result = assert_ok(invoke(*args))
    assert json.loads(result.stdout) == plain


@pytest.mark.parametrize("after", [False, True], ids=["before-command", "after-command"])
def test_quiet_prune_prints_nothing_and_writes_its_outputs(ws, tmp_path, after):
    args = ["prune", ws.model, "-o", tmp_path / "out.onnx", "--ratio", "0.5"]
    result = assert_ok(invoke(*(args + ["-q"] if after else ["-q"] + args)))
    assert (result.stdout, result.stderr) == ("", "")
    assert len(json.loads((tmp_path / "out.json").read_text())["removed"]) == 4


def test_progress_goes_to_stderr_and_results_to_stdout(ws, tmp_path):
    done = run_process("prune", ws.model, "-o", tmp_path / "out.onnx", "--ratio", "0.5", "--json")
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["removed"]) == 4  # nothing but the JSON on stdout
    done = run_process("prune", ws.model, "-o", tmp_path / "again.onnx", "--ratio", "0.5")
    assert done.stdout.startswith("removed 4 filters") and len(done.stdout.splitlines()) == 1, done.stdout


# ----------------------------------------------------------------------------- user errors: models


MODEL_FAULTS = [
    # (workspace name, fragment the message must hold; None: the contract only)
    ("missing", "No such file"),
    ("folder", None),
    ("empty", "empty"),
    ("truncated", "not an ONNX model"),
    ("text", "not an ONNX model"),
    ("flip_ir_version", "IR version 24"),
    ("flip_op_type", "Bonv"),
    ("flip_name_utf8", None),
    ("flip_group_zero", None),
    ("flip_group_three", None),
    ("flip_weight_dropped", None),
]
COMMAND_ARGS = {
    "inspect": ["inspect", "{bad}", "--json"],
    "eval": ["eval", "{bad}", "--data", "{data}"],
    "score": ["score", "{bad}", "--layer", "conv_a", "--data", "{data}"],
    "prune": ["prune", "{bad}", "-o", "{out}", "--ratio", "0.5"],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("fault, fragment", MODEL_FAULTS, ids=[f for f, _ in MODEL_FAULTS])
def test_bad_model_is_one_line_error(ws, tmp_path, command, fault, fragment):
    args = [f"{{{fault}}}" if a == "{bad}" else a for a in COMMAND_ARGS[command]]
    result = invoke(*fill(args, ws, tmp_path))
    assert_cli_error(result, *([fragment] if fragment else []))
    assert not (tmp_path / "out.onnx").exists()


def test_bit_flips_never_crash_inspect(ws, tmp_path):
    """Single-bit flips over the model's first bytes (its node structure): a user error or a valid model, never a crash."""
    good = ws.model.read_bytes()
    path = tmp_path / "flip.onnx"
    crashes = []
    for position in range(0, 160):
        for bit in (0, 7):
            path.write_bytes(flipped(good, position, bit))
            result = invoke("inspect", path, "--json")
            if result.exit_code == 0:
                json.loads(result.stdout)
                continue
            try:
                assert_cli_error(result)
            except AssertionError:
                crashes.append((position, bit, result.exit_code, result.stderr.strip()[:120]))
    assert not crashes, f"{len(crashes)} flips crash inspect, e.g. {crashes[:4]}"


# ----------------------------------------------------------------------------- user errors: options, data, outputs


OPTION_ERRORS = [
    # id, arguments, fragments of the message
    ("unknown-layer-prune", ["prune", "{model}", "-o", "{out}", "--ratio", "0.5", "--layers", "conv_zz"],
     ["no layer named 'conv_zz'", "conv_a"]),
    ("unknown-layer-score", ["score", "{model}", "--layer", "conv_zz", "--data", "{data}"], ["no layer named 'conv_zz'"]),
    ("ratio-1.5", ["prune", "{model}", "-o", "{out}", "--ratio", "1.5"], ["--ratio", "1.5"]),
    ("ratio-0", ["prune", "{model}", "-o", "{out}", "--ratio", "0"], ["--ratio"]),
    ("ratio-negative", ["prune", "{model}", "-o", "{out}", "--ratio", "-0.25"], ["--ratio"]),
    ("ratio-and-count", ["prune", "{model}", "-o", "{out}", "--ratio", "0.5", "--count", "2"], ["exactly one"]),
    ("ratio-and-max-drop", ["prune", "{model}", "-o", "{out}", "--ratio", "0.5", "--max-drop", "1", "--data", "{data}"],
     ["exactly one"]),
    ("no-target", ["prune", "{model}", "-o", "{out}"], ["exactly one"]),
    ("count-0", ["prune", "{model}", "-o", "{out}", "--count", "0"], ["--count"]),
    ("max-drop-negative", ["prune", "{model}", "-o", "{out}", "--max-drop", "-1", "--data", "{data}"], ["--max-drop"]),
    ("car-without-data", ["prune", "{model}", "-o", "{out}", "--criterion", "car", "--ratio", "0.5"],
     ["criterion car", "--data"]),
    ("apoz-without-data", ["prune", "{model}", "-o", "{out}", "--criterion", "apoz", "--ratio", "0.5"], ["--data"]),
    ("max-drop-without-data", ["prune", "{model}", "-o", "{out}", "--max-drop", "1"], ["--max-drop", "--data"]),
    ("car-for-regression", ["prune", "{model}", "-o", "{out}", "--criterion", "car", "--task", "regression",
                            "--ratio", "0.5", "--data", "{data}"], []),
    ("data-option-without-data", ["prune", "{model}", "-o", "{out}", "--ratio", "0.5", "--limit", "5"],
     ["--limit", "--data"]),
    # click-level usage errors are user errors too
    ("output-missing", ["prune", "{model}", "--ratio", "0.5"], ["-o"]),
    ("data-path-missing", ["eval", "{model}", "--data", "{missing}"], []),
    ("ratio-not-a-number", ["prune", "{model}", "-o", "{out}", "--ratio", "half"], ["--ratio"]),
]


@pytest.mark.parametrize("args, fragments", [e[1:] for e in OPTION_ERRORS], ids=[e[0] for e in OPTION_ERRORS])
def test_option_errors(ws, tmp_path, args, fragments):
    result = invoke(*fill(args, ws, tmp_path))
    assert_cli_error(result, *fragments)
    assert sorted(tmp_path.iterdir()) == [], "a refused command writes nothing (no output, report or journal)"


LATE_ERRORS = [
    # a mistake, then the corrected command (same output path, no --force)
    (["--ratio", "0.5", "--layers", "conv_zz"], ["--ratio", "0.5", "--layers", "conv_a"]),
    (["--ratio", "0.5", "--layers", "classifier"], ["--ratio", "0.5", "--layers", "conv_a"]),
    (["--max-drop", "1"], ["--max-drop", "1", "--data", "{data}"]),
]


@pytest.mark.parametrize("wrong, right", LATE_ERRORS, ids=["unknown-layer", "unprunable-layer", "max-drop-no-data"])
def test_corrected_rerun_after_a_user_error(ws, tmp_path, wrong, right):
    """A refused run leaves nothing behind that blocks the corrected command (e.g. a journal)."""
    assert_cli_error(invoke(*fill(["prune", "{model}", "-o", "{out}", *wrong], ws, tmp_path)))
    result = invoke(*fill(["-q", "prune", "{model}", "-o", "{out}", *right], ws, tmp_path))
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out.onnx").exists() and not (tmp_path / "out.onnx.journal").exists()


DATA_FAULTS = [
    ("wrong_shape", [], ["images are shaped (48, 3, 8, 8)"]),
    ("wrong_hw", [], ["images are shaped (48, 4, 9, 8)"]),
    ("nhwc", [], ["images are shaped"]),
    ("nan_images", [], ["NaN", "image 5"]),
    ("inf_images", [], ["Inf", "image 7"]),
    ("label_too_high", [], ["labels range over [", "10]"]),
    ("label_negative", [], ["labels range over [-1"]),
    ("float_labels", [], ["integer class id"]),
    ("label_count", [], ["47 labels"]),
    ("zero_images", [], []),
    ("no_arrays", [], ["'images'"]),
    ("no_labels", [], ["'labels'"]),
    ("data", ["--labels-key", "targets"], ["'targets'"]),
    ("data", ["--images-key", "pixels"], ["'pixels'"]),
    ("uint8_images", [], ["--preprocess"]),
    ("not_npz", [], ["not_an_archive.npz"]),
]
DATA_COMMANDS = {
    "eval": ["eval", "{model}"],
    "score": ["score", "{model}", "--layer", "conv_a"],
    "prune-car": ["prune", "{model}", "-o", "{out}", "--criterion", "car", "--ratio", "0.5"],
    "prune-max-drop": ["prune", "{model}", "-o", "{out}", "--max-drop", "1"],
}


@pytest.mark.parametrize("command", DATA_COMMANDS)
@pytest.mark.parametrize(
    "fault, extra, fragments", DATA_FAULTS, ids=[f + "".join(e[:1]) for f, e, _ in DATA_FAULTS]
)
def test_data_errors(ws, tmp_path, command, fault, extra, fragments):
    args = [*DATA_COMMANDS[command], "--data", f"{{{fault}}}", *extra]
    assert_cli_error(invoke(*fill(args, ws, tmp_path)), *fragments)
    assert not (tmp_path / "out.onnx").exists()
    assert not (tmp_path / "out.onnx.journal").exists()


@pytest.mark.parametrize("outputs", [["-o", "{root}/pruned.json"], ["-o", "{out}", "--report", "{out}"]],
                         ids=["output-is-default-report", "report-is-output"])
def test_report_must_not_overwrite_the_model(ws, tmp_path, outputs):
    """The report goes to OUTPUT with .json unless --report says otherwise: never onto the model itself."""
    outputs = [str(tmp_path / "pruned.json") if a == "{root}/pruned.json" else a for a in outputs]
    args = fill(["prune", "{model}", *outputs, "--ratio", "0.5"], ws, tmp_path)
    result = invoke(*args)
    if result.exit_code == 0:  # then the model written must still be there
        onnx.checker.check_model(args[args.index("-o") + 1])
    else:
        assert_cli_error(result)


def regression_model() -> onnx.ModelProto:
    """conv_a (4->6) -> Relu -> conv_b -> GAP -> Flatten -> Gemm (6 -> 3 float outputs)."""
    g = handbuilt.GraphBuilder(11, in_channels=4, hw=8, name="regression")
    x = g.node("Relu", [g.conv(g.input, 4, 6, name="conv_a")])
    g.gemm(g.flatten(g.gap(g.conv(x, 6, 6, name="conv_b"))), 6, 3, name="head", out="output")
    return g.build()


REGRESSION_FAULTS = [
    ("nan-targets", lambda t: np.where(np.arange(t.size).reshape(t.shape) == 7, np.nan, t), ["NaN"]),
    ("inf-targets", lambda t: np.where(np.arange(t.size).reshape(t.shape) == 7, np.inf, t), ["Inf"]),
    ("targets-too-wide", lambda t: np.concatenate([t, t], axis=1), ["targets are shaped"]),
    ("one-target-for-three-outputs", lambda t: t[:, 0], []),
    ("target-count", lambda t: t[:-2], ["labels"]),
]
REGRESSION_COMMANDS = {
    "eval": ["eval", "{model}", "--task", "regression"],
    "prune-rar": ["prune", "{model}", "-o", "{out}", "--criterion", "rar", "--count", "2"],
}


@pytest.mark.parametrize("command", REGRESSION_COMMANDS)
@pytest.mark.parametrize("spoil, fragments", [f[1:] for f in REGRESSION_FAULTS], ids=[f[0] for f in REGRESSION_FAULTS])
def test_regression_target_errors(tmp_path, command, spoil, fragments):
    path = tmp_path / "model.onnx"
    onnx.save(regression_model(), path)
    images = np.random.default_rng(0).standard_normal((16, 4, 8, 8), dtype=np.float32)
    targets = logits(path, images).astype(np.float32)
    np.savez(tmp_path / "data.npz", images=images, labels=spoil(targets).astype(np.float32))
    args = [str(path) if a == "{model}" else str(tmp_path / "out.onnx") if a == "{out}" else a
            for a in REGRESSION_COMMANDS[command]]
    assert_cli_error(invoke(*args, "--data", tmp_path / "data.npz"), *fragments)
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("spelling", ["same", "dotdot", "symlink"])
@pytest.mark.parametrize("force", [False, True])
def test_output_equal_to_input(ws, tmp_path, spelling, force):
    model = tmp_path / "sub" / "model.onnx"
    model.parent.mkdir()
    shutil.copyfile(ws.model, model)
    before = model.read_bytes()
    output = {
        "same": model,
        "dotdot": tmp_path / "sub" / ".." / "sub" / "model.onnx",
        "symlink": tmp_path / "link.onnx",
    }[spelling]
    if spelling == "symlink":
        output.symlink_to(model)
    result = invoke("prune", model, "-o", output, "--ratio", "0.5", *(["--force"] if force else []))
    assert_cli_error(result, "input model")
    assert model.read_bytes() == before


@pytest.mark.parametrize("existing", ["out.onnx", "out.json"])
def test_existing_output_without_force_is_untouched(ws, tmp_path, existing):
    target = tmp_path / existing
    content = b"precious bytes \x00\x01\x02 that must survive\n"
    target.write_bytes(content)
    mtime = target.stat().st_mtime_ns
    result = invoke("prune", ws.model, "-o", tmp_path / "out.onnx", "--ratio", "0.5")
    assert_cli_error(result, "exists", "--force")
    assert target.read_bytes() == content
    assert target.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing], "nothing else may be written"
    # --force then overwrites both
    assert_ok(invoke("-q", "prune", ws.model, "-o", tmp_path / "out.onnx", "--ratio", "0.5", "--force"))
    onnx.checker.check_model(str(tmp_path / "out.onnx"))
    assert json.loads((tmp_path / "out.json").read_text())["output"] == str(tmp_path / "out.onnx")


@pytest.mark.parametrize("where, fragment", [("missing_dir/out.onnx", "does not exist"), ("a_dir", "folder")])
def test_unwritable_output(ws, tmp_path, where, fragment):
    (tmp_path / "a_dir").mkdir()
    assert_cli_error(invoke("prune", ws.model, "-o", tmp_path / where, "--ratio", "0.5"), fragment)


# ----------------------------------------------------------------------------- inspect --json

GROUP_KEYS = {"id", "channels", "prunable", "reason", "layers", "params_share", "macs_share", "members"}
ROLES = {"producer", "through", "consumer"}
INSPECT_CASES = ["flatten_gemm", "conv_bn_relu", "concat_channels", "residual_add_fanout", "se_gate",
                 "split_channels", "depthwise_conv", "softmax_channels", "conv_to_output", "lrn", "maxout"]


BLOCK_REASONS = {"softmax_channels": "Softmax", "conv_to_output": "graph output", "maxout": "split over axes"}


def check_inspect_schema(report: dict, model: onnx.ModelProto, path) -> None:
    assert set(report) == {"params", "macs", "groups", "model", "input_shapes", "custom_ops", "unsupported"}
    assert report["custom_ops"] == [] and report["unsupported"] is None
    assert report["model"] == str(path)
    assert set(report["input_shapes"]) == {i.name for i in model.graph.input}
    assert isinstance(report["params"], int) and report["params"] > 0
    assert isinstance(report["macs"], int) and report["macs"] > 0
    nodes = {n.name: n.op_type for n in model.graph.node}
    ids = [g["id"] for g in report["groups"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    for group in report["groups"]:
        assert set(group) == GROUP_KEYS, group.keys()
        assert isinstance(group["channels"], int) and group["channels"] >= 1
        assert isinstance(group["prunable"], bool)
        if group["prunable"]:
            assert group["reason"] is None
        else:
            assert isinstance(group["reason"], str) and group["reason"]
        for share in ("params_share", "macs_share"):
            assert isinstance(group[share], float | int) and 0.0 <= group[share] <= 1.0, group
        assert group["members"], group
        for member in group["members"]:
            assert set(member) == {"node", "op_type", "role"}
            assert member["role"] in ROLES
            assert nodes.get(member["node"]) == member["op_type"], member
        producers = [m for m in group["members"] if m["role"] == "producer"]
        assert producers and len(group["layers"]) == len(producers)
        assert all(isinstance(layer, str) and layer for layer in group["layers"])
        if group["prunable"]:
            assert group["params_share"] > 0


@pytest.mark.parametrize("case", INSPECT_CASES)
def test_inspect_json_schema(tmp_path, case):
    builder = handbuilt.CASES.get(case) or handbuilt.BLOCKED_CASES[case]
    model = builder()
    path = tmp_path / f"{case}.onnx"
    onnx.save(model, path)
    report = json.loads(assert_ok(invoke("inspect", path, "--json")).stdout)
    check_inspect_schema(report, model, path)
    prunable = [g for g in report["groups"] if g["prunable"]]
    conv_a = next(g for g in report["groups"] if "conv_a" in g["layers"])
    assert conv_a["prunable"] == (case in handbuilt.CASES), conv_a["reason"]
    if case in BLOCK_REASONS:
        assert BLOCK_REASONS[case] in conv_a["reason"]
    # the table agrees with the JSON
    table = assert_ok(invoke("inspect", path, "--all")).stdout
    assert f"{len(prunable)} of {len(report['groups'])} groups prunable" in table


def test_inspect_json_exported_model(tmp_path):
    exported = pytest.importorskip("tests.zoo.exported")
    model = exported.export("resnet_blocks", exporter="torchscript", fold_bn=True)
    path = tmp_path / "resnet_blocks.onnx"
    onnx.save(model, path)
    report = json.loads(assert_ok(invoke("inspect", path, "--json")).stdout)
    check_inspect_schema(report, model, path)
    layers = {layer for g in report["groups"] for layer in g["layers"]}
    assert "stem/conv" in layers and "layer2/layer2.0/conv1" in layers
    # the stem and both identity blocks' second convs share one residual group
    residual = next(g for g in report["groups"] if "stem/conv" in g["layers"])
    assert {"layer1/layer1.0/conv2", "layer1/layer1.1/conv2"} <= set(residual["layers"])
    assert residual["prunable"] and residual["channels"] == 8


def test_inspect_json_values_by_hand(ws):
    """flatten_gemm: conv_a (8x4x3x3 + 8) -> Relu -> MaxPool -> Flatten (8*4*4) -> Gemm (10x128 + 10)."""
    report = json.loads(assert_ok(invoke("inspect", ws.model, "--json")).stdout)
    conv_params, gemm_params = 8 * 4 * 9 + 8, 10 * 128 + 10
    assert report["params"] == conv_params + gemm_params
    assert report["macs"] == 8 * 8 * 8 * (4 * 9) + 128 * 10
    conv = next(g for g in report["groups"] if g["layers"] == ["conv_a"])
    assert conv["prunable"] and conv["reason"] is None and conv["channels"] == 8
    # removing every conv_a channel removes conv_a and every Gemm column it feeds
    assert conv["params_share"] == pytest.approx((conv_params + 10 * 128) / report["params"], abs=1e-6)
    assert conv["macs_share"] == pytest.approx(1.0)
    roles = {m["node"]: m["role"] for m in conv["members"]}
    assert roles["conv_a"] == "producer" and roles["classifier"] == "consumer"
    assert {roles[n] for n in roles if n not in ("conv_a", "classifier")} == {"through"}
    head = next(g for g in report["groups"] if g["layers"] == ["classifier"])
    assert not head["prunable"] and "graph output" in head["reason"] and head["channels"] == 10


# ----------------------------------------------------------------------------- eval --json


def hand_accuracy(w, images, labels):
    out = logits(w.model, images)
    top5 = np.argsort(-out, axis=1, kind="stable")[:, :5]
    return float(np.mean(out.argmax(axis=1) == labels)), float(np.mean((top5 == labels[:, None]).any(axis=1)))


@pytest.mark.parametrize("extra", [[], ["--batch-size", "1"], ["--batch-size", "7"], ["--threads", "1"],
                                   ["--preprocess", "none"], ["--device", "cpu"]])
def test_eval_json_matches_onnxruntime(ws, extra):
    result = json.loads(assert_ok(invoke("eval", ws.model, "--data", ws.data, "--json", *extra)).stdout)
    assert set(result) == {"top1", "top5", "n"}
    assert result["n"] == N_IMAGES
    top1, top5 = hand_accuracy(ws, ws.images, ws.labels)
    assert 0 < top1 < 1, "the fixture should be neither trivially right nor wrong"
    assert result["top1"] == pytest.approx(top1, abs=1e-12)
    assert result["top5"] == pytest.approx(top5, abs=1e-12)


def test_eval_limit_keeps_n_items(ws):
    result = json.loads(assert_ok(invoke("eval", ws.model, "--data", ws.data, "--json", "--limit", "20")).stdout)
    assert result["n"] == 20
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0


def test_eval_text_output(ws):
    result = assert_ok(invoke("eval", ws.model, "--data", ws.data))
    top1, _ = hand_accuracy(ws, ws.images, ws.labels)
    assert f"top-1 {top1:.2%}" in result.stdout and f"on {N_IMAGES} images" in result.stdout


# ----------------------------------------------------------------------------- score --json

SCORE_KEYS = {"index", "car", "tie", "l1", "l2", "mean-act", "apoz", "random"}
SCORE_CASES = [("flatten_gemm", "conv_a"), ("conv_bias", "conv_a"), ("conv_bias", "conv_b")]


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    model.graph.output.extend([onnx.helper.make_empty_tensor_value_info(n) for n in names])
    return model


def session_run(model: onnx.ModelProto, images: np.ndarray) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": images})


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    logits = logits.astype(np.float64)
    top = logits.max(axis=1, keepdims=True)
    return float(np.mean(top[:, 0] + np.log(np.exp(logits - top).sum(axis=1)) - logits[np.arange(len(labels)), labels]))


@pytest.mark.parametrize("case, layer", SCORE_CASES)
def test_score_json_by_hand(ws, tmp_path, case, layer):
    """Every column checked against its definition, computed here with numpy and onnxruntime."""
    model = handbuilt.CASES[case]()
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    images, rng = ws.images, np.random.default_rng(3)
    out = session_run(model, images)[0]
    labels = np.where(rng.random(len(images)) < 0.7, out.argmax(axis=1), rng.integers(0, 10, len(images)))
    data = tmp_path / "data.npz"
    np.savez(data, images=images, labels=labels)

    report = json.loads(assert_ok(invoke("score", path, "--layer", layer, "--data", data, "--json")).stdout)
    assert set(report) == {"kind", "version", "layer", "base_top1", "tie_break", "filters"}
    assert report["tie_break"] == "loss"
    assert report["layer"] == layer
    base = float(np.mean(out.argmax(axis=1) == labels))
    assert report["base_top1"] == pytest.approx(base, abs=1e-12)

    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    weight, bias = inits[f"{layer}.weight"], inits[f"{layer}.bias"]
    inspect = json.loads(assert_ok(invoke("inspect", path, "--json")).stdout)
    group = next(g for g in inspect["groups"] if layer in g["layers"])
    assert len(report["filters"]) == group["channels"] == len(weight)
    assert [f["index"] for f in report["filters"]] == list(range(len(weight)))

    # what the group's consumer reads, for mean-act and APoZ
    consumer = next(m["node"] for m in group["members"] if m["role"] == "consumer")
    read = next(n.input[0] for n in model.graph.node if n.name == consumer)
    activations = session_run(with_outputs(model, [read]), images)[1]
    activations = activations.reshape(len(images), len(weight), -1)

    for f in report["filters"]:
        assert set(f) == SCORE_KEYS
        i = f["index"]
        assert f["l1"] == pytest.approx(np.abs(weight[i]).astype(np.float64).sum(), rel=1e-9)
        assert f["l2"] == pytest.approx(np.sqrt((weight[i].astype(np.float64) ** 2).sum()), rel=1e-9)
        assert f["mean-act"] == pytest.approx(activations[:, i].astype(np.float64).mean(), rel=1e-4, abs=1e-6)
        assert f["apoz"] == pytest.approx(-np.mean(activations[:, i] == 0), abs=1e-9)
        assert 0.0 <= f["random"] < 1.0
        # CAR: the accuracy lost when filter i goes; zeroing its weight and bias is the same
        # here, as every consumer then reads zeros (Relu(0) = 0, GAP(0) = 0)
        zeroed = onnx.ModelProto.FromString(model.SerializeToString())
        for t in zeroed.graph.initializer:
            if t.name in (f"{layer}.weight", f"{layer}.bias"):
                values = numpy_helper.to_array(t).copy()
                values[i] = 0
                t.CopyFrom(numpy_helper.from_array(values, t.name))
        logits = session_run(zeroed, images)[0]
        without = float(np.mean(logits.argmax(axis=1) == labels))
        assert f["car"] == pytest.approx(base - without, abs=1e-12), i
        # the tie-break key: how much the mean cross-entropy grows
        assert f["tie"] == pytest.approx(cross_entropy(logits, labels) - cross_entropy(out, labels), abs=2e-6), i
    assert len({f["random"] for f in report["filters"]}) == len(weight)


def test_score_random_seed_changes_only_random(ws):
    a = json.loads(assert_ok(invoke("score", ws.model, "--layer", "conv_a", "--data", ws.data, "--json")).stdout)
    b = json.loads(assert_ok(invoke("score", ws.model, "--layer", "conv_a", "--data", ws.data, "--json",
                                    "--random-seed", "5")).stdout)
    assert [f["random"] for f in a["filters"]] != [f["random"] for f in b["filters"]]
    for fa, fb in zip(a["filters"], b["filters"]):
        assert {k: v for k, v in fa.items() if k != "random"} == {k: v for k, v in fb.items() if k != "random"}


# ----------------------------------------------------------------------------- real subprocesses


def test_subprocess_version_and_help():
    result = run_process("--version")
    assert result.returncode == 0, result.stderr
    assert __version__ in result.stdout
    result = run_process("prune", "--help")
    assert result.returncode == 0 and "--criterion" in result.stdout and result.stderr == ""


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["prune", "{missing}", "-o", "{out}", "--ratio", "0.5"], "No such file"),
        (["eval", "{model}", "--data", "{nan_images}"], "NaN"),
        # onnxruntime's own C++ log must not add a line to the error
        (["eval", "{flip_group_zero}", "--data", "{data}"], None),
    ],
    ids=["missing-model", "nan-images", "group-zero-model"],
)
def test_subprocess_user_error_is_one_line(ws, tmp_path, args, fragment):
    result = run_process(*fill(args, ws, tmp_path))
    assert_user_error(result.returncode, result.stdout, result.stderr, *([fragment] if fragment else []))


def test_subprocess_prune_json_round_trip(ws, tmp_path):
    result = run_process("prune", ws.model, "-o", tmp_path / "out.onnx", "--ratio", "0.5", "--json")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    printed = json.loads(result.stdout)
    assert printed == json.loads((tmp_path / "out.json").read_text())
    assert len(printed["removed"]) == 4
    assert not (tmp_path / "out.onnx.journal").exists()
    onnx.checker.check_model(str(tmp_path / "out.onnx"))
    assert os.path.getsize(tmp_path / "out.onnx") < os.path.getsize(ws.model)


# ----------------------------------------------------------------------------- hostile inputs (issue 13, items 7-16)


def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _tar(path, members: dict[str, bytes], mode="w"):
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buffer, format="png")
    return buffer.getvalue()


LYING_HEADER = "{'descr': '<f4', 'fortran_order': False, 'shape': (100000000000, 4, 8, 8)}"  # over 16 bytes


def _corrupt_gzip(path):
    _tar(path, {"a/0.png": _png(), "b/0.png": _png()}, "w:gz")
    data = bytearray(path.read_bytes())
    data[-8] ^= 1  # the CRC-32 in the gzip trailer
    path.write_bytes(bytes(data))
    return path


HOSTILE_DATA = [
    # id, writer of the data file in tmp_path, extra options, fragment of the message
    ("npz-member-not-npy", lambda p: _zip(p / "d.npz", {"images": _npy(np.zeros((2, 4, 8, 8), np.float32))}),
     ["--no-labels"], "not .npy data"),
    ("npz-bad-magic", lambda p: _zip(p / "d.npz", {"images.npy": b"XX" + _npy(np.zeros(2))[2:]}), ["--no-labels"],
     "magic string"),
    ("npz-bad-version", lambda p: _zip(p / "d.npz", {"images.npy": _npy(np.zeros(2))[:6] + b"\x09\x00"
                                                     + _npy(np.zeros(2))[8:]}), ["--no-labels"], "format version"),
    ("npz-0-d-labels", lambda p: _zip(p / "d.npz", {"images.npy": _npy(np.zeros((2, 4, 8, 8), np.float32)),
                                                    "labels.npy": _npy(np.int64(1))}), [], "single value"),
    ("npz-huge-shape", lambda p: _zip(p / "d.npz", {"images.npy": npy_raw(LYING_HEADER, bytes(16))}), ["--no-labels"],
     "header declares shape (100000000000, 4, 8, 8)"),
    ("dds-image", lambda p: _tar(p / "d.tar", {"a/0.png": _png(), "b/x.dds": dds()}), ["--preprocess", "none"],
     "Unimplemented pixel format"),
    ("tar-1100-deep", lambda p: _tar(p / "d.tar", {"a/" + "d/" * 1100 + "x.png": _png(), "b/0.png": _png()}),
     ["--preprocess", "none"], "images are shaped (2, 8, 8, 3)"),  # read through: the images just do not fit
    ("corrupt-gzip", lambda p: _corrupt_gzip(p / "d.tar.gz"), ["--preprocess", "none"], "CRC check failed"),
    ("too-many-members", lambda p: _tar(p / "d.tar", {f"a/{i}.png": _png() for i in range(5)}),
     ["--preprocess", "none", "--archive-max-files", "4"], "more than 4 members"),
    ("float-image", lambda p: _tar(p / "d.tar", {"a/0.tiff": _tiff(np.float32)}), ["--preprocess", "none"],
     "mode F pixels"),
]


def _tiff(dtype) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), 0.5, dtype)).save(buffer, format="tiff")
    return buffer.getvalue()


@pytest.mark.parametrize("make, extra, fragment", [h[1:] for h in HOSTILE_DATA], ids=[h[0] for h in HOSTILE_DATA])
def test_hostile_data_is_one_line_error(ws, tmp_path, make, extra, fragment):
    result = invoke("eval", ws.model, "--data", make(tmp_path), *extra)
    assert_cli_error(result, fragment)


def _custom_op_with_bad_name(path):
    """flatten_gemm with a custom-domain op after the Gemm whose op_type is not UTF-8 (the checker skips the domain)."""
    model = handbuilt.CASES["flatten_gemm"]()
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    gemm.output[0] = "pre"
    model.graph.node.append(onnx.helper.make_node("Zzzz", ["pre"], ["output"], domain="com.acme"))
    model.opset_import.append(onnx.helper.make_opsetid("com.acme", 1))
    path.write_bytes(model.SerializeToString().replace(b"Zzzz", b"\xdazzz"))
    return path


def _huge_input(path):
    """Conv(3 -> 4, 1x1) -> Relu -> Conv(4 -> 2) on inputs [N, 3, 2^40, 1]."""
    g = onnx.helper
    x = g.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 2**40, 1])
    y = g.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 2, 2**40, 1])
    weights = [numpy_helper.from_array(np.ones(s, np.float32), n) for n, s in (("w", (4, 3, 1, 1)), ("w2", (2, 4, 1, 1)))]
    nodes = [g.make_node("Conv", ["x", "w"], ["h"]), g.make_node("Relu", ["h"], ["r"]), g.make_node("Conv", ["r", "w2"], ["y"])]
    onnx.save(g.make_model(g.make_graph(nodes, "g", [x], [y], weights), opset_imports=[g.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("make, fragment", [(_custom_op_with_bad_name, "not valid UTF-8"),
                                            (_huge_input, "more than verification allows")],
                         ids=["op-type-not-utf8", "input-dims-2^40"])
def test_hostile_model_is_one_line_error_in_prune(tmp_path, make, fragment):
    result = invoke("-q", "prune", make(tmp_path / "model.onnx"), "-o", tmp_path / "out.onnx", "--ratio", "0.5")
    assert_cli_error(result, fragment)
    assert not (tmp_path / "out.onnx").exists()


@pytest.fixture
def external_model(ws, tmp_path):
    """ws's model saved as model_dir/model.onnx with its weights in model_dir/w.bin."""
    folder = tmp_path / "model_dir"
    folder.mkdir()
    onnx.save(onnx.load(ws.model), folder / "model.onnx", save_as_external_data=True, location="w.bin",
              size_threshold=0)
    return folder


@pytest.mark.parametrize("outputs", [["-o", "{dir}/w.bin"], ["-o", "{tmp}/out.onnx", "--report", "{dir}/w.bin"]],
                         ids=["output", "report"])
def test_force_never_overwrites_the_input_external_data(external_model, tmp_path, outputs):
    weights = (external_model / "w.bin").read_bytes()
    args = [a.format(dir=external_model, tmp=tmp_path) for a in outputs]
    result = invoke("prune", external_model / "model.onnx", *args, "--ratio", "0.5", "--force")
    assert_cli_error(result, "external data of the input model")
    assert (external_model / "w.bin").read_bytes() == weights


def test_the_journal_never_overwrites_the_input_external_data(ws, tmp_path):
    """Weights stored as out.onnx.journal: pruning to out.onnx would journal over them."""
    folder = tmp_path / "model_dir"
    folder.mkdir()
    onnx.save(onnx.load(ws.model), folder / "model.onnx", save_as_external_data=True, location="out.onnx.journal",
              size_threshold=0)
    weights = (folder / "out.onnx.journal").read_bytes()
    result = invoke("prune", folder / "model.onnx", "-o", folder / "out.onnx", "--ratio", "0.5", "--force")
    assert_cli_error(result, "external data of the input model")
    assert (folder / "out.onnx.journal").read_bytes() == weights


def _disk_full(monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)


def test_journal_on_a_full_disk_is_one_line_and_blocks_no_rerun(ws, tmp_path, monkeypatch):
    out = tmp_path / "out.onnx"
    with monkeypatch.context() as patch:
        _disk_full(patch)
        assert_cli_error(invoke("prune", ws.model, "-o", out, "--ratio", "0.5"), "No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "no journal, complete or not, is left"
    assert_ok(invoke("-q", "prune", ws.model, "-o", out, "--ratio", "0.5"))


def test_journal_in_a_read_only_folder_is_one_line(ws, tmp_path):
    if os.geteuid() == 0:  # root ignores permission bits; sysfs refuses new files even to root
        folder = Path("/sys")
        if not folder.is_dir():
            pytest.skip("no read-only folder for root")
    else:
        folder = tmp_path / "read_only"
        folder.mkdir()
        folder.chmod(0o555)
    result = invoke("prune", ws.model, "-o", folder / "onnxcar-test-out.onnx", "--ratio", "0.5")
    assert_cli_error(result, "cannot write", "onnxcar-test-out.onnx.journal")


def test_inspect_names_a_custom_domain_op_without_all(tmp_path):
    path = tmp_path / "custom.onnx"
    onnx.save(handbuilt.custom_domain_op(), path)
    text = " ".join(assert_ok(invoke("inspect", path)).stdout.split())
    assert "MACs unknown (shape inference cannot size the outputs of com.acme::Frobnicate)" in text
    assert text.endswith("0 of 3 groups prunable (--all lists the rest); ops of other domains without a channel "
                         "handler block theirs: com.acme::Frobnicate")
    assert json.loads(assert_ok(invoke("inspect", path, "--json")).stdout)["custom_ops"] == ["com.acme::Frobnicate"]
