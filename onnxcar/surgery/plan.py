"""Checks a set of channels to remove and answers which positions each tensor keeps."""

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from onnxcar.errors import OnnxcarError
from onnxcar.graph.analysis import Analysis


@dataclass(frozen=True)
class Plan:
    """The channels (class ids) removed from an analysed model."""

    analysis: Analysis
    removed: frozenset[int]

    def keep(self, atoms: np.ndarray) -> np.ndarray:
        """True where the atom at that position survives."""
        if not self.removed:
            return np.ones(len(atoms), dtype=bool)
        return ~np.isin(self.analysis.roots(atoms), np.fromiter(self.removed, dtype=np.int64))


def make_plan(analysis: Analysis, removed: Iterable[int]) -> Plan:
    """A plan removing the channels ``removed``; refuses blocked channels and empty tensors."""
    plan = Plan(analysis, frozenset(int(c) for c in removed))
    for group in analysis.groups:
        hit = plan.removed.intersection(group.channels.tolist())
        if not hit:
            continue
        if not group.prunable:
            raise OnnxcarError(f"group {group.id} cannot be pruned: {group.reasons[0]}")
        if len(hit) >= group.size:
            raise OnnxcarError(f"group {group.id} would lose all of its {group.size} channels")
    for name, slot in analysis.tracer.slots.items():
        if not plan.keep(slot.atoms).any():
            raise OnnxcarError(f"tensor {name!r} would lose all of its channels")
    return plan
