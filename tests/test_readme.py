"""The README's commands work as written, and CI runs the README's test command."""

import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
FIRST_BLOCK = re.search(r"```bash\n(.*?)```", README, re.S).group(1).strip().splitlines()


def test_readme_starts_with_setup_and_main_command():
    assert FIRST_BLOCK[0] == 'pip install -e ".[dev]"'
    assert FIRST_BLOCK[1].startswith("onnxcar prune samples/")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -q -e ".[dev]"' in ci
    assert re.search(r"Tests: `(pytest -q)`", README).group(1) in ci.splitlines()


@pytest.mark.skipif(not (ROOT / "samples" / "alexnet_cifar10.onnx").exists(), reason="the sample model is not trained yet")
def test_readme_main_command_runs_on_the_sample(tmp_path):
    (tmp_path / "samples").symlink_to(ROOT / "samples")
    args = shlex.split(FIRST_BLOCK[1])
    script = pathlib.Path(sys.executable).with_name("onnxcar")
    command = [str(script) if script.exists() else "onnxcar", "-q", *args[1:]]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900, env={**os.environ})
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "pruned.json").read_text())
    assert report["removed"] and report["after"]["params"] < report["before"]["params"]
    assert (tmp_path / "pruned.onnx").stat().st_size > 0


def test_readme_python_api_example_runs(tmp_path, monkeypatch):
    """The README's Python API example, run as written from a folder with the samples."""
    block = re.search(r"## Python API.*?```python\n(.*?)```", README, re.S).group(1)
    (tmp_path / "samples").symlink_to(ROOT / "samples")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["result"].final_metric < namespace["result"].original_metric
    assert (tmp_path / "pruned.onnx").exists() and (tmp_path / "pruned.json").exists()
    assert set(namespace["scores"].by_criterion) >= {"car", "l1", "l2", "mean-act", "apoz", "random"}


def test_the_tie_rule_the_docs_give_is_the_default_tie_break():
    from click.testing import CliRunner

    from onnxcar.cli.main import main
    from onnxcar.cli.prune_cmd import prune_command

    default = next(p.default for p in prune_command.params if p.name == "tie_break")
    help_text = " ".join(CliRunner().invoke(main, ["prune", "--help"]).stdout.split())
    readme = " ".join(README.split())
    assert f"(default `{default}`:" in readme and "Ties go to the lowest filter index" not in readme
    assert "(ties: the --tie-break key for CAR, then the lowest index)" in help_text
    assert "--tie-break [loss|margin|index] Order of filters of equal CAR" in help_text and f"[default: {default}]" in help_text
