"""``onnxcar run``: a recipe end to end on the sample, its cache, gates and exit codes, resume
after a kill between stages, and one-line errors for bad recipes."""

import json
import os
import pathlib
import signal
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from onnxcar.cli.main import main
from tests.hostile import special_file
from tests.test_prune import cli_command

SAMPLES = pathlib.Path(__file__).resolve().parents[1] / "samples"
EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "sample_recipe.toml"

SMALL = f"""
model = "{SAMPLES / 'alexnet_cifar10.onnx'}"

[data.prune]
path = "{SAMPLES / 'cifar10_prune_1000.npz'}"
preprocess = "cifar10"
limit = 100

[data.train]
path = "{SAMPLES / 'cifar10_prune_1000.npz'}"
preprocess = "cifar10"
split = 0.2
split_part = "rest"
limit = 200

[data.val]
path = "{SAMPLES / 'cifar10_prune_1000.npz'}"
preprocess = "cifar10"
split = 0.2
limit = 100

[data.test]
path = "{SAMPLES / 'cifar10_test_2000.npz'}"
preprocess = "cifar10"
limit = 300

[[stages]]
kind = "prune"
criterion = "car"
layers = ["conv1"]
ratio = 0.25
per_iter = 6

[[stages]]
kind = "finetune"
epochs = 1
lr = 0.002
teacher = "original"

[[stages]]
kind = "evaluate"

[gates]
max_top1_drop = {{drop}}
max_params = 2_000_000
"""


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def recipe(tmp_path, drop: float = 50.0, text: str = SMALL) -> pathlib.Path:
    path = tmp_path / "recipe.toml"
    path.write_text(text.replace("{drop}", str(drop)))
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The small recipe run once, uninterrupted."""
    root = tmp_path_factory.mktemp("recipe")
    out = root / "out"
    result = invoke("run", recipe(root), "--output-dir", out, "--junit", root / "gates.xml", "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return root, out, json.loads(result.stdout)


def test_the_recipe_writes_its_artifacts_and_passes_its_gates(finished):
    root, out, report = finished
    assert report["kind"] == "pipeline" and report["passed"]
    assert [s["kind"] for s in report["stages"]] == ["prune", "finetune", "evaluate"]
    assert not any(s["cached"] for s in report["stages"])
    metrics = report["metrics"]
    assert metrics["params"] < 1_989_258 and metrics["size_ratio"] > 1
    assert metrics["top1_drop"] == pytest.approx(100 * (metrics["original_top1"] - metrics["top1"]))
    assert json.loads((out / "report.json").read_text()) == report
    assert (out / "model.onnx").stat().st_size == metrics["size_bytes"]
    cases = ET.parse(root / "gates.xml").getroot().iter("testcase")
    assert [c.get("name") for c in cases] == ["max_top1_drop", "max_params"]


def test_a_rerun_takes_every_stage_from_the_cache(finished):
    root, out, report = finished
    again = invoke("run", root / "recipe.toml", "--output-dir", out, "--json")
    assert again.exit_code == 0, again.stderr
    rerun = json.loads(again.stdout)
    assert all(s["cached"] for s in rerun["stages"])
    assert rerun["metrics"] == report["metrics"]


def test_a_failed_gate_exits_3_and_still_writes_the_artifacts(tmp_path, finished):
    root, out, report = finished
    strict = recipe(tmp_path, drop=-100.0)  # a test top-1 gain of 100 points: cannot pass
    result = invoke("run", strict, "--output-dir", out, "--junit", tmp_path / "gates.xml")
    assert result.exit_code == 3, (result.stdout, result.stderr)
    error = result.stderr.splitlines()[-1]  # after the progress bars
    assert error.startswith("onnxcar: error: 1 of 2 gates failed: max_top1_drop") and "FAILED by" in error
    saved = json.loads((out / "report.json").read_text())
    assert not saved["passed"] and saved["gates"][0]["name"] == "max_top1_drop"
    failure = ET.parse(tmp_path / "gates.xml").getroot().find(".//testcase[@name='max_top1_drop']/failure")
    assert failure is not None and "FAILED" in failure.get("message")
    assert all(s["cached"] for s in saved["stages"])  # the gate changed, not the stages


def test_dry_run_checks_and_runs_nothing(tmp_path):
    result = invoke("run", recipe(tmp_path), "--output-dir", tmp_path / "out", "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)["plan"]
    assert [(p["kind"], p["data"]) for p in plan] == [("prune", ["prune"]), ("finetune", ["train", "val"]),
                                                        ("evaluate", ["test"])]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_run_killed_between_stages_resumes_at_the_stage_it_was_in(tmp_path, finished):
    root, out, report = finished
    path = recipe(tmp_path)
    target = tmp_path / "out"
    process = subprocess.Popen([*cli_command(), "-q", "run", str(path), "--output-dir", str(target)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while not list((target / ".cache").glob("00-prune-*.json")):
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "the prune stage never finished"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    process.stderr.close()
    assert not (target / "model.onnx").exists()
    resumed = invoke("run", path, "--output-dir", target, "--json")
    assert resumed.exit_code == 0, resumed.stderr
    stages = json.loads(resumed.stdout)["stages"]
    assert [s["cached"] for s in stages] == [True, False, False]
    assert (target / "model.onnx").read_bytes() == (out / "model.onnx").read_bytes()


BAD_RECIPES = [
    # (what, edit of the small recipe, fragment the one-line error holds)
    ("unknown-key", lambda t: t.replace("per_iter = 6", "per_iteration = 6"), "stages[0]: unknown key 'per_iteration'"),
    ("unknown-kind", lambda t: t.replace('kind = "evaluate"', 'kind = "deploy"'), "stages[2].kind"),
    ("wrong-type", lambda t: t.replace("ratio = 0.25", 'ratio = "half"'), "stages[0].ratio must be a finite number"),
    ("nan-gate", lambda t: t.replace("max_params = 2_000_000", "max_params = nan"),
     "gates.max_params must be a finite number, got nan"),
    ("inf-ratio", lambda t: t.replace("ratio = 0.25", "ratio = inf"), "stages[0].ratio must be a finite number"),
    ("negative-gate", lambda t: t.replace("max_params = 2_000_000", "max_params = -1"),
     "gates.max_params must be 0 or more, got -1"),
    ("negative-threads", lambda t: t + "\n[runner]\nthreads = -5\n", "runner: threads must be 0 (the backend's default)"),
    ("zero-batch", lambda t: t + "\n[runner]\nbatch_size = 0\n", "runner: batch_size must be at least 1, got 0"),
    ("bad-value", lambda t: t.replace("ratio = 0.25", "ratio = 1.5"), "stages[0]: a ratio must lie"),
    ("missing-model", lambda t: t.replace("alexnet_cifar10.onnx", "nope.onnx"), "model:"),
    ("missing-data", lambda t: t.replace("cifar10_test_2000.npz", "nope.npz"), "data.test.path"),
    ("unknown-role", lambda t: t.replace("[data.test]", "[data.holdout]"), "data.holdout: unknown role"),
    ("unknown-gate", lambda t: t.replace("max_params", "max_weights"), "gates: unknown key 'max_weights'"),
    ("gate-without-metric", lambda t: t.replace('[[stages]]\nkind = "evaluate"\n', ""), "gates.max_top1_drop reads"),
    ("unknown-layer", lambda t: t.replace('layers = ["conv1"]', 'layers = ["conv9"]'), "no layer named 'conv9'"),
    ("toml-syntax", lambda t: t.replace("epochs = 1", "epochs = = 1"), "line"),
    ("unknown-top-level", lambda t: "name = 'x'\n" + t, "unknown key 'name'"),
    ("output-is-input", lambda t: t + '\n[outputs]\nmodel = "recipe.toml"\n', "also an input"),
    ("output-not-a-name", lambda t: t + '\n[outputs]\nmodel = "../m.onnx"\n', "outputs.model must be a file name"),
    ("output-is-parent", lambda t: t + '\n[outputs]\nmodel = ".."\n', "outputs.model must be a file name"),
    ("output-is-cache", lambda t: t + '\n[outputs]\nreport = ".cache"\n', "outputs.report must be a file name"),
    ("output-is-marker", lambda t: t + '\n[outputs]\nmodel = ".onnxcar-run"\n', "outputs.model must be a file name"),
    ("same-outputs", lambda t: t + '\n[outputs]\nmodel = "a.json"\nreport = "a.json"\n', "the same file"),
    ("shape-not-sizes", lambda t: t + '\n[input_shapes]\ninput = [1, 3, 0, 32]\n',
     "input_shapes.input must be a list of positive integers"),
    ("shape-of-no-input", lambda t: t + '\n[input_shapes]\nx = [1, 3, 32, 32]\n', "names 'x', which is not a model input"),
]


@pytest.mark.parametrize("what, edit, fragment", BAD_RECIPES, ids=[b[0] for b in BAD_RECIPES])
def test_a_bad_recipe_is_one_line_and_writes_nothing(tmp_path, what, edit, fragment):
    path = tmp_path / "recipe.toml"
    path.write_text(edit(SMALL.replace("{drop}", "5")))
    out = tmp_path if what == "output-is-input" else tmp_path / "out"
    before = sorted(tmp_path.iterdir())
    result = invoke("run", path, "--output-dir", out, "--force")
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("onnxcar: error: ") and fragment in lines[0], result.stderr
    assert sorted(tmp_path.iterdir()) == before


def test_an_output_folder_of_other_files_needs_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = invoke("run", recipe(tmp_path), "--output-dir", out, "--dry-run")
    assert result.exit_code == 2 and "holds files of something else" in result.stderr, result.stderr


def test_the_shipped_example_recipe_is_valid(tmp_path):
    result = invoke("run", EXAMPLE, "--output-dir", tmp_path / "out", "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    assert [p["kind"] for p in json.loads(result.stdout)["plan"]] == ["prune", "finetune", "evaluate"]


def test_a_budget_stage_and_a_backend_table_are_read(tmp_path):
    from onnxcar.pipeline.recipe import load_recipe

    text = SMALL.replace('layers = ["conv1"]\nratio = 0.25', "target_macs = 0.5") + '\n[backend]\nkind = "ray"\n'
    loaded = load_recipe(recipe(tmp_path, text=text))
    config = loaded.stages[0].config
    assert config.scope == "global" and config.target.keep == 0.5
    assert loaded.backend.kind == "ray" and loaded.backend.address is None
    bad = recipe(tmp_path, text=SMALL + '\n[backend]\nkind = "spark"\n')
    result = invoke("run", bad, "--output-dir", tmp_path / "out", "--dry-run")
    assert result.exit_code == 2 and "unknown backend 'spark'" in result.stderr, result.stderr
DYNAMIC = """
model = "{model}"
{shapes}
[[stages]]
kind = "prune"
layers = ["conv1"]
count = 2

