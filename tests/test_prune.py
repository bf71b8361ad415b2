"""``onnxcar prune`` end to end: sizes and reports, rankings checked by brute force, budgets,
agreement mode, regression (RAR), determinism (RELIABILITY 12) and resume after SIGKILL (RELIABILITY 11).

Brute-force references build every candidate model with ``make_plan``/``remove_channels`` and
run it in onnxruntime directly; they never go through the CAR engine's probes.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from onnxcar.cli.main import main
from onnxcar.graph import analyze
from onnxcar.surgery import make_plan, remove_channels
from tests.zoo import detection, handbuilt
from tests.zoo.handbuilt import GraphBuilder

# ----------------------------------------------------------------------------- helpers


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr, result.exception)
    return result


def prune_json(*args) -> dict:
    """Runs ``onnxcar prune ARGS --json``; returns the printed report (also checked against OUTPUT.json)."""
    result = ok(invoke("prune", *args, "--json"))
    report = json.loads(result.stdout)
    written = json.loads(open(os.path.splitext(report["output"])[0] + ".json").read())
    assert written == report
    return report


def inspect_json(path) -> dict:
    return json.loads(ok(invoke("inspect", path, "--json")).stdout)


def cli_command() -> list[str]:
    script = shutil.which("onnxcar")
    return [script] if script else [sys.executable, "-c", "from onnxcar.cli.main import main; main()"]


def session(model) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def outputs(model, images: np.ndarray) -> np.ndarray:
    s = session(model)
    return s.run(None, {s.get_inputs()[0].name: images})[0]


def correct(model, images, labels) -> int:
    """Number of top-1 hits (an integer, so ties compare exactly)."""
    return int(np.sum(outputs(model, images).argmax(axis=1) == labels))


def cross_entropy(model, images, labels) -> float:
    """The mean cross-entropy of the model's logits against ``labels`` (the ``loss`` tie-break)."""
    logits = outputs(model, images).astype(np.float64)
    top = logits.max(axis=1, keepdims=True)
    log_sum = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return float(np.mean(log_sum - logits[np.arange(len(labels)), labels]))


def mse(model, images, targets) -> float:
    diff = outputs(model, images).astype(np.float64) - targets
    return float(np.mean(np.mean(diff * diff, axis=1)))


def save(model: onnx.ModelProto, path):
    onnx.save(model, path)
    return path


def labelled_data(model, path, n: int, *, seed: int = 0, agree: float = 0.7, chw=None, labels: bool = True):
    """Standard-normal images in the model layout; labels are the model's top-1 where ``rng < agree``, else random."""
    rng = np.random.default_rng(seed)
    chw = chw or tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:])
    images = rng.standard_normal((n, *chw), dtype=np.float32)
    predicted = outputs(model, images).argmax(axis=1)
    y = np.where(rng.random(n) < agree, predicted, rng.integers(0, 10, n)).astype(np.int64)
    np.savez(path, **({"images": images, "labels": y} if labels else {"images": images}))
    return images, y


