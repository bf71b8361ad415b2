"""Global pruning: one greedy loop over every selected layer's filters, checked against a brute-force
reference (real smaller models, costs from ``plan_cost``), against the exhaustive search, and
for resume; and the reuse of cached prefix activations across removals."""

import json
from fractions import Fraction

import numpy as np
import onnx
import pytest

import onnxcar
from onnxcar.graph import analyze
from onnxcar.graph.cost import plan_cost
from onnxcar.importance.data import Batch, DataScorer, ReductionIndex
from onnxcar.tasks import Task
from onnxcar.importance.weights import producer_filter_norms
from onnxcar.pruning.config import PruneConfig
from onnxcar.pruning.global_greedy import global_iterations
from onnxcar.runners.config import RunnerConfig
from onnxcar.surgery import make_plan, remove_channels
from onnxcar.surgery.plan import Plan
from tests.conftest import Exhaustive
from tests.test_prune import correct, labelled_data, ok, invoke, save, two_conv_cnn


def _cost(analysis, removed, measure) -> int:
    return getattr(plan_cost(Plan(analysis, frozenset(removed))), measure)


def _key(score: Fraction, saved: int) -> Fraction:
    """Score per unit saved; what costs nothing (score <= 0) first, largest saving first."""
    return score / saved if score > 0 else (score - 1) * saved


def _reference(model, keep: float, measure: str, per_iter: int, score) -> list[list[tuple[str, int]]]:
    """Global greedy the plain way: every feasible channel of every group is removed in turn and
    keyed by ``score(removed, candidate)`` per cost it saves (exact fractions); the ``per_iter``
    least (then earlier group, lower index) go, the last iteration stopping at the budget."""
    analysis = analyze(model)
    groups = [g for g in analysis.groups if g.prunable]
    limit = keep * _cost(analysis, set(), measure)
    removed: set[int] = set()
    iterations = []
    while _cost(analysis, removed, measure) > limit:
        now = _cost(analysis, removed, measure)
        options = []
        for position, group in enumerate(groups):
            for index in range(group.size):
                channel = int(group.channels[index])
                if channel in removed or not analysis.feasible(removed | {channel}):
                    continue
                saved = now - _cost(analysis, removed | {channel}, measure)
                if saved > 0:
                    options.append((_key(Fraction(score(removed, group, index)), saved), position, index, group))
        options.sort(key=lambda o: o[:3])
        batch = []
        for _, _, index, group in options:
            channel = int(group.channels[index])
            if len(batch) == per_iter or _cost(analysis, removed, measure) <= limit:
                break
            if analysis.feasible(removed | {channel}):
                removed.add(channel)
                batch.append((analysis.layer_name(group.producers[0]), index))
        iterations.append(batch)
    return iterations


def _picks(report) -> list[list[tuple[str, int]]]:
    by_iteration: dict[int, list] = {}
    for r in report["removed"]:
        by_iteration.setdefault(r["iteration"], []).append((r["layer"], r["channel"]))
    return list(by_iteration.values())


@pytest.mark.parametrize("measure, keep, per_iter", [("macs", 0.6, 1), ("params", 0.7, 2)])
def test_global_car_matches_brute_force(tmp_path, measure, keep, per_iter):
    model = two_conv_cnn(channels=6, hw=8, seed=3)
    path = save(model, tmp_path / "model.onnx")
    images, labels = labelled_data(model, tmp_path / "data.npz", 120, seed=2)
    analysis = analyze(model)

    def errors_added(removed, group, index):  # CAR as a fraction of the number of images, exactly
        before = correct(remove_channels(make_plan(analysis, removed)), images, labels)
        after = correct(remove_channels(make_plan(analysis, removed | group.channel_ids([index]))), images, labels)
        return Fraction(before - after, len(images))

    report = json.loads(ok(invoke("prune", path, "-o", tmp_path / "out.onnx", "--criterion", "car", "--data",
                                  tmp_path / "data.npz", f"--target-{measure}", keep, "--per-iter", per_iter,
                                  "--tie-break", "index", "--json")).stdout)
    assert _picks(report) == _reference(model, keep, measure, per_iter, errors_added)
    assert report["config"]["scope"] == "global" and report["config"]["target"][measure] == keep
    assert report["after"][measure] <= keep * report["before"][measure]
    assert list(report["curves"]) == ["global"]
    removed: set[int] = set()
    for r in report["removed"]:  # scores on the network an iteration starts from; savings pick after pick
        group = analysis.group(r["layer"])
        channel = int(group.channels[r["channel"]])
        start = {int(analysis.group(e["layer"]).channels[e["channel"]]) for e in report["removed"]
                 if e["iteration"] < r["iteration"]}
        assert r["score"] == pytest.approx(float(errors_added(start, group, r["channel"])), abs=1e-12)
        assert r["saved"] == _cost(analysis, removed, measure) - _cost(analysis, removed | {channel}, measure)
        removed.add(channel)
    final = correct(onnx.load(tmp_path / "out.onnx"), images, labels) / len(images)
    assert report["final_metric"] == pytest.approx(final, abs=1e-12)