[gates]
max_macs = 1e9
"""


def test_a_model_of_symbolic_size_runs_at_the_recipe_input_shapes(tmp_path):
    import onnx

    import onnxcar
    from tests.zoo.dynamic import paddle_like

    onnx.save(paddle_like(), tmp_path / "paddle.onnx")
    unsized = recipe(tmp_path, text=DYNAMIC.format(model=tmp_path / "paddle.onnx", shapes=""))
    result = invoke("run", unsized, "--output-dir", tmp_path / "out", "--dry-run")
    assert result.exit_code == 2 and "stages[0] (prune): checking the pruned model needs the size of the model " \
        "input 'x' [?, 3, ?, ?]: give data, or its shape in input_shapes (x:1x3xHxW)" in result.stderr, result.stderr
    shapes = "[input_shapes]\nx = [1, 3, 24, 64]\n"
    sized = recipe(tmp_path, text=DYNAMIC.format(model=tmp_path / "paddle.onnx", shapes=shapes))
    result = invoke("run", sized, "--output-dir", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    final = onnxcar.inspect(str(tmp_path / "out" / "model.onnx"), input_shapes={"x": (1, 3, 24, 64)})
    assert report["metrics"]["macs"] == final.macs and report["gates"][0]["passed"]
    assert final.macs < onnxcar.inspect(paddle_like(), input_shapes={"x": (1, 3, 24, 64)}).macs


COMPRESSING = SMALL.replace('''[[stages]]
kind = "finetune"
epochs = 1
lr = 0.002
teacher = "original"
''', '''[[stages]]
kind = "compress"
sparsity = "conv=0.5,fc=0.8"
bits = 4
''').replace("max_params = 2_000_000", "min_size_ratio = 8.0")


def test_a_compress_stage_leaves_its_container_beside_the_model(tmp_path):
    from onnxcar.compression import unpack

    out = tmp_path / "out"
    result = invoke("run", recipe(tmp_path, text=COMPRESSING), "--output-dir", out, "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    report = json.loads(result.stdout)
    assert [s["kind"] for s in report["stages"]] == ["prune", "compress", "evaluate"]
    container = (out / "model.onnxz").read_bytes()
    assert report["files"] == {"onnxz": str(out / "model.onnxz")}
    assert report["metrics"]["size_bytes"] == len(container)
    assert report["metrics"]["size_ratio"] == pytest.approx(report["metrics"]["original_size_bytes"] / len(container))
    assert unpack(container).SerializeToString() == (out / "model.onnx").read_bytes()
    assert report["stages"][1]["report"]["sparsity"]["conv1"] == 0.5

    (out / "model.onnxz").unlink()
    again = json.loads(invoke("run", tmp_path / "recipe.toml", "--output-dir", out, "--json").stdout)
    assert all(s["cached"] for s in again["stages"]) and (out / "model.onnxz").read_bytes() == container


def test_a_stage_that_changes_the_model_after_compress_drops_the_container(tmp_path):
    text = COMPRESSING.replace('[[stages]]\nkind = "evaluate"', '[[stages]]\nkind = "prune"\nlayers = ["conv2"]\ncount = 1\n\n'
                               '[[stages]]\nkind = "evaluate"').replace("min_size_ratio = 8.0", "")
    report = json.loads(invoke("run", recipe(tmp_path, text=text), "--output-dir", tmp_path / "out", "--json").stdout)
    assert report["files"] == {} and not (tmp_path / "out" / "model.onnxz").exists()
    assert report["metrics"]["size_bytes"] == (tmp_path / "out" / "model.onnx").stat().st_size


@pytest.mark.parametrize("edit, fragment", [
    (lambda t: t.replace('sparsity = "conv=0.5,fc=0.8"', 'sparsity = "conv9=0.5"'), "names 'conv9', which is no layer"),
    (lambda t: t.replace('sparsity = "conv=0.5,fc=0.8"', "sparsity = [0.5]"), "sparsity must be a finite number, or per layer"),
    (lambda t: t.replace("bits = 4", "bits = 12"), "bits must be whole numbers from 1 to 8"),
    (lambda t: t.replace("bits = 4", "bits = 4\ngradual = true"), "gradual pruning needs retraining epochs"),
])
def test_a_bad_compress_stage_is_one_line(tmp_path, edit, fragment):
    result = invoke("run", recipe(tmp_path, text=edit(COMPRESSING)), "--output-dir", tmp_path / "out", "--dry-run")
    assert result.exit_code == 2 and fragment in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr


QUICK = f"""
model = "{SAMPLES / 'alexnet_cifar10.onnx'}"