def two_conv_cnn(channels: int = 16, hw: int = 16, seed: int = 7) -> onnx.ModelProto:
    """conv_a (3->C) -> Relu -> MaxPool -> conv_b (C->C) -> Relu -> MaxPool -> Flatten -> Gemm (-> 10)."""
    g = GraphBuilder(seed, in_channels=3, hw=hw, name="two_conv")
    x = g.node("Relu", [g.conv(g.input, 3, channels, name="conv_a")])
    x = g.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    x = g.node("Relu", [g.conv(x, channels, channels, name="conv_b")])
    x = g.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    g.gemm(g.flatten(x), channels * (hw // 4) ** 2, 10, name="classifier", out="output")
    return g.build()


def regression_cnn(seed: int = 11) -> onnx.ModelProto:
    """conv_a (4->6) -> Relu -> conv_b (6->6) -> GAP -> Flatten -> Gemm (6 -> 3 float outputs)."""
    g = GraphBuilder(seed, in_channels=4, hw=8, name="regression")
    x = g.node("Relu", [g.conv(g.input, 4, 6, name="conv_a")])
    x = g.conv(x, 6, 6, name="conv_b")
    g.gemm(g.flatten(g.gap(x)), 6, 3, name="head", out="output")
    return g.build()


def without(analysis, group, indices) -> onnx.ModelProto:
    """The model with channels ``indices`` of ``group`` physically removed (onnxcar's surgery)."""
    return remove_channels(make_plan(analysis, group.channel_ids(list(indices))))


def check_greedy_by_brute_force(model, layer, removals, metric, *, higher_is_better=True, per_iter=1, tol=0.0,
                                tie=None):
    """Replays the report's greedy removals against a brute-force reference.

    At each iteration every surviving channel is removed in turn (a real smaller model, run in
    onnxruntime); the reference removes the ``per_iter`` channels whose removal hurts least (ties:
    by the growth of ``tie(model)``, the mean tie-break value, when given; then the lowest index).
    The report's picks, scores, tie keys and per-removal metric must match. With ``tol`` > 0
    (continuous metrics) a pick may be any channel within ``tol`` of the best.
    """
    analysis = analyze(model)
    group = analysis.group(layer)
    gone: list[int] = []
    current = metric(model)
    for start in range(0, len(removals), per_iter):
        batch = removals[start : start + per_iter]
        alive = [i for i in range(group.size) if i not in gone]
        smaller = {i: without(analysis, group, gone + [i]) for i in alive}
        after = {i: metric(m) for i, m in smaller.items()}
        score = {i: (current - after[i]) if higher_is_better else (after[i] - current) for i in alive}
        growth = {i: 0.0 for i in alive}
        if tie is not None:
            base = tie(without(analysis, group, gone)) if gone else tie(model)
            growth = {i: round(tie(m) - base, 6) for i, m in smaller.items()}
            for r in batch:
                assert r["tie"] == pytest.approx(growth[r["channel"]], abs=2e-6)
        order = sorted(alive, key=lambda i: (score[i], growth[i], i))
        picks = [r["channel"] for r in batch]
        if tol == 0:
            assert picks == order[: len(batch)], (start, picks, {i: score[i] for i in order})
        else:
            for k, pick in enumerate(picks):
                assert score[pick] <= score[order[k]] + tol, (start, pick, score)
        for r in batch:
            assert r["layer"] == layer
            assert r["score"] == pytest.approx(score[r["channel"]], abs=max(tol, 1e-12))
        gone += picks
        current = metric(without(analysis, group, gone))
        for r in batch:
            assert r["metric"] == pytest.approx(current, abs=max(tol, 1e-12))
    return current


# ----------------------------------------------------------------------------- sizes and reports

EXPORTED = [("resnet_blocks", True), ("mobilenet_se", False), ("vgg_flatten", True)]


@pytest.mark.parametrize("name, fold_bn", EXPORTED, ids=[f"{n}-{'fold' if f else 'bn'}" for n, f in EXPORTED])
def test_l1_half_of_an_exported_model(tmp_path, name, fold_bn):
    exported = pytest.importorskip("tests.zoo.exported")
    model = exported.export(name, exporter="torchscript", fold_bn=fold_bn)
    path = save(model, tmp_path / "model.onnx")
    out = tmp_path / "pruned.onnx"
    report = prune_json(path, "-o", out, "--criterion", "l1", "--ratio", "0.5")

    for key in ("removed", "before", "after", "timings_s", "verify_max_abs_error"):
        assert key in report, key
    before, after = report["before"], report["after"]
    assert set(before) == set(after) == {"params", "macs"}
    assert after["params"] < before["params"] and after["macs"] < before["macs"]
    original = inspect_json(path)
    assert before == {"params": original["params"], "macs": original["macs"]}
    assert inspect_json(out)["params"] == after["params"] and inspect_json(out)["macs"] == after["macs"]
    assert {"scoring", "surgery", "verify"} <= set(report["timings_s"])
    assert all(isinstance(v, float | int) and v >= 0 for v in report["timings_s"].values())
    assert 0 <= report["verify_max_abs_error"] < 1e-3
    assert report["original_metric"] is None and report["final_metric"] is None

    # one removal per floor(0.5 * channels) of every prunable group, each channel once
    prunable = {g["id"]: g for g in original["groups"] if g["prunable"]}
    assert len(report["removed"]) == sum(g["channels"] // 2 for g in prunable.values())
    for gid, group in prunable.items():
        channels = [r["channel"] for r in report["removed"] if r["group"] == gid]
        assert len(channels) == group["channels"] // 2
        assert len(set(channels)) == len(channels) and all(0 <= c < group["channels"] for c in channels)
        assert {r["layer"] for r in report["removed"] if r["group"] == gid} <= set(group["layers"])

    # the smaller model is valid, loads in onnxruntime and keeps the interface
    assert out.stat().st_size < path.stat().st_size
    onnx.checker.check_model(str(out))
    x = np.random.default_rng(0).standard_normal((2, *exported.input_shape(name)), dtype=np.float32)
    y = outputs(out, x)
    assert y.shape == (2, 10) and np.isfinite(y).all()
    assert not (tmp_path / "pruned.onnx.journal").exists()


L1_CASES = [
    # criterion, target options, removals
    ("l1", ["--ratio", "0.5"], 4),
    ("l1", ["--count", "3"], 3),
    ("l1", ["--count", "100"], 7),  # at least one channel always stays
    ("l1", ["--ratio", "0.99"], 7),
    ("l2", ["--ratio", "0.5"], 4),
]


@pytest.mark.parametrize("criterion, target, removals", L1_CASES)
def test_weight_norm_ranking_by_hand(tmp_path, criterion, target, removals):
    """flatten_gemm has one prunable layer: the removed filters are those with the smallest norms, smallest first."""
    model = handbuilt.CASES["flatten_gemm"]()
    path = save(model, tmp_path / "model.onnx")
    out = tmp_path / "pruned.onnx"
    report = prune_json(path, "-o", out, "--criterion", criterion, *target)

    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    weight = inits["conv_a.weight"].astype(np.float64)
    flat = weight.reshape(len(weight), -1)
    norms = np.abs(flat).sum(axis=1) if criterion == "l1" else np.sqrt((flat**2).sum(axis=1))
    expected = [int(i) for i in np.argsort(norms, kind="stable")[:removals]]
    assert [r["channel"] for r in report["removed"]] == expected
    for r in report["removed"]:
        assert r["score"] == pytest.approx(norms[r["channel"]], rel=1e-9)
        assert r["metric"] is None and r["layer"] == "conv_a"

    # the filters, and the Gemm columns they fed, are physically gone
    pruned = {t.name: numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer}
    np.testing.assert_array_equal(pruned["conv_a.weight"], np.delete(inits["conv_a.weight"], expected, axis=0))
    np.testing.assert_array_equal(pruned["conv_a.bias"], np.delete(inits["conv_a.bias"], expected))
    columns = np.concatenate([np.arange(c * 16, (c + 1) * 16) for c in expected])
    np.testing.assert_array_equal(pruned["classifier.weight"], np.delete(inits["classifier.weight"], columns, axis=1))
    # and the output equals the original model with those filters zeroed (Relu(0) = 0 feeds the Gemm)
    zeroed = onnx.ModelProto.FromString(model.SerializeToString())
    for t in zeroed.graph.initializer:
        if t.name in ("conv_a.weight", "conv_a.bias"):
            values = numpy_helper.to_array(t).copy()
            values[expected] = 0
            t.CopyFrom(numpy_helper.from_array(values, t.name))
    x = np.random.default_rng(1).standard_normal((5, 4, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(outputs(out, x), outputs(zeroed, x), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- CAR by brute force

CAR_CASES = [
    # model, layer, target, images
    ("flatten_gemm", "conv_a", ["--count", "4"], 120),
    ("maxpool", "conv_a", ["--ratio", "0.5"], 120),
    ("maxpool", "conv_b", ["--count", "5"], 120),
    ("conv_bn_relu", "conv_a", ["--count", "5"], 120),  # many exact ties: lowest index wins
    ("reshape_gemm", "conv_a", ["--count", "3"], 60),
]


@pytest.mark.parametrize("tie_break", ["loss", "index"])
@pytest.mark.parametrize("case, layer, target, n", CAR_CASES, ids=[f"{c[0]}-{c[1]}" for c in CAR_CASES])
def test_car_matches_brute_force(tmp_path, case, layer, target, n, tie_break):
    model = handbuilt.CASES[case]()
    path = save(model, tmp_path / "model.onnx")
    images, labels = labelled_data(model, tmp_path / "data.npz", n)
    out = tmp_path / "pruned.onnx"
    report = prune_json(path, "-o", out, "--criterion", "car", "--layers", layer, "--data", tmp_path / "data.npz",
                        "--tie-break", tie_break, *target)

    def accuracy(m):
        return correct(m, images, labels) / n

    tie = (lambda m: cross_entropy(m, images, labels)) if tie_break == "loss" else None
    assert report["original_metric"] == pytest.approx(accuracy(model), abs=1e-12)
    final = check_greedy_by_brute_force(model, layer, report["removed"], accuracy, tie=tie)
    tied = [r["tied"] for r in report["removed"]]
    assert report["ties_decided"] == (sum(tied) if tie_break == "loss" else None)
    assert report["final_metric"] == pytest.approx(final, abs=1e-12)
    assert accuracy(onnx.load(out)) == pytest.approx(final, abs=1e-12)
    # the curve holds the same numbers
    curve = report["curves"][layer]
    assert curve[0] == [0, report["original_metric"]]
    assert [m for _, m in curve[1:]] == [r["metric"] for r in report["removed"]]


@pytest.mark.parametrize("case, layer", [("flatten_gemm", "conv_a"), ("maxpool", "conv_a"), ("conv_bn_relu", "conv_a")])
def test_max_drop_zero_never_lowers_accuracy(tmp_path, case, layer):
    model = handbuilt.CASES[case]()
    path = save(model, tmp_path / "model.onnx")
    images, labels = labelled_data(model, tmp_path / "data.npz", 120, seed=2)
    report = prune_json(path, "-o", tmp_path / "pruned.onnx", "--criterion", "car", "--max-drop", "0",
                        "--layers", layer, "--data", tmp_path / "data.npz")
    original = report["original_metric"]
    assert report["final_metric"] >= original
    assert all(r["metric"] >= original for r in report["removed"])
    assert correct(tmp_path / "pruned.onnx", images, labels) >= round(original * len(labels))

    # it stopped because every further removal would lower accuracy, not earlier
    analysis = analyze(model)
    group = analysis.group(layer)
    gone = [r["channel"] for r in report["removed"]]
    if len(gone) < group.size - 1:
        best = max(correct(without(analysis, group, gone + [i]), images, labels)
                   for i in range(group.size) if i not in gone)
        assert best < round(original * len(labels)), (gone, best)


@pytest.mark.parametrize("drop", ["2", "10"])
def test_max_drop_points_bound_the_final_accuracy(tmp_path, drop):
    model = handbuilt.CASES["maxpool"]()
    path = save(model, tmp_path / "model.onnx")
    labelled_data(model, tmp_path / "data.npz", 120, seed=4)
    report = prune_json(path, "-o", tmp_path / "pruned.onnx", "--criterion", "car", "--max-drop", drop,
                        "--data", tmp_path / "data.npz")
    limit = report["original_metric"] - float(drop) / 100
    assert report["removed"], "some filter can go within the budget"
    assert all(r["metric"] >= limit - 1e-12 for r in report["removed"])


@pytest.mark.parametrize("target, per_iter", [(["--count", "4"], 2), (["--count", "5"], 2), (["--count", "6"], 3)])
def test_per_iter_removes_in_batches(tmp_path, target, per_iter):
    model = handbuilt.CASES["flatten_gemm"]()
    path = save(model, tmp_path / "model.onnx")
    images, labels = labelled_data(model, tmp_path / "data.npz", 120, seed=5)
    report = prune_json(path, "-o", tmp_path / "pruned.onnx", "--criterion", "car", "--per-iter", str(per_iter),
                        "--data", tmp_path / "data.npz", *target)
    removed = report["removed"]
    assert len(removed) == int(target[1])
    batches = [removed[i : i + per_iter] for i in range(0, len(removed), per_iter)]
    for batch in batches:
        assert len({r["metric"] for r in batch}) == 1, batch
    check_greedy_by_brute_force(model, "conv_a", removed, lambda m: correct(m, images, labels) / len(labels),
                                per_iter=per_iter, tie=lambda m: cross_entropy(m, images, labels))


def test_per_iter_does_not_change_a_static_ranking(tmp_path):
    model = handbuilt.CASES["maxpool"]()
    path = save(model, tmp_path / "model.onnx")
    one = prune_json(path, "-o", tmp_path / "one.onnx", "--ratio", "0.5")
    two = prune_json(path, "-o", tmp_path / "two.onnx", "--ratio", "0.5", "--per-iter", "2")
    assert [(r["group"], r["channel"]) for r in one["removed"]] == [(r["group"], r["channel"]) for r in two["removed"]]
    assert (tmp_path / "one.onnx").read_bytes() == (tmp_path / "two.onnx").read_bytes()


# ----------------------------------------------------------------------------- agreement mode


@pytest.mark.parametrize("stored_labels", [False, True], ids=["npz-without-labels", "labels-ignored"])
def test_agreement_mode(tmp_path, stored_labels):
    model = handbuilt.CASES["maxpool"]()
    path = save(model, tmp_path / "model.onnx")
    data = tmp_path / "data.npz"
    images, _ = labelled_data(model, data, 80, seed=6, agree=0.0, labels=stored_labels)

    result = json.loads(ok(invoke("eval", path, "--data", data, "--no-labels", "--json")).stdout)
    assert result == {"top1": 1.0, "top5": 1.0, "n": 80}

    out = tmp_path / "pruned.onnx"
    report = prune_json(path, "-o", out, "--criterion", "car", "--count", "3", "--layers", "conv_a",
                        "--data", data, "--no-labels")
    assert report["original_metric"] == 1.0
    assert report["data"]["labels_key"] is None
    assert len(report["removed"]) == 3
    # the metric is agreement with the original model's top-1, checked by brute force
    reference = outputs(model, images).argmax(axis=1)
    check_greedy_by_brute_force(model, "conv_a", report["removed"], lambda m: correct(m, images, reference) / 80,
                                tie=lambda m: cross_entropy(m, images, reference))
    assert report["final_metric"] == pytest.approx(correct(out, images, reference) / 80, abs=1e-12)
    assert report["final_metric"] < 1.0 or all(r["score"] == 0 for r in report["removed"])


# ----------------------------------------------------------------------------- regression (RAR)


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    root = tmp_path_factory.mktemp("regression")
    model = regression_cnn()
    path = save(model, root / "model.onnx")
    rng = np.random.default_rng(0)
    images = rng.standard_normal((64, 4, 8, 8), dtype=np.float32)
    targets = (outputs(model, images) + 0.1 * rng.standard_normal((64, 3))).astype(np.float32)
    np.savez(root / "data.npz", images=images, labels=targets)
    return model, path, root / "data.npz", images, targets


def test_eval_regression_reports_mse(regression):
    model, path, data, images, targets = regression
    result = json.loads(ok(invoke("eval", path, "--data", data, "--task", "regression", "--json")).stdout)
    assert set(result) == {"mse", "n"} and result["n"] == 64
    assert result["mse"] == pytest.approx(mse(model, images, targets), rel=1e-6)
    text = ok(invoke("eval", path, "--data", data, "--task", "regression")).stdout
    assert text.startswith("mse ") and "64 samples" in text


@pytest.mark.parametrize("layer, count", [("conv_a", 3), ("conv_b", 3), ("conv_a", 5)])
def test_rar_matches_brute_force(tmp_path, regression, layer, count):
    model, path, data, images, targets = regression
    report = prune_json(path, "-o", tmp_path / "pruned.onnx", "--criterion", "rar", "--task", "regression",
                        "--count", str(count), "--layers", layer, "--data", data)
    assert report["task"] == "regression"
    assert report["original_metric"] == pytest.approx(mse(model, images, targets), rel=1e-6)
    final = check_greedy_by_brute_force(model, layer, report["removed"], lambda m: mse(m, images, targets),
                                        higher_is_better=False, tol=1e-6)
    assert report["final_metric"] == pytest.approx(final, abs=1e-6)
    assert mse(tmp_path / "pruned.onnx", images, targets) == pytest.approx(final, abs=1e-6)


def test_rar_max_drop_bounds_mse_growth(tmp_path, regression):
    _, path, data, _, _ = regression
    report = prune_json(path, "-o", tmp_path / "pruned.onnx", "--criterion", "rar", "--max-drop", "0.005",
                        "--data", data)
    assert all(r["metric"] <= report["original_metric"] + 0.005 + 1e-12 for r in report["removed"])


# ----------------------------------------------------------------------------- detection and segmentation


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    """The detector and segmenter of tests/zoo/detection.py, and unlabelled images for them."""
    root = tmp_path_factory.mktemp("dense")
    images = np.random.default_rng(8).standard_normal((16, *detection.INPUT_CHW), dtype=np.float32)
    np.savez(root / "images.npz", images=images)
    paths = {name: save(detection.export(name), root / f"{name}.onnx") for name in detection.NAMES}
    return paths, root / "images.npz", images


@pytest.mark.parametrize("name", detection.NAMES)
def test_l1_prunes_every_backbone_and_neck_group_of_detection_models(tmp_path, dense, name):
    paths, _, _ = dense
    report = prune_json(paths[name], "-o", tmp_path / "pruned.onnx", "--criterion", "l1", "--ratio", "0.25")
    groups = inspect_json(paths[name])["groups"]
    assert {r["layer"] for r in report["removed"]} == {g["layers"][0] for g in groups if g["prunable"] and g["channels"] >= 4}
    assert all(g["prunable"] or "detect" in g["layers"][0] or g["layers"] == ["head"] for g in groups)
    assert report["verify_max_abs_error"] is not None and report["after"]["macs"] < report["before"]["macs"]


def test_rar_without_targets_scores_the_error_against_the_original_outputs(tmp_path, dense):
    paths, data, images = dense
    model = onnx.load(paths["segmenter"])
    reference = outputs(model, images).astype(np.float64)

    def error(candidate) -> float:
        diff = (outputs(candidate, images) - reference).reshape(len(images), -1)
        return float(np.mean(np.mean(diff * diff, axis=1)))

    layer = "enc1/enc1.0/conv"
    report = prune_json(paths["segmenter"], "-o", tmp_path / "pruned.onnx", "--criterion", "rar", "--count", "2",
                        "--layers", layer, "--data", data, "--no-labels")
    assert report["task"] == "regression" and report["original_metric"] == 0.0
    final = check_greedy_by_brute_force(model, layer, report["removed"], error, higher_is_better=False, tol=1e-6)
    assert report["final_metric"] == pytest.approx(final, abs=1e-6) and final > 0


def test_rar_without_targets_runs_on_the_detector(tmp_path, dense):
    paths, data, _ = dense
    report = prune_json(paths["detector"], "-o", tmp_path / "pruned.onnx", "--criterion", "rar", "--count", "2",
                        "--layers", "p3/p3.0/conv", "--data", data, "--no-labels")
    assert report["original_metric"] == 0.0 and len(report["removed"]) == 2
    assert report["final_metric"] >= 0.0 and report["verify_max_abs_error"] is not None


# ----------------------------------------------------------------------------- determinism (RELIABILITY 12)

DETERMINISM = [
    ("l1", False, ["--ratio", "0.5"]),
    ("random", False, ["--ratio", "0.5", "--random-seed", "3"]),
    ("car", True, ["--ratio", "0.5"]),
    ("apoz", True, ["--ratio", "0.5"]),
    ("mean-act", True, ["--count", "3"]),
    ("car", True, ["--max-drop", "20", "--per-iter", "2"]),
]


@pytest.mark.parametrize("criterion, data, extra", DETERMINISM, ids=[f"{c}{'-'.join(e)}" for c, _, e in DETERMINISM])
def test_same_command_twice_gives_identical_results(tmp_path, monkeypatch, criterion, data, extra):
    model = handbuilt.CASES["maxpool"]()
    runs = []
    for name in ("first", "second"):
        folder = tmp_path / name
        folder.mkdir()
        save(model, folder / "model.onnx")
        if data:
            labelled_data(model, folder / "data.npz", 96, seed=9)
        monkeypatch.chdir(folder)
        args = ["prune", "model.onnx", "-o", "pruned.onnx", "--criterion", criterion, *extra, "--json"]
        stdout = ok(invoke(*args, *(["--data", "data.npz"] if data else []))).stdout
        runs.append((json.loads(stdout), (folder / "pruned.onnx").read_bytes(), json.loads((folder / "pruned.json").read_text())))
    (printed_a, model_a, report_a), (printed_b, model_b, report_b) = runs
    assert model_a == model_b
    assert report_a.pop("timings_s").keys() == report_b.pop("timings_s").keys()
    assert report_a == report_b
    printed_a.pop("timings_s"), printed_b.pop("timings_s")
    assert printed_a == printed_b == report_a
    assert report_a["removed"]


def test_random_seed_changes_the_pick(tmp_path):
    model = handbuilt.CASES["maxpool"]()
    path = save(model, tmp_path / "model.onnx")
    picks = {
        seed: tuple((r["group"], r["channel"]) for r in prune_json(
            path, "-o", tmp_path / f"s{seed}.onnx", "--criterion", "random", "--ratio", "0.5", "--random-seed", seed
        )["removed"])
        for seed in ("0", "1", "2")
    }
    assert len(set(picks.values())) > 1


# ----------------------------------------------------------------------------- resume after SIGKILL (RELIABILITY 11)


def journal_removals(path) -> int:
    """Complete iteration lines in a journal (the header line excluded)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return 0
    return max(0, text.count("\n") - 1)


def uninterrupted_run(root, images: int, seed: int, *options):
    """CAR on two layers of 16 filters, half of each, run once to the end: its arguments (without
    -o), model bytes and report."""
    model = two_conv_cnn()
    save(model, root / "model.onnx")
    labelled_data(model, root / "data.npz", images, seed=seed)
    args = ["prune", root / "model.onnx", "--criterion", "car", "--ratio", "0.5", "--data", root / "data.npz",
            "--threads", "1", *options]
    full = root / "full.onnx"
    report = json.loads(ok(invoke(*args, "-o", full, "--json")).stdout)
    assert len(report["removed"]) == 16
    return args, full.read_bytes(), report


@pytest.fixture(scope="module")
def resumable(tmp_path_factory):
    """A run long enough to kill (1000 images), and its uninterrupted result."""
    root = tmp_path_factory.mktemp("resume")
    args, full, report = uninterrupted_run(root, 1000, 1)
    assert len({r["channel"] for r in report["removed"][:8]}) == 8
    assert [r["channel"] for r in report["removed"][:8]] != list(range(8)), "the ranking should not be trivial"
    return root, args, full, report


def kill_after(args, journal, removals: int, timeout: float = 60.0) -> subprocess.Popen:
    """Starts ``onnxcar -q ARGS``; SIGKILLs it once ``journal`` holds ``removals`` removal lines."""
    process = subprocess.Popen([*cli_command(), "-q", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while journal_removals(journal) < removals:
            if process.poll() is not None:
                out, err = process.communicate()
                pytest.fail(f"the run ended (exit {process.returncode}) before it could be killed: {err.decode()[-500:]}")
            if time.monotonic() > deadline:
                pytest.fail("no journal progress")
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
        process.stdout.close()
        process.stderr.close()
    return process


def test_resume_after_sigkill(tmp_path, resumable):
    root, args, full_bytes, full_report = resumable
    out = tmp_path / "out.onnx"
    journal = tmp_path / "out.onnx.journal"
    process = kill_after([*args, "-o", out], journal, 2)
    assert process.returncode == -signal.SIGKILL
    done = journal_removals(journal)
    assert 2 <= done < len(full_report["removed"]), done
    assert not out.exists() and not (tmp_path / "out.json").exists()
    killed_journal = journal.read_bytes()
    # the journal holds the uninterrupted run's first removals
    lines = [json.loads(line)["removals"] for line in killed_journal.decode().splitlines()[1 : done + 1]]
    assert [r for batch in lines for r in batch] == full_report["removed"][:done]

    # without --resume: one clear line, and the journal stays
    result = invoke(*args, "-o", out)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    error = result.stderr.splitlines()
    assert len(error) == 1 and error[0].startswith("onnxcar: error: ") and "--resume" in error[0], result.stderr
    assert journal.read_bytes() == killed_journal and not out.exists()

    # a line torn by the kill is dropped on resume
    with open(journal, "a") as f:
        f.write('{"channel": 3, "gro')
    # --resume finishes it: the same model, byte for byte, and the same removals
    resumed = json.loads(ok(invoke(*args, "-o", out, "--resume", "--json")).stdout)
    assert out.read_bytes() == full_bytes
    assert resumed["removed"] == full_report["removed"]
    assert resumed["final_metric"] == full_report["final_metric"]
    assert not journal.exists()


def test_resume_and_force_with_a_journal(tmp_path, resumable):
    """--resume replays the journal's removals; --force ignores it and starts afresh."""
    root, args, full_bytes, full_report = resumable
    # a journal of this very run whose first removals differ from what the greedy loop picks
    out = tmp_path / "out.onnx"
    journal = tmp_path / "out.onnx.journal"
    process = kill_after([*args, "-o", out], journal, 1)
    assert process.returncode == -signal.SIGKILL
    header = json.loads(journal.read_text().splitlines()[0])
    first = full_report["removed"][0]
    fake = {**first, "channel": next(c for c in range(16) if c != first["channel"]), "score": 123.0}
    journal.write_text(json.dumps(header) + "\n" + json.dumps({"removals": [fake]}) + "\n")

    replayed = json.loads(ok(invoke(*args, "-o", out, "--resume", "--json")).stdout)
    assert replayed["removed"][0] == fake
    assert len(replayed["removed"]) == len(full_report["removed"])
    assert replayed["removed"] != full_report["removed"]

    journal.write_text(json.dumps(header) + "\n" + json.dumps({"removals": [fake]}) + "\n")
    fresh = json.loads(ok(invoke(*args, "-o", out, "--force", "--json")).stdout)
    assert fresh["removed"] == full_report["removed"]
    assert out.read_bytes() == full_bytes
    assert not journal.exists()


def test_resume_refuses_a_journal_of_other_settings(tmp_path, resumable):
    root, args, _, _ = resumable
    out = tmp_path / "out.onnx"
    journal = tmp_path / "out.onnx.journal"
    journal.write_text(json.dumps({"run": "0" * 64}) + "\n")
    result = invoke(*args, "-o", out, "--resume")
    assert result.exit_code == 2
    error = result.stderr.splitlines()
    assert len(error) == 1 and error[0].startswith("onnxcar: error: ") and "different" in error[0], result.stderr
    assert not out.exists()