def test_global_l1_matches_brute_force():
    model = two_conv_cnn(channels=6, hw=8, seed=3)
    analysis = analyze(model)
    norms = {g.id: producer_filter_norms(analysis, g, 1) for g in analysis.groups if g.prunable}
    result = onnxcar.prune(model, criterion="l1", target=onnxcar.Macs(0.5))
    picks = [[(r.layer, r.channel)] for r in result.removals]
    assert picks == _reference(model, 0.5, "macs", 1, lambda removed, group, index: norms[group.id][index])
    assert result.after.macs <= 0.5 * result.before.macs


@pytest.mark.parametrize("tie_break", ["loss", "index"])
@pytest.mark.parametrize("target", [onnxcar.Macs(0.5), onnxcar.Count(9)], ids=["macs", "count"])
def test_search_across_groups_equals_exhaustive_global_greedy(target, tie_break):
    model = two_conv_cnn(channels=6, hw=8, seed=5)
    analysis = analyze(model)
    groups = [g for g in analysis.groups if g.prunable]
    rng = np.random.default_rng(1)
    inputs = {"input": rng.standard_normal((96, 3, 8, 8), dtype=np.float32)}
    labels = rng.integers(0, 10, 96)
    config = PruneConfig("car", target, per_iter=2, tie_break=tie_break, scope="global")
    runs = []
    for wrap in (lambda index: index, Exhaustive):
        scorer = DataScorer(Batch(inputs, labels), Task(), RunnerConfig(batch_size=64), keep_groups=True)
        runs.append(list(global_iterations(analysis, groups, wrap(ReductionIndex(scorer, tie_break)), config,
                                           scorer=scorer)))
        scorer.close()
    assert runs[0] == runs[1]
    assert sum(map(len, runs[0])) >= 4


def test_prefix_activations_survive_removals_after_the_cut():
    """conv_a's cut lies before conv_b: removing a conv_b channel keeps conv_a's cached prefix;
    removing a conv_a channel makes conv_b's prefix run again. Outcomes equal a fresh scorer's."""
    model = two_conv_cnn(channels=6, hw=8, seed=5)
    analysis = analyze(model)
    first, second = analysis.group("conv_a"), analysis.group("conv_b")
    rng = np.random.default_rng(2)
    batch = Batch({"input": rng.standard_normal((40, 3, 8, 8), dtype=np.float32)}, rng.integers(0, 10, 40))
    scorer = DataScorer(batch, Task(), RunnerConfig(batch_size=64), keep_groups=True)
    for group in (first, second):
        scorer.evaluator(analysis, group, frozenset())
    assert scorer.prefix_runs == 2
    cached = scorer.evaluator(analysis, first, frozenset()).cache
    later = frozenset(second.channel_ids([1]))
    reused = scorer.evaluator(analysis, first, later)
    assert scorer.prefix_runs == 2 and all(reused.cache[name] is cached[name] for name in reused.probe.cut)
    earlier = frozenset(first.channel_ids([2]))
    scorer.evaluator(analysis, second, earlier)
    assert scorer.prefix_runs == 3
    fresh = DataScorer(batch, Task(), RunnerConfig(batch_size=64))
    for group, removed in ((first, later), (second, earlier)):
        current = scorer.mask_row(group, removed)
        np.testing.assert_array_equal(
            scorer.evaluator(analysis, group, removed).outcomes(current, np.arange(group.size)),
            fresh.evaluator(analysis, group, removed).outcomes(current, np.arange(group.size)))
    scorer.close()
    fresh.close()


def test_global_resume_continues_to_the_same_result(tmp_path):
    model = two_conv_cnn(channels=6, hw=8, seed=3)
    path = save(model, tmp_path / "model.onnx")
    labelled_data(model, tmp_path / "data.npz", 80, seed=2)
    data = onnxcar.Data(tmp_path / "data.npz", preprocess="none")
    options = dict(criterion="car", target=onnxcar.Macs(0.5), data=data, per_iter=2)
    full = onnxcar.prune(path, **options)
    journal = tmp_path / "run.journal"
    calls = []

    def interrupt(task, done, total, status=""):
        calls.append(done)
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        onnxcar.prune(path, **options, journal=journal, progress=interrupt)
    lines = journal.read_text().splitlines()
    assert len(lines) == 3  # the header and two iterations
    resumed = onnxcar.prune(path, **options, journal=journal, resume=True)
    assert resumed.removals == full.removals
    assert resumed.model.SerializeToString() == full.model.SerializeToString()


@pytest.mark.parametrize("args, message", [
    (["--target-macs", "1.5"], "between 0 and 1"),
    (["--target-macs", "0.5", "--ratio", "0.5"], "exactly one target"),
])
def test_budget_options_are_checked(tmp_path, args, message):
    path = save(two_conv_cnn(channels=6, hw=8), tmp_path / "model.onnx")
    result = invoke("prune", path, "-o", tmp_path / "out.onnx", *args)
    assert result.exit_code == 2 and message in result.stderr, result.stderr


def test_global_count_spans_layers(tmp_path):
    path = save(two_conv_cnn(channels=6, hw=8), tmp_path / "model.onnx")
    report = json.loads(ok(invoke("prune", path, "-o", tmp_path / "out.onnx", "--global", "--count", "7",
                                  "--json")).stdout)
    assert len(report["removed"]) == 7 and report["config"]["scope"] == "global"
    assert [r["iteration"] for r in report["removed"]] == list(range(7))
