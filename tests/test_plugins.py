"""Extension points: a separate package adds a criterion and an op handler through the
``onnxcar.plugins`` entry point group, without editing onnxcar."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest

from tests.test_prune import cli_command, save, two_conv_cnn
from tests.zoo import handbuilt

PLUGIN = pathlib.Path(__file__).parent / "plugin_demo"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The demo plugin, installed by pip into a folder of its own."""
    target = tmp_path_factory.mktemp("site")
    source = shutil.copytree(PLUGIN, tmp_path_factory.mktemp("build") / "plugin")  # pip builds in the source tree
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return target


def onnxcar(*args, site=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site) if site else "",
                                                                      os.environ.get("PYTHONPATH", "")]))}
    return subprocess.run([*cli_command(), *map(str, args)], capture_output=True, text=True, timeout=300, env=env)


def test_a_plugin_criterion_is_a_cli_choice_and_prunes(tmp_path, site):
    model = save(two_conv_cnn(channels=4), tmp_path / "m.onnx")
    assert "largest-l1" not in onnxcar("prune", "-h").stdout
    assert "largest-l1" in onnxcar("prune", "-h", site=site).stdout
    done = onnxcar("prune", model, "-o", tmp_path / "o.onnx", "--criterion", "largest-l1", "--count", "1",
                   "--layers", "conv_a", "--json", site=site)
    assert done.returncode == 0, done.stderr
    picked = json.loads(done.stdout)["removed"][0]["channel"]
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(model).graph.initializer}
    conv_a = next(w for name, w in weights.items() if "conv_a" in name and w.ndim == 4)
    assert picked == int(np.abs(conv_a).reshape(4, -1).sum(axis=1).argmax())


def test_a_plugin_handler_unblocks_a_custom_domain_op(tmp_path, site):
    model = tmp_path / "custom.onnx"
    onnx.save(handbuilt.custom_domain_op(), model)
    plain = json.loads(onnxcar("inspect", model, "--json").stdout)
    extended = json.loads(onnxcar("inspect", model, "--json", site=site).stdout)
    conv_a = lambda report: next(g for g in report["groups"] if g["layers"] == ["conv_a"])  # noqa: E731
    assert not conv_a(plain)["prunable"] and "com.acme" in conv_a(plain)["reason"]
    assert conv_a(extended)["prunable"], conv_a(extended)


@pytest.fixture
def broken_site(tmp_path):
    """A plugin whose module raises on import, installed by hand as a distribution's metadata."""
    info = tmp_path / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[onnxcar.plugins]\nbroken = broken_plugin\n")
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('no licence server')\n")
    return tmp_path


def test_a_plugin_that_fails_to_load_is_a_warning_and_every_command_still_works(tmp_path, broken_site):
    warning = "the onnxcar plugin 'broken' (broken_plugin) failed to load and is skipped: " \
              "RuntimeError: no licence server"
    done = onnxcar("--help", site=broken_site)
    assert done.returncode == 0 and "Commands:" in done.stdout
    assert done.stderr.splitlines() == [warning]
    model = save(two_conv_cnn(channels=4), tmp_path / "m.onnx")
    inspected = onnxcar("inspect", model, "--json", site=broken_site)
    assert inspected.returncode == 0 and json.loads(inspected.stdout)["groups"], inspected.stderr
    assert warning in inspected.stderr and "Traceback" not in inspected.stderr


def test_asking_for_a_name_names_the_plugin_that_failed(broken_site):
    script = ("import onnxcar\nfrom onnxcar.importance.registry import CRITERIA\n"
              "try:\n    CRITERIA.get('largest-l1')\nexcept onnxcar.OnnxcarError as err:\n    print(err)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(broken_site), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert "unknown criterion 'largest-l1'" in done.stdout
    assert "the plugin 'broken' (broken_plugin) failed to load: RuntimeError: no licence server" in done.stdout


def test_importing_onnxcar_loads_no_plugin():
    """A plugin imports onnxcar: were plugins loaded while onnxcar itself is importing (a registry
    read at import time), the import would be circular and every plugin would fail. (The CLI reads
    the registries for its choices, after the library is imported.)"""
    done = subprocess.run([sys.executable, "-c", "import sys, onnxcar\n"
                           "print(sys.modules['onnxcar.registry']._plugins_loaded)"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr
