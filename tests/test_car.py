"""The fast CAR engine gives exactly the naive method's per-image predictions."""

import numpy as np
import pytest

from onnxcar.graph import analyze
from onnxcar.importance.data import Batch, DataScorer, ReductionIndex
from onnxcar.importance.evaluator import Task
from onnxcar.runners.config import RunnerConfig
from onnxcar.runners.ort import OrtRunner
from onnxcar.surgery import make_plan, remove_channels
from onnxcar.surgery.verify import random_feeds
from tests.zoo import exported, handbuilt

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


MODELS = {
    "dynamic_view": _dynamic_view_model,
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
        evaluator = scorer.evaluator(analysis, group, frozenset(already))
        linear_seen.append(evaluator.probe.linear)
        candidates = [i for i in range(group.size) if int(group.channels[i]) not in already][:5]
        current = np.array([int(c) not in already for c in group.channels], np.float32)
        outcomes = evaluator.outcomes(current, candidates)
        for row, i in enumerate(candidates):
            predictions = _naive_predictions(model, inputs, set(already) | group.channel_ids([i]))
            np.testing.assert_array_equal(outcomes[row], (predictions == labels).astype(float))
    scorer.close()
    assert any(linear_seen) == linear, linear_seen


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
