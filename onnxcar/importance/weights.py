"""Data-free criteria: filter weight norms (Li et al. 2017) and a random control."""

from dataclasses import dataclass

import numpy as np

from onnxcar.graph.analysis import Analysis, Group
from onnxcar.graph.channels import EditKind
from onnxcar.graph.constants import constant_value


def producer_filter_norms(analysis: Analysis, group: Group, order: int) -> np.ndarray:
    """The ``order``-norm of each channel's filters, summed over the group's producers."""
    position = {int(c): i for i, c in enumerate(group.channels)}
    producers = set(group.producers)
    nodes = {node.name: node for node in analysis.graph.nodes}
    scores = np.zeros(group.size)
    for edit in analysis.tracer.edits:
        if edit.kind is not EditKind.OWN or edit.input_index != 1 or edit.node not in producers:
            continue
        weight = np.moveaxis(constant_value(nodes[edit.node].inputs[1]).astype(np.float64), edit.axis, 0)
        norms = np.linalg.norm(weight.reshape(len(weight), -1), ord=order, axis=1)
        for root, norm in zip(analysis.roots(edit.atoms).tolist(), norms):
            if root in position:
                scores[position[root]] += norm
    return scores


@dataclass(frozen=True)
class WeightNorm:
    """Li et al. 2017: the L1 (or L2) norm of a channel's filters."""

    order: int = 1

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

    def __call__(self, analysis: Analysis, group: Group, removed: frozenset[int]) -> np.ndarray:
        return np.random.default_rng([self.seed, group.id]).random(group.size)