[data.prune]
path = "{SAMPLES / 'cifar10_prune_1000.npz'}"
preprocess = "cifar10"
limit = 50

[data.test]
path = "{SAMPLES / 'cifar10_test_2000.npz'}"
preprocess = "cifar10"
limit = 100

[[stages]]
kind = "prune"
criterion = "l1"
layers = ["conv1"]
count = 2

[[stages]]
kind = "evaluate"
"""


def _edit_top1(cache: pathlib.Path) -> None:
    entry = next(cache.glob("01-evaluate-*.json"))
    saved = json.loads(entry.read_text())
    saved["record"]["metrics"]["top1"] = 0.99
    entry.write_text(json.dumps(saved))


def _unpruned_model(cache: pathlib.Path) -> None:
    next(cache.glob("00-prune-*.onnx")).write_bytes((SAMPLES / "alexnet_cifar10.onnx").read_bytes())


def _truncated_entry(cache: pathlib.Path) -> None:
    entry = next(cache.glob("00-prune-*.json"))
    entry.write_bytes(entry.read_bytes()[:40])


def _truncated_model(cache: pathlib.Path) -> None:
    model = next(cache.glob("00-prune-*.onnx"))
    model.write_bytes(model.read_bytes()[:1000])


def _rehashed_without_key(cache: pathlib.Path) -> None:
    """An entry whose hash was recomputed after an edit: verified, then found incomplete."""
    from onnxcar.pipeline.cache import _digest

    entry = next(cache.glob("01-evaluate-*.json"))
    saved = json.loads(entry.read_text())
    del saved["digest"], saved["key"]
    entry.write_text(json.dumps({**saved, "digest": _digest(saved)}))


def _older_format(cache: pathlib.Path) -> None:
    """An entry as onnxcar wrote it before entries carried hashes."""
    entry = next(cache.glob("01-evaluate-*.json"))
    saved = json.loads(entry.read_text())
    entry.write_text(json.dumps({**saved["record"], "unchanged": True, "files": []}))


TAMPERS = [  # (what, edit of the cache, which stages the rerun takes from the cache)
    ("edited-metric", _edit_top1, [True, False]),
    ("replaced-model", _unpruned_model, [False, True]),  # the rebuilt prune gives the evaluation's key again
    ("truncated-entry", _truncated_entry, [False, True]),
    ("truncated-model", _truncated_model, [False, True]),
    ("rehashed-without-key", _rehashed_without_key, [True, False]),
    ("older-format", _older_format, [True, False]),
]


@pytest.mark.parametrize("what, tamper, cached", TAMPERS, ids=[t[0] for t in TAMPERS])
def test_a_tampered_cache_entry_is_rebuilt_with_a_warning(tmp_path, caplog, what, tamper, cached):
    path, out = recipe(tmp_path, text=QUICK), tmp_path / "out"
    first = invoke("run", path, "--output-dir", out, "--json")
    assert first.exit_code == 0, first.stderr
    model = (out / "model.onnx").read_bytes()
    tamper(out / ".cache")
    again = invoke("run", path, "--output-dir", out, "--json")
    assert again.exit_code == 0, (again.stderr, again.exception)
    assert "is corrupt" in caplog.text and "running it again" in caplog.text
    caplog.clear()
    report = json.loads(again.stdout)
    assert [s["cached"] for s in report["stages"]] == cached
    assert report["metrics"] == json.loads(first.stdout)["metrics"]
    assert (out / "model.onnx").read_bytes() == model
    third = invoke("run", path, "--output-dir", out, "--json")
    assert all(s["cached"] for s in json.loads(third.stdout)["stages"]) and "corrupt" not in caplog.text


@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_a_data_path_that_is_no_regular_file_is_refused_before_any_work(tmp_path, special):
    path = special_file(tmp_path, special, "pipe.npz")
    text = QUICK + f'\n[data.train]\npath = "{path}"\npreprocess = "cifar10"\n'  # a role no stage reads
    out = tmp_path / "out"
    done = subprocess.run([*cli_command(), "run", str(recipe(tmp_path, text=text)), "--output-dir", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [f"onnxcar: error: {tmp_path / 'recipe.toml'}: data.train.path: {path} "
                                        "is not a regular file or a folder"]
    assert not out.exists()


def test_an_output_name_that_is_a_folder_is_refused_before_any_stage(tmp_path):
    out = tmp_path / "out"
    (out / "model.onnx").mkdir(parents=True)
    result = invoke("run", recipe(tmp_path, text=QUICK), "--output-dir", out, "--force")
    assert result.exit_code == 2 and result.stderr.splitlines() == [
        f"onnxcar: error: {tmp_path / 'recipe.toml'}: outputs: {out / 'model.onnx'} is a folder"], result.stderr
    assert not (out / ".cache").exists()
