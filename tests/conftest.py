"""Shared fixtures and helpers for the test suite."""

import numpy as np
import pytest

from onnxcar.graph import Analysis, analyze
from onnxcar.surgery import make_plan, mask_channels, remove_channels, verify_equal


def remove_half_and_verify(model, batch_sizes=(1, 3), seed=0, input_shapes=None) -> tuple[Analysis, object]:
    """Removes a seeded random half of every prunable group and checks remove == mask (on inputs
    of ``input_shapes`` where the model leaves dims symbolic)."""
    analysis = analyze(model)
    rng = np.random.default_rng(seed)
    removed: set[int] = set()
    for group in analysis.groups:
        if not group.prunable:
            continue
        taken = 0
        for index in rng.permutation(group.size):
            if taken < group.size // 2 and analysis.feasible(removed | group.channel_ids([index])):
                removed |= group.channel_ids([index])
                taken += 1
    plan = make_plan(analysis, removed)
    pruned = remove_channels(plan)
    result = verify_equal(mask_channels(plan), pruned, batch_sizes=batch_sizes, input_shapes=input_shapes)
    return analysis, pruned, result


@pytest.fixture
def run_cli():
    """Invokes the onnxcar CLI in-process; returns the click Result."""
    from click.testing import CliRunner

    from onnxcar.cli.main import main

    def invoke(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


class Exhaustive:
    """An importance with every score computed exactly: what early stopping must reproduce."""

    def __init__(self, index):
        self.index, self.name = index, index.name

    def __call__(self, analysis, group, removed):
        return self.index(analysis, group, removed)
