"""The importance protocol: one score per channel of a group; low scores are pruned first."""

from typing import Protocol, runtime_checkable

import numpy as np

from onnxcar.graph.analysis import Analysis, Group


class Importance(Protocol):
    """Maps a group to one score per channel, in the group's channel order.

    ``depends_on_removals`` says whether removing some of a group's channels changes the
    scores of the others (CAR: yes). When it is False, the greedy loop ranks a group once.
    """

    name: str
    depends_on_removals: bool

    def __call__(self, analysis: Analysis, group: Group, removed: frozenset[int]) -> np.ndarray:
        """Scores of every channel of ``group``, given channels already ``removed``."""
        ...


@runtime_checkable
class BoundedImportance(Importance, Protocol):
    """An importance that can find its lowest scores without computing every score exactly."""

    def lowest(self, analysis: Analysis, group: Group, removed: frozenset[int], count: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and a flag per channel: the ``count`` lowest (ties to the lowest index) are exact;
        the others may be lower bounds, flagged False, and still rank after them."""
        ...
