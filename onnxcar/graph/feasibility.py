"""Which removals leave every channel tensor at least one channel, answered in time linear in the picks."""

from collections.abc import Iterable

import numpy as np

from onnxcar.graph.analysis import Analysis, Group


class Survivors:
    """How many channels each tensor that holds ``group``'s channels keeps, after ``removed``.

    ``take(index)`` removes the group's channel ``index`` unless that would empty a tensor.
    """

    def __init__(self, analysis: Analysis, group: Group, removed: Iterable[int]):
        gone = np.fromiter(removed, dtype=np.int64)
        position = {int(c): i for i, c in enumerate(group.channels)}
        self._alive: list[int] = []
        self._uses: list[list[tuple[int, int]]] = [[] for _ in range(group.size)]  # (tensor, atoms of the channel)
        for slot in analysis.tracer.slots.values():
            roots = analysis.roots(slot.atoms)
            mine = np.isin(roots, group.channels)
            if not mine.any():
                continue
            tensor = len(self._alive)
            self._alive.append(int(np.count_nonzero(~np.isin(roots, gone))))
            for root, count in zip(*np.unique(roots[mine], return_counts=True)):
                self._uses[position[int(root)]].append((tensor, int(count)))
        self._taken = set(int(c) for c in gone)
        self._group = group

    def can_take(self, index: int) -> bool:
        if int(self._group.channels[index]) in self._taken:
            return False
        return all(self._alive[tensor] > count for tensor, count in self._uses[index])

    def take(self, index: int) -> bool:
        """Removes channel ``index`` of the group when that leaves every tensor a channel; says whether it did."""
        if not self.can_take(index):
            return False
        for tensor, count in self._uses[index]:
            self._alive[tensor] -= count
        self._taken.add(int(self._group.channels[index]))
        return True
