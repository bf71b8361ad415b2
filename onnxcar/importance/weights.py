"""Data-free criteria: filter weight norms (Li et al. 2017) and a random control."""

from dataclasses import dataclass

import numpy as np

from onnxcar.graph.analysis import Analysis, Group
from onnxcar.graph.channels import EditKind
from onnxcar.graph.constants import constant_value
from onnxcar.importance.registry import CriterionInputs, register_criterion


def producer_filter_norms(analysis: Analysis, group: Group, order: int) -> np.ndarray:
    """The ``order``-norm (1 or 2) of each channel's filters, summed over the group's producers."""
    position = {int(c): i for i, c in enumerate(group.channels)}
    producers = set(group.producers)
    nodes = {node.name: node for node in analysis.graph.nodes}
    scores = np.zeros(group.size)
    for edit in analysis.tracer.edits:
        if edit.kind is not EditKind.OWN or edit.input_index != 1 or edit.node not in producers:
            continue
        norms = _filter_norms(constant_value(nodes[edit.node].inputs[1]), edit.axis, order)
        for root, norm in zip(analysis.roots(edit.atoms).tolist(), norms):
            if root in position:
                scores[position[root]] += norm
    return scores


def _filter_norms(weight: np.ndarray, axis: int, order: int) -> np.ndarray:
    """The norm of each slice of ``weight`` along ``axis``, in float64, converting a few MB at a time."""
    slices = np.moveaxis(weight, axis, 0)
    step = max(1, _CHUNK // max(1, slices[0].size))
    return np.concatenate([
        np.linalg.norm(slices[start : start + step].astype(np.float64).reshape(-1, slices[0].size), ord=order, axis=1)
        for start in range(0, len(slices), step)
    ])


_CHUNK = 1 << 20  # elements converted to float64 at once


@dataclass(frozen=True)
class WeightNorm:
    """Li et al. 2017: the L1 (or L2) norm of a channel's filters."""

    order: int = 1
    depends_on_removals = False

    @property
    def name(self) -> str:
        return f"l{self.order}"

    def __call__(self, analysis: Analysis, group: Group, removed: frozenset[int]) -> np.ndarray:
        return producer_filter_norms(analysis, group, self.order)


@dataclass(frozen=True)
class RandomScore:
    """Uniform random scores: the control criterion, seeded per group."""

    seed: int = 0
    name: str = "random"
    depends_on_removals = False

    def __call__(self, analysis: Analysis, group: Group, removed: frozenset[int]) -> np.ndarray:
        return np.random.default_rng([self.seed, group.id]).random(group.size)


@register_criterion("l1", help="summed L1 norm of the channel's filters (Li et al. 2017)")
def _l1(inputs: CriterionInputs) -> WeightNorm:
    return WeightNorm(1)


@register_criterion("l2", help="summed L2 norm of the channel's filters")
def _l2(inputs: CriterionInputs) -> WeightNorm:
    return WeightNorm(2)


@register_criterion("random", help="seeded random order (the control)")
def _random(inputs: CriterionInputs) -> RandomScore:
    return RandomScore(inputs.seed)
