"""The importance protocol: one score per channel of a group; low scores are pruned first."""

from typing import Protocol

import numpy as np

from onnxcar.graph.analysis import Analysis, Group


class Importance(Protocol):
    """Maps a group to one score per channel, in the group's channel order."""

    name: str

    def __call__(self, analysis: Analysis, group: Group, removed: frozenset[int]) -> np.ndarray:
        """Scores of every channel of ``group``, given channels already ``removed``."""
        ...
