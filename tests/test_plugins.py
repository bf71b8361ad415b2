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
