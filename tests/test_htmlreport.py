"""``onnxcar report`` and ``onnxcar sensitivity`` from the command line: every report kind renders, figures
are embedded PNGs, and bad input gives one clean line or a page that says what it could not show."""

import base64
import json
import re
import sys

import numpy as np
import onnx
import pytest

from onnxcar.htmlreport import KINDS
from tests.test_cli import assert_cli_error, assert_ok, invoke
from tests.test_interpret import rgb_model

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """A tiny RGB model, its pixels, and prune (two criteria), sensitivity and score reports of it."""
    root = tmp_path_factory.mktemp("reports")
    rng = np.random.default_rng(3)
    onnx.save(rgb_model(rng.standard_normal((8, 3, 3, 3)), rng.standard_normal((6, 8, 1, 1)), k=3), root / "m.onnx")
    np.savez(root / "d.npz", images=rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8), labels=rng.integers(0, 10, 40))
    data = ("--data", root / "d.npz", "--preprocess", "cifar10")
    for criterion in ("l1", "car"):
        assert_ok(invoke("-q", "prune", root / "m.onnx", "--criterion", criterion, "--ratio", "0.5",
                         "--layers", "conv_a,conv_b", *data, "-o", root / f"{criterion}.onnx"))
    assert_ok(invoke("-q", "sensitivity", root / "m.onnx", "--steps", "0.25,0.5", *data, "-o", root / "sens.json"))
    score = assert_ok(invoke("score", root / "m.onnx", "--layer", "conv_b", *data, "--json")).stdout
    (root / "score.json").write_text(score)
    return root


def render(*args):
    return invoke("-q", "report", *args)


