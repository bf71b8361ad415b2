"""benchmarks/peers.py end to end on a tiny model with every peer, so that a peer's API change fails here."""

import io
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

import onnxcar
from tests.test_cli import assert_ok, invoke

torch = pytest.importorskip("torch")  # the torch extra; onnxsim and torch-pruning come with the dev extra

from benchmarks import peer_methods, peers  # noqa: E402


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("peers")
    torch.manual_seed(0)
    module = Tiny().eval()
    buffer = io.BytesIO()
    torch.onnx.export(module, (torch.zeros(1, 3, 8, 8),), buffer, dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    (root / "tiny.onnx").write_bytes(buffer.getvalue())
    rng = np.random.default_rng(0)
    images = rng.normal(size=(80, 3, 8, 8)).astype(np.float32)
    np.savez(root / "data.npz", images=images, labels=rng.integers(0, 4, len(images)))

    def fresh():
        copy = Tiny()
        copy.load_state_dict(module.state_dict())
        return copy.eval()

    return root, peers.Sample(root / "tiny.onnx", fresh)


def test_every_peer_runs_end_to_end(tiny):
    root, sample = tiny
    data = onnxcar.Data(str(root / "data.npz"), preprocess="none")
    bench = peers.make_bench("tiny", sample, data, per_iter=2)
    found, missing = peer_methods.available_peers()
    assert missing == []  # the dev extra installs both peers
    every = {m.name for m in peers.select_methods(["onnxcar", *found], "")[0]}
    assert {"onnxcar car global", "onnxcar apoz uniform", "onnxsim wanda uniform",
            "torch-pruning taylor global"} <= every
    methods, _ = peers.select_methods(["onnxcar", *found], "car global,l1 uniform,onnxsim,torch-pruning")
    assert {m.tool for m in methods} == {"onnxcar", "onnxsim", "torch-pruning"}
    out = root / "peers_tiny.json"
    finetune = {"epochs": 1, "data": data, "val": data, "test": data}
    results = peers.benchmark(bench, methods, [0.6], data, finetune, out, {"settings": {}})

    assert json.loads(out.read_text())["runs"] == json.loads(json.dumps(results["runs"]))
    assert len(results["runs"]) == len(methods)
    for run in results["runs"]:
        assert "error" not in run, (run["method"], run.get("error"))
        assert 0 <= run["test_top1"] <= 1 and 0 <= run["finetuned"]["test_top1"] <= 1
        assert run["macs"] <= 0.6 * bench.macs or not run["reached"]
        assert set(run["latency_ms"]) == {"1", "32"}
        assert (out.with_name("peers_tiny_models") / f"{run['method'].replace(' ', '_')}_0.6.onnx").exists()
    for tool in ("onnxcar", "torch-pruning"):
        assert any(r["reached"] for r in results["runs"] if r["tool"] == tool)
    assert all("ridge" in r["repairs"] for r in results["runs"] if r["tool"] == "onnxsim")
    table = peers.markdown(results)
    assert all(m.name in table for m in methods)

    pytest.importorskip("matplotlib")
    summary = json.loads(assert_ok(invoke("-q", "report", out, "-o", root / "peers.html", "--json")).stdout)
    html = (root / "peers.html").read_text()
    assert [r["kind"] for r in summary["reports"]] == ["peers"] and summary["problems"] == []
    assert summary["figures"] == ["accuracy_test_accuracy_share_of_the_macs_kept"]
    assert "Accuracy curves" in html and "after ridge repair" in html and "onnxsim wanda uniform" in html


def test_resume_keeps_runs_and_skips_them(tiny):
    root, sample = tiny
    data = onnxcar.Data(str(root / "data.npz"), preprocess="none")
    bench = peers.make_bench("tiny", sample, data, per_iter=2)
    methods, _ = peers.select_methods(["onnxcar"], "l1 uniform,l2 global")
    out = root / "resume.json"
    first = peers.benchmark(bench, methods[:1], [0.6], data, None, out, {"settings": {"a": 1}})
    second = peers.benchmark(bench, methods, [0.6], data, None, out, {"settings": {"a": 1}}, resume=True)
    assert second["runs"][0] == first["runs"][0]
    assert [r["method"] for r in second["runs"]] == ["onnxcar l1 uniform", "onnxcar l2 global"]


@pytest.mark.parametrize("argv, message", [
    (["--model", "vgg"], "unknown model 'vgg'"),
    (["--budgets", "0.5,1.5"], "every budget must lie in (0, 1)"),
    (["--budgets", "half"], "--budgets must be a comma list"),
    (["--peers", "onnxcar,nni"], "unknown peer 'nni'"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message):
    proc = subprocess.run([sys.executable, "benchmarks/peers.py", *argv, "--finetune-epochs", "0"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and message in proc.stderr
