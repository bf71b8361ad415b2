"""The fast CAR engine gives exactly the naive method's per-image predictions, and its early
stopping gives exactly the exhaustive greedy choice."""

from pathlib import Path

import numpy as np
import pytest

from onnxcar.data import DataSpec, Preprocess, load_dataset
from onnxcar.graph import analyze
from onnxcar.importance.batch import make_batch
from onnxcar.importance.data import Batch, DataScorer, ReductionIndex
from onnxcar.tasks import Task
from onnxcar.io import load_model
from onnxcar.importance.search import least_loss, tie_growth
from onnxcar.pruning.driver import greedy
from onnxcar.runners.config import RunnerConfig
from onnxcar.runners.ort import OrtRunner
from onnxcar.surgery import make_plan, remove_channels
from onnxcar.surgery.verify import random_feeds
from tests.conftest import Exhaustive
from tests.zoo import exported, handbuilt, quantized

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def _dynamic_view_model():
    """Flatten and an SE gate written with ``x.view(x.size(0), ...)``: shape arithmetic crosses the cut."""
    import io
    import warnings

    import onnx
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
            self.se1, self.se2 = nn.Linear(8, 4), nn.Linear(4, 8)
            self.fc = nn.Linear(8 * 4 * 4, 10)

        def forward(self, x):
            x = torch.relu(self.conv1(x))
            b, c = x.size(0), x.size(1)
            gate = torch.sigmoid(self.se2(torch.relu(self.se1(x.mean((2, 3)).view(b, c)))))
            x = torch.relu(self.conv2(x * gate.view(b, c, 1, 1)))
            x = nn.functional.max_pool2d(x, 2)
            return self.fc(x.view(x.size(0), -1))

    torch.manual_seed(0)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Net().eval(), (torch.randn(2, 3, 8, 8),), buffer, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    return onnx.load_from_string(buffer.getvalue())


def _lrn_window_model():
    """The LRN case with three conv_a channels removed: its LRN is a channel-window Conv and more ops."""
    analysis = analyze(handbuilt.CASES["lrn"]())
    return remove_channels(make_plan(analysis, analysis.group("conv_a").channel_ids([1, 4, 5])))


MODELS = {
    "dynamic_view": _dynamic_view_model,
    "lrn": handbuilt.CASES["lrn"],
    "lrn_window": _lrn_window_model,
    "shuffle": lambda: exported.export("shufflenet_v1", exporter="torchscript", fold_bn=False),
    "quantized": quantized.quantized_sample,
    "residual": lambda: exported.export("resnet_blocks", exporter="torchscript", fold_bn=False),
    "se": lambda: exported.export("mobilenet_se", exporter="torchscript", fold_bn=True),
    "dense": lambda: exported.export("densenet_block", exporter="dynamo", fold_bn=True),
    "flatten": lambda: exported.export("vgg_flatten", exporter="torchscript", fold_bn=True),
    "split": handbuilt.CASES["split_channels"],
}


def _naive_predictions(model, inputs, removed):
    with OrtRunner(remove_channels(make_plan(analyze(model), removed)) if removed else model) as runner:
        return runner.run(inputs)[0].reshape(len(next(iter(inputs.values()))), -1).argmax(axis=1)