def embedded_pngs(html: str) -> list[bytes]:
    return [base64.b64decode(d) for d in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def test_every_kind_renders_on_one_page(reports, tmp_path):
    files = [reports / n for n in ("l1.json", "car.json", "sens.json", "score.json")]
    result = assert_ok(render(*files, "-o", tmp_path / "r.html", "--png", tmp_path / "png", "--json"))
    summary = json.loads(result.stdout)
    html = (tmp_path / "r.html").read_text()
    assert [s["kind"] for s in summary["reports"]] == ["prune", "prune", "sensitivity", "score"]
    assert summary["problems"] == []
    for title in ("Accuracy against filters removed", "Sensitivity of each layer", "Parameters and MACs per layer",
                  "Filter pictures", "Colour selectivity", "Run configuration and data", "Filter scores of conv_b"):
        assert title in html
    pngs = embedded_pngs(html)
    assert len(pngs) == len(summary["figures"]) and all(p.startswith(PNG) for p in pngs)
    # one curve figure, one scan, one costs figure, 2 criteria x 2 layers of pictures, one colour histogram
    assert len(pngs) == 1 + 1 + 1 + 4 + 1
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == sorted(f"{n}.png" for n in summary["figures"])
    assert not re.search(r"(src|href)=\"(?!data:|#)", html)  # nothing to fetch: only data URIs and anchors
    rows = {(r["layer"], r["criterion"]): r for r in summary["colour"]}
    assert set(rows) == {(layer, c) for layer in ("conv_a", "conv_b") for c in ("l1", "car")}
    assert rows["conv_a", "l1"]["first"] == 4 and rows["conv_b", "car"]["layer_filters"] == 6


def test_prune_reports_without_kind_are_recognised(reports, tmp_path):
    legacy = {k: v for k, v in json.loads((reports / "l1.json").read_text()).items() if k not in ("kind", "version")}
    (tmp_path / "old.json").write_text(json.dumps(legacy))
    summary = json.loads(assert_ok(render(tmp_path / "old.json", "-o", tmp_path / "r.html", "--json")).stdout)
    assert summary["reports"] == [{"file": "old.json", "kind": "prune", "version": 1}]


@pytest.mark.parametrize("content, fragments", [
    ('{"kind": "hologram", "version": 1}', ("unknown kind 'hologram'", f"reads {', '.join(sorted(KINDS))} reports")),
    ('{"kind": "sensitivity", "version": 99, "layers": []}', ("sensitivity report of version 99", "reads version 1")),
    ('{"removed": [{"layer": "conv_a", "chan', ("not valid JSON (truncated?)",)),
    ("[1, 2]", ("holds a JSON list",)),
    ('{"hello": 1}', ("has no kind",)),
    ('{"kind": "sensitivity", "version": 1}', ("malformed sensitivity report", "KeyError")),
])
def test_bad_reports_give_one_line(tmp_path, content, fragments):
    (tmp_path / "bad.json").write_text(content)
    assert_cli_error(render(tmp_path / "bad.json", "-o", tmp_path / "r.html"), "bad.json", *fragments)
    assert not (tmp_path / "r.html").exists()


def test_a_missing_report_gives_one_line(tmp_path):
    assert_cli_error(render(tmp_path / "none.json", "-o", tmp_path / "r.html"), "none.json")


def test_a_gone_model_leaves_the_rest_of_the_page(reports, tmp_path):
    report = json.loads((reports / "car.json").read_text())
    report["model"] = str(tmp_path / "deleted.onnx")
    (tmp_path / "car.json").write_text(json.dumps(report))
    result = assert_ok(render(tmp_path / "car.json", "-o", tmp_path / "r.html", "--json"))
    summary = json.loads(result.stdout)
    html = (tmp_path / "r.html").read_text()
    assert len(summary["problems"]) == 1 and "deleted.onnx is gone" in summary["problems"][0]
    assert "What this page could not show" in html and html.count("deleted.onnx is gone") == 1
    assert summary["figures"] == ["accuracy_pruning_set_accuracy"] and summary["colour"] == []
    assert "Totals (car.json)" in html


def test_gone_data_still_draws_the_first_layer(reports, tmp_path):
    report = json.loads((reports / "l1.json").read_text())
    report["model"], report["data"]["path"] = str(reports / "m.onnx"), str(tmp_path / "gone.npz")
    (tmp_path / "l1.json").write_text(json.dumps(report))
    summary = json.loads(assert_ok(render(tmp_path / "l1.json", "-o", tmp_path / "r.html", "--json")).stdout)
    assert ["gone.npz is gone" in p for p in summary["problems"]] == [True]
    assert "filters_conv_a_l1" in summary["figures"] and "filters_conv_b_l1" not in summary["figures"]
    assert [r["layer"] for r in summary["colour"]] == ["conv_a"]


def test_existing_outputs_need_force(reports, tmp_path):
    (tmp_path / "r.html").write_text("keep")
    assert_cli_error(render(reports / "sens.json", "-o", tmp_path / "r.html"), "exists", "--force")
    assert (tmp_path / "r.html").read_text() == "keep"
    (tmp_path / "png").mkdir()
    (tmp_path / "png" / "sensitivity_sens_json_l1.png").write_text("keep")
    assert_cli_error(render(reports / "sens.json", "-o", tmp_path / "s.html", "--png", tmp_path / "png"), "exists")
    assert_ok(render(reports / "sens.json", "-o", tmp_path / "r.html", "--png", tmp_path / "png", "--force"))
    assert (tmp_path / "png" / "sensitivity_sens_json_l1.png").read_bytes().startswith(PNG)


def test_without_matplotlib_the_error_names_the_extra(reports, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert_cli_error(render(reports / "sens.json", "-o", tmp_path / "r.html"), "needs matplotlib", "onnxcar[report]")


def test_kinds_registry_lists_what_report_reads():
    assert {"prune", "score", "sensitivity", "comparison", "compress", "pipeline"} <= set(KINDS)


def test_sensitivity_cli_table_and_json(reports):
    data = ("--data", reports / "d.npz", "--preprocess", "cifar10")
    table = assert_ok(invoke("sensitivity", reports / "m.onnx", "--layers", "conv_b", "--steps", "0.5", *data))
    assert re.search(r"conv_b\s+6\s+\d+\.\d\d", table.stdout)
    report = json.loads(assert_ok(invoke("sensitivity", reports / "m.onnx", "--criterion", "car", "--layers", "conv_b",
                                         "--steps", "0.5", *data, "--json")).stdout)
    assert (report["kind"], report["version"], report["config"]["criterion"]) == ("sensitivity", 1, "car")
    assert [p["removed"] for p in report["layers"][0]["points"]] == [3]
    assert_cli_error(invoke("sensitivity", reports / "m.onnx", "--steps", "0.5,1.5", *data), "strictly between 0 and 1")


def test_the_committed_comparison_draws_every_criterion(tmp_path):
    """samples/car_vs_baselines_1000.json predates "kind": recognised by its keys; one line per criterion."""
    result = assert_ok(render("samples/car_vs_baselines_1000.json", "-o", tmp_path / "c.html", "--json"))
    assert json.loads(result.stdout)["figures"] == ["accuracy_pruning_set_accuracy"]
    html = (tmp_path / "c.html").read_text()
    assert "<td>car</td><td>75.53% (24 removed)</td><td>76.51% (48 removed)</td>" in html


def test_a_pipeline_report_shows_its_stages_and_prune_stages(reports, tmp_path):
    """``onnxcar run`` with two prune stages: the first draws the recipe's model, the second says why it cannot."""
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f"""
model = "{reports / 'm.onnx'}"
[data.prune]
path = "{reports / 'd.npz'}"
preprocess = "cifar10"
[data.test]
path = "{reports / 'd.npz'}"
preprocess = "cifar10"
[[stages]]
kind = "prune"
criterion = "car"
layers = ["conv_a"]
count = 2
[[stages]]
kind = "prune"
layers = ["conv_b"]
count = 2
[[stages]]
kind = "evaluate"
""")
    assert_ok(invoke("-q", "run", recipe, "--output-dir", tmp_path / "run"))
    result = assert_ok(render(tmp_path / "run" / "report.json", "-o", tmp_path / "r.html", "--json"))
    summary = json.loads(result.stdout)
    html = (tmp_path / "r.html").read_text()
    assert summary["reports"][0]["kind"] == "pipeline"
    assert ["stage 1 (prune)" in p for p in summary["problems"]] == [True]
    assert "filters_conv_a_car" in summary["figures"] and not any("conv_b" in f for f in summary["figures"])
    assert "<h3>Stages (report.json)</h3>" in html and "<td>evaluate</td>" in html


def test_a_compress_report_shows_its_size_table_and_stages(reports, tmp_path):
    data = ("--data", reports / "d.npz", "--preprocess", "cifar10")
    report = json.loads(assert_ok(invoke("compress", reports / "m.onnx", *data, "--sparsity", "0.5", "--bits", "2",
                                         "-o", tmp_path / "c.onnx", "--json")).stdout)
    result = assert_ok(render(tmp_path / "c.json", "-o", tmp_path / "r.html", "--json"))
    assert json.loads(result.stdout)["reports"][0]["kind"] == "compress"
    html = (tmp_path / "r.html").read_text()
    assert "<h3>Compressed sizes against the original float32 layers (c.json)</h3>" in html
    whole = report["sizes"]["totals"][-1]
    assert f"<td>whole model</td>" in html and f"<td>{whole['ratio']:.1f}x</td>" in html
    assert "<h3>Top-1 after each stage (c.json)</h3>" in html and "<td>weight sharing</td>" in html


def test_a_report_that_does_not_fit_its_model_says_so(reports, tmp_path):
    report = json.loads((reports / "l1.json").read_text())
    report["model"] = str(reports / "m.onnx")
    for removal in report["removed"]:
        removal["layer"] = removal["layer"].replace("conv_", "conv_z")
    (tmp_path / "l1.json").write_text(json.dumps(report))
    summary = json.loads(assert_ok(render(tmp_path / "l1.json", "-o", tmp_path / "r.html", "--json")).stdout)
    assert ["does not fit the model" in p and "conv_z" in p for p in summary["problems"]] == [True]


def test_a_report_past_a_layers_filters_says_so(reports, tmp_path):
    report = json.loads((reports / "l1.json").read_text())
    report["model"] = str(reports / "m.onnx")
    report["removed"][0]["channel"] = 99
    (tmp_path / "l1.json").write_text(json.dumps(report))
    summary = json.loads(assert_ok(render(tmp_path / "l1.json", "-o", tmp_path / "r.html", "--json")).stdout)
    assert ["does not fit the model" in p and "no channel 99" in p for p in summary["problems"]] == [True]


def test_repeated_removals_are_drawn_once_with_a_note(reports, tmp_path):
    report = json.loads((reports / "l1.json").read_text())
    report["model"] = str(reports / "m.onnx")
    first = len(report["removed"])
    report["removed"] = report["removed"] * 1000 + [{**report["removed"][0], "channel": -1}]
    (tmp_path / "l1.json").write_text(json.dumps(report))
    summary = json.loads(assert_ok(render(tmp_path / "l1.json", "-o", tmp_path / "r.html", "--json")).stdout)
    assert summary["problems"] == [f"l1.json: {999 * first + 1} removals name a negative channel or one removed "
                                   "before; only the first removal of each channel is shown"]
    assert {"filters_conv_a_l1", "filters_conv_b_l1"} <= set(summary["figures"])


@pytest.mark.parametrize("depth", [65, 200_000])
def test_a_report_nested_too_deep_gives_one_line(tmp_path, depth):
    (tmp_path / "deep.json").write_text('{"kind": "prune", "config": ' + "[" * depth + "]" * depth + "}")
    assert_cli_error(render(tmp_path / "deep.json", "-o", tmp_path / "r.html"), "deep.json",
                     "nests deeper than the 64 levels a report may have")


def test_an_oversized_report_gives_one_line(tmp_path):
    with open(tmp_path / "big.json", "wb") as f:
        f.write(b'{"kind": "score"}')
        f.truncate(64 * 2**20 + 1)  # sparse: padded with NUL bytes past the object
    assert_cli_error(render(tmp_path / "big.json", "-o", tmp_path / "r.html"), "big.json",
                     "larger than the 64 MiB a report may be")


def test_a_report_that_is_no_regular_file_gives_one_line(tmp_path):
    assert_cli_error(render("/dev/zero", "-o", tmp_path / "r.html"), "/dev/zero is not a regular file")
