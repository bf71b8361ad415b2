"""The incremental savings model agrees with ``plan_cost`` after every removal, on every topology family."""

import numpy as np
import pytest

from onnxcar.graph import analyze
from onnxcar.graph.cost import plan_cost
from onnxcar.graph.savings import Savings
from onnxcar.surgery.plan import Plan
from tests.zoo import exported, handbuilt, quantized

MODELS = {
    "residual": lambda: exported.export("resnet_blocks", exporter="torchscript", fold_bn=False),
    "se": lambda: exported.export("mobilenet_se", exporter="torchscript", fold_bn=True),
    "dense": lambda: exported.export("densenet_block", exporter="dynamo", fold_bn=True),
    "flatten": lambda: exported.export("vgg_flatten", exporter="torchscript", fold_bn=True),
    "split": handbuilt.CASES["split_channels"],
    "grouped": lambda: exported.export("grouped_conv", exporter="torchscript", fold_bn=True),
    "lrn": handbuilt.CASES["lrn"],
    "shuffle": handbuilt.CASES["channel_shuffle"],
    "quantized": lambda: quantized.quantized_sample(images=20),
}


@pytest.mark.parametrize("measure", ["params", "macs"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_savings_equal_plan_cost_after_each_removal(name, measure):
    analysis = analyze(MODELS[name]())
    groups = [g for g in analysis.groups if g.prunable]
    rng = np.random.default_rng(0)
    removed: set[int] = set()
    savings = Savings(analysis, measure)
    assert savings.total == getattr(plan_cost(Plan(analysis, frozenset())), measure)
    for _ in range(12):
        group = groups[rng.integers(len(groups))]
        predicted = savings.saved(group)
        alive = [i for i in range(group.size) if int(group.channels[i]) not in removed]
        index = int(rng.choice(alive))
        channel = int(group.channels[index])
        if not analysis.feasible(removed | {channel}):
            continue
        before = savings.total
        after = getattr(plan_cost(Plan(analysis, frozenset(removed | {channel}))), measure)
        assert predicted[index] == before - after
        assert savings.remove(channel) == before - after
        assert savings.total == after
        removed.add(channel)
        assert savings.saved(group)[index] == 0  # gone: nothing more to save
    resumed = Savings(analysis, measure, frozenset(removed))
    assert resumed.total == savings.total
    for group in groups:
        np.testing.assert_array_equal(resumed.saved(group), savings.saved(group))