@pytest.mark.parametrize("linear", [True, False], ids=["rank-1", "masked"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_fast_outcomes_equal_naive_predictions(name, linear):
    model = MODELS[name]()
    analysis = analyze(model)
    inputs = random_feeds(model, 24, seed=1)
    with OrtRunner(model) as runner:
        logits = runner.run(inputs)[0]
    labels = logits.reshape(24, -1).argmax(axis=1)
    labels[::3] = (labels[::3] + 1) % logits.reshape(24, -1).shape[1]  # some wrong labels
    scorer = DataScorer(Batch(inputs, labels), Task(), RunnerConfig(batch_size=40), linear=linear)
    rng = np.random.default_rng(0)
    linear_seen = []
    for group in [g for g in analysis.groups if g.prunable][:4]:
        already = group.channel_ids(rng.choice(group.size, group.size // 3, replace=False))
        evaluator = scorer.evaluator(analysis, group, frozenset(already), rank_one=True)
        linear_seen.append(evaluator.probe.linear)
        candidates = [i for i in range(group.size) if int(group.channels[i]) not in already][:5]
        current = np.array([int(c) not in already for c in group.channels], np.float32)
        outcomes = evaluator.outcomes(current, candidates)
        for row, i in enumerate(candidates):
            predictions = _naive_predictions(model, inputs, set(already) | group.channel_ids([i]))
            np.testing.assert_array_equal(outcomes[row], (predictions == labels).astype(float))
    scorer.close()
    # the rank-1 suffix needs a group-1 layer with float weights as the only reader: ShuffleNet v1's
    # groups are read by grouped convs, the quantized model's through DequantizeLinear
    assert any(linear_seen) == (linear and name not in ("shuffle", "quantized")), linear_seen


def test_car_scores_are_accuracy_drops():
    model = MODELS["residual"]()
    analysis = analyze(model)
    inputs = random_feeds(model, 32, seed=2)
    with OrtRunner(model) as runner:
        labels = runner.run(inputs)[0].argmax(axis=1)
    scorer = DataScorer(Batch(inputs, labels), Task())
    group = next(g for g in analysis.groups if g.prunable)
    scores = ReductionIndex(scorer)(analysis, group, frozenset())
    for i in range(group.size):
        accuracy = np.mean(_naive_predictions(model, inputs, group.channel_ids([i])) == labels)
        assert scores[i] == pytest.approx(1.0 - accuracy)
    scorer.close()


# ----------------------------------------------------------------------------- early stopping (importance.search)


def _labelled(model, samples, seed):
    inputs = random_feeds(model, samples, seed=seed)
    with OrtRunner(model) as runner:
        logits = runner.run(inputs)[0].reshape(samples, -1)
    labels = logits.argmax(axis=1)
    labels[::4] = (labels[::4] + 1) % logits.shape[1]
    return inputs, labels


def test_hardest_first_orders_by_margin_and_by_error():
    logits = np.array([[3.0, 1.0], [0.5, 2.0], [1.0, 1.2], [5.0, 0.0], [2.0, 1.9]])
    labels = np.array([0, 0, 1, 0, 0])  # margins 2, -1.5, 0.2, 5, 0.1
    assert Task().hardest_first(logits, labels).tolist() == [1, 4, 2, 0, 3]
    outputs, targets = np.array([[1.0], [4.0], [2.0]]), np.array([[1.0], [1.0], [1.5]])
    assert Task("regression").hardest_first(outputs, targets).tolist() == [1, 2, 0]


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("name", ["residual", "se", "flatten", "split"])
def test_least_loss_equals_exhaustive_ranking(name, task):
    model = MODELS[name]()
    analysis = analyze(model)
    inputs, labels = _labelled(model, 160, seed=3)
    task = Task(task)
    if not task.higher_is_better:
        with OrtRunner(model) as runner:
            labels = runner.run(inputs)[0] + np.random.default_rng(4).normal(0, 0.5, (160, 1)).astype(np.float32)
    scorer = DataScorer(Batch(inputs, labels), task, RunnerConfig(batch_size=64))
    for group in [g for g in analysis.groups if g.prunable][:3]:
        removed = frozenset(group.channel_ids([0]))
        current = scorer.mask_row(group, removed)
        candidates = np.flatnonzero(current)
        evaluator = scorer.evaluator(analysis, group, removed, rank_one=False)
        truth = evaluator.outcomes(current, candidates).mean(axis=1)
        losses = truth if not task.higher_is_better else 1 - truth
        for count in (1, 3):
            ranking = least_loss(evaluator, current, candidates, count)
            least = np.lexsort((np.arange(len(candidates)), losses))[:count]
            assert ranking.exact[least].all()
            np.testing.assert_array_equal(ranking.metrics[ranking.exact], truth[ranking.exact])
            optimistic = ranking.metrics >= truth if task.higher_is_better else ranking.metrics <= truth
            assert optimistic.all()
            assert ranking.current == evaluator.outcomes(current, [-1]).mean()
    scorer.close()


def test_least_loss_rules_out_most_candidates_early_on_the_sample():
    model = load_model(SAMPLES / "alexnet_cifar10.onnx")
    spec = DataSpec(SAMPLES / "cifar10_prune_1000.npz", preprocess=Preprocess.preset("cifar10"), limit=300)
    batch = make_batch(model, load_dataset(spec), Task(), RunnerConfig())
    analysis = analyze(model)
    group = analysis.group("conv2")
    scorer = DataScorer(batch, Task())
    current = scorer.mask_row(group, frozenset())
    evaluator = scorer.evaluator(analysis, group, frozenset(), rank_one=False)
    seen = []
    original = evaluator.outcomes

    def counted(current, candidates, samples=None):
        seen.append(len(candidates) * (evaluator.count if samples is None else len(samples)))
        return original(current, candidates, samples)

    evaluator.outcomes = counted
    ranking = least_loss(evaluator, current, np.arange(group.size), 1)
    scorer.close()
    assert ranking.exact.sum() < group.size // 4
    assert sum(seen) < 0.5 * group.size * evaluator.count  # under half the exhaustive image-candidates


@pytest.mark.parametrize("per_iter", [1, 3])
@pytest.mark.parametrize("name, layer", [("residual", None), ("split", "conv_a"), ("dense", None)])
def test_greedy_with_early_stopping_equals_exhaustive_greedy(name, layer, per_iter):
    model = MODELS[name]()
    analysis = analyze(model)
    group = analysis.group(layer) if layer else next(g for g in analysis.groups if g.prunable)
    inputs, labels = _labelled(model, 96, seed=5)
    runs = []
    for wrap in (lambda index: index, Exhaustive):
        scorer = DataScorer(Batch(inputs, labels), Task(), RunnerConfig(batch_size=64))
        runs.append(list(greedy(analysis, group, wrap(ReductionIndex(scorer)), group.size - 1, per_iter=per_iter,
                                scorer=scorer)))
        scorer.close()
    assert runs[0] == runs[1]
    assert len(runs[0]) == group.size - 1 - (name == "split")  # split: each part keeps a channel


def test_greedy_ranks_exactly_when_a_pick_would_rest_on_a_bound():
    """The least-scored channel would empty a tensor and the next score is only a bound."""
    analysis = analyze(MODELS["split"]())
    group = analysis.group("conv_a")  # 10 channels, split 4 | 6
    removed = frozenset(group.channel_ids([0, 1, 2]))  # channel 3 is the first part's last

    class Bounded:
        name, calls = "stub", 0

        def __call__(self, analysis, group, removed):
            self.calls += 1
            return np.array([np.inf] * 3 + [0.0, 5.0, 4.0, 3.0, 2.0, 1.0, 6.0])

        def lowest(self, analysis, group, removed, count):
            return np.array([np.inf] * 3 + [0.0] + [0.5] * 6), np.array([True] * 4 + [False] * 6)

    stub = Bounded()
    picks = [r.channel for r in greedy(analysis, group, stub, 2, per_iter=2, removed=removed)]
    assert picks == [8, 7] and stub.calls == 1


# ----------------------------------------------------------------------------- tie-break keys


def _agreeing(model, samples, seed):
    """Inputs labelled with the model's own top-1: accuracy saturates at 1, and many removals tie at CAR 0."""
    inputs = random_feeds(model, samples, seed=seed)
    with OrtRunner(model) as runner:
        return inputs, runner.run(inputs)[0].reshape(samples, -1).argmax(axis=1)


def test_tie_values_by_hand():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    labels = np.array([0, 1])
    loss = Task().tie_values(logits, labels, "loss")
    np.testing.assert_allclose(loss, [np.log(np.exp(2) + 2) - 2, np.log(1 + np.e + np.exp(3)) - 1], rtol=1e-12)
    np.testing.assert_allclose(Task().tie_values(logits, labels, "margin"), [-2.0, 2.0])


@pytest.mark.parametrize("tie_break", ["loss", "margin"])
@pytest.mark.parametrize("name", ["residual", "flatten", "split"])
def test_least_loss_with_a_tie_break_equals_the_exhaustive_order(name, tie_break):
    """The search's least candidates, in (CAR, tie-break key, index) order, are those of an
    exhaustive computation of both keys; ties in CAR are many here."""
    model = MODELS[name]()
    analysis = analyze(model)
    inputs, labels = _agreeing(model, 96, seed=6)
    scorer = DataScorer(Batch(inputs, labels), Task(), RunnerConfig(batch_size=64))
    ties_seen = 0
    for group in [g for g in analysis.groups if g.prunable][:3]:
        current = scorer.mask_row(group, frozenset())
        candidates = np.flatnonzero(current)
        evaluator = scorer.evaluator(analysis, group, frozenset(), rank_one=False)
        outcomes, values = evaluator.outcomes_and_ties(current, [-1, *candidates], tie_break=tie_break)
        losses = (1 - outcomes[1:]).sum(axis=1)
        growth = tie_growth(values[1:], float(values[0].mean()))
        truth = np.lexsort((np.arange(len(candidates)), growth, losses))
        ties_seen += int(np.sum(losses == losses[truth[0]]) > 1)
        for count in (1, 3):
            ranking = least_loss(evaluator, current, candidates, count, tie_break)
            keys = np.where(ranking.exact, ranking.metrics, -np.inf)  # accuracy: unknown ones last
            found = np.lexsort((np.arange(len(candidates)), np.nan_to_num(ranking.ties, nan=np.inf), -keys))[:count]
            assert found.tolist() == truth[:count].tolist()
            np.testing.assert_array_equal(ranking.ties[found], growth[found])
    scorer.close()
    assert ties_seen, "the case should hold ties in CAR"


@pytest.mark.parametrize("tie_break", ["loss", "index"])
def test_greedy_with_a_tie_break_equals_exhaustive_greedy(tie_break):
    model = MODELS["residual"]()
    analysis = analyze(model)
    group = next(g for g in analysis.groups if g.prunable)
    inputs, labels = _agreeing(model, 64, seed=7)
    runs = []
    for wrap in (lambda index: index, Exhaustive):
        scorer = DataScorer(Batch(inputs, labels), Task(), RunnerConfig(batch_size=64), linear=False)
        index = ReductionIndex(scorer, tie_break)
        runs.append([(r.channel, r.score, r.tie, r.tied) for r in greedy(analysis, group, wrap(index), 6,
                                                                           scorer=scorer)])
        scorer.close()
    assert runs[0] == runs[1]
    if tie_break == "index":
        assert all(tie is None and tied is None for _, _, tie, tied in runs[0])
    else:
        assert any(tied for *_, tied in runs[0]), "the run should hold picks decided by the tie-break"


def test_counting_ties_keeps_the_index_order():
    """Settling ties under ``index`` (to count them) picks what plain ``index`` picks."""
    model = MODELS["residual"]()
    analysis = analyze(model)
    group = next(g for g in analysis.groups if g.prunable)
    inputs, labels = _agreeing(model, 64, seed=7)
    runs = []
    for count_ties in (False, True):
        scorer = DataScorer(Batch(inputs, labels), Task(), RunnerConfig(batch_size=64))
        index = ReductionIndex(scorer, "index", count_ties)
        runs.append(list(greedy(analysis, group, index, 6, scorer=scorer)))
        scorer.close()
    assert [(r.channel, r.score, r.metric) for r in runs[0]] == [(r.channel, r.score, r.metric) for r in runs[1]]
    assert all(r.tied is None for r in runs[0])
    assert any(r.tied for r in runs[1]) and all(r.tie == 0.0 for r in runs[1])
