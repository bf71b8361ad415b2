"""Global pruning: one greedy loop over the filters of every selected group (beyond the paper,
which prunes one layer at a time).

Each iteration scores every remaining filter of every selected group on the network pruned so
far and removes the ``per_iter`` least. Under a budget of MACs or parameters (``Macs``,
``Params``) a filter's key is its score per unit of cost its removal saves (a filter whose
removal costs nothing, score <= 0, before any other, largest saving first; see
``importance.search.per_unit``), and the loop stops as soon as the model fits the budget; under a filter count (``Ratio``, ``Count``, ``MaxDrop``,
counted over all selected filters) the key is the score itself. Ties go to the earlier group,
then the lower index.

CAR (and RAR) is rescored after every iteration, since every group's scores depend on the
whole network; the early-stopping search runs across groups (``importance.search.least_across``).
Criteria that rank once score each group once; only what each removal saves is updated, after
every pick, from the removals of neighbouring groups.
"""

import logging
from collections.abc import Callable, Iterator

import numpy as np

from onnxcar.graph.analysis import Analysis, Group
from onnxcar.graph.feasibility import Survivors
from onnxcar.graph.cost import plan_cost
from onnxcar.graph.savings import Savings
from onnxcar.importance.base import Importance
from onnxcar.importance.data import DataScorer
from onnxcar.importance.search import per_unit
from onnxcar.pruning.config import PruneConfig
from onnxcar.pruning.driver import Budget, Removal, _budget, _keys, _order
from onnxcar.pruning.targets import CostBudget
from onnxcar.surgery.plan import Plan

log = logging.getLogger(__name__)


class _Goal:
    """When the loop stops: the budget met, or the number of filters removed."""

    def __init__(self, analysis: Analysis, groups: list[Group], config: PruneConfig, removed: frozenset[int], shapes):
        target = config.target
        self.savings = Savings(analysis, target.measure, removed, shapes) if isinstance(target, CostBudget) else None
        if self.savings is not None:
            self.original = getattr(plan_cost(Plan(analysis, frozenset()), shapes), target.measure)
            self.limit = target.limit(self.original)
        else:
            self.wanted = target.removals(sum(g.size for g in groups))
            self.done = sum(int(c) in removed for g in groups for c in g.channels)

    @property
    def met(self) -> bool:
        return self.savings.total <= self.limit if self.savings is not None else self.done >= self.wanted

    def room(self, per_iter: int) -> int:
        """Filters the next iteration may remove."""
        return per_iter if self.savings is not None else min(per_iter, self.wanted - self.done)

    def saved(self, group: Group) -> np.ndarray | None:
        return None if self.savings is None else self.savings.saved(group)

    def take(self, channel: int) -> int | None:
        """Counts the channel as removed; returns what it saved (None without a budget)."""
        if self.savings is None:
            self.done += 1
            return None
        return self.savings.remove(channel)


def global_iterations(
    analysis: Analysis,
    groups: list[Group],
    importance: Importance,
    config: PruneConfig,
    *,
    removed: frozenset[int] = frozenset(),
    scorer: DataScorer | None = None,
    budget: Budget = Budget(None),
    first: int = 0,
    shapes=None,
) -> Iterator[list[Removal]]:
    """Removes filters of ``groups`` until ``config.target`` is met, ``config.per_iter`` per iteration
    (the last one stops at the target). Iterations are numbered from ``first``; ``removed`` are
    channels removed by earlier iterations (a resumed run); ``shapes``: the tensor sizes MACs are
    counted at (see ``plan_cost``)."""
    goal = _Goal(analysis, groups, config, removed, shapes)
    state = _State(analysis, groups, removed)
    rescore = getattr(importance, "depends_on_removals", True)
    ranked = None if rescore else {g.id: _keys(importance(analysis, g, removed))[:, 0] for g in groups}
    removed = set(removed)
    iteration = first
    while not goal.met:
        room = goal.room(config.per_iter)
        if rescore:
            batch = []
            for group, index, score, tie, tied in _rescored(importance, analysis, state, frozenset(removed), room, goal):
                batch.append((group, index, score, tie, tied, goal.take(int(group.channels[index]))))
                if goal.met:
                    break
        else:
            batch = _ranked(ranked, state, room, goal)
        if not batch:
            log.warning("no selected filter can be removed any more: stopping short of the target")
            return
        gone = {int(g.channels[i]) for g, i, *_ in batch}
        metric = scorer.metric(analysis, batch[-1][0], frozenset(removed | gone)) if scorer is not None else None
        if budget.exceeded(metric):
            return
        removed |= gone
        yield [Removal(g.id, state.names[g.id], i, score, metric, iteration, tie, tied, saved)
               for g, i, score, tie, tied, saved in batch]
        iteration += 1


class _State:
    """The selected groups' channels, numbered group after group, and which of them may still go."""

    def __init__(self, analysis: Analysis, groups: list[Group], removed: frozenset[int]):
        self.groups = groups
        self.names = {g.id: analysis.layer_name(g.producers[0]) for g in groups}
        self.offset = dict(zip((g.id for g in groups), np.cumsum([0] + [g.size for g in groups]).tolist()))
        union = Group(-1, np.concatenate([g.channels for g in groups]), [])
        self.survivors = Survivors(analysis, union, removed)  # one count per tensor, whichever group takes
        self.gone = set(removed)

    def can_take(self, group: Group, index: int) -> bool:
        return int(group.channels[index]) not in self.gone and self.survivors.can_take(self.offset[group.id] + index)

    def take(self, group: Group, index: int) -> bool:
        """Removes the channel unless that would empty a tensor; says whether it did."""
        if not self.survivors.take(self.offset[group.id] + index):
            return False
        self.gone.add(int(group.channels[index]))
        return True


def _candidates(state: _State, goal: _Goal) -> list[tuple[Group, np.ndarray]]:
    """Each group's channels that may go now: still there, leaving every tensor a channel, and
    (under a budget) saving something."""
    result = []
    for group in state.groups:
        saved = goal.saved(group)
        alive = [i for i in range(group.size) if state.can_take(group, i) and (saved is None or saved[i] > 0)]
        if alive:
            result.append((group, np.array(alive, dtype=np.int64)))
    return result


def _rescored(importance, analysis, state: _State, removed: frozenset[int], room: int, goal: _Goal) -> list[tuple]:
    """The ``room`` least (score per unit saved) of every group's candidates, rescored on the current
    network: through the search across groups where the criterion has one, else exhaustively."""
    candidates = _candidates(state, goal)
    if not candidates:
        return []
    per = None if goal.savings is None else [goal.saved(g)[indices].astype(np.float64) for g, indices in candidates]
    flat = [(group, int(i)) for group, indices in candidates for i in indices]

    def take(k: int) -> bool:
        return state.take(*flat[k])

    if hasattr(importance, "lowest_across"):
        scores, exact, picks = importance.lowest_across(analysis, candidates, removed, room, per, take)
        keys = _keys(scores)
    else:
        keys = np.concatenate([_keys(importance(analysis, g, removed))[indices] for g, indices in candidates])
        exact = np.ones(len(keys), dtype=bool)
        ordered = keys.copy()
        if per is not None:
            ordered[:, 0] = per_unit(ordered[:, 0], 1.0, np.concatenate(per))
        picks = []
        for k in _order(ordered).tolist():
            if len(picks) == room:
                break
            if take(k):
                picks.append(k)
    ratio = keys[:, 0] if per is None else per_unit(keys[:, 0], 1.0, np.concatenate(per))
    return [(*flat[k], float(keys[k, 0]), float(keys[k, 1]) if keys.shape[1] > 1 else None, tied)
            for k, tied in zip(picks, _tied(keys, ratio, exact, picks))]


def _tied(keys: np.ndarray, ratio: np.ndarray, exact: np.ndarray, picks) -> list:
    """For each pick, whether a candidate still in the running had the same key, so that the
    tie-break chose; None for criteria without a tie-break key."""
    if keys.shape[1] == 1:
        return [None] * len(picks)
    running = exact.copy()
    tied = []
    for k in picks:
        running[k] = False
        tied.append(bool(np.any(running & (ratio == ratio[k]))))
    return tied


def _ranked(scores: dict[int, np.ndarray], state: _State, room: int, goal: _Goal) -> list[tuple]:
    """Up to ``room`` picks of scores computed once, per unit saved (which follows every pick)."""
    batch = []
    best: dict[int, tuple] = {}  # group id -> (the savings it was found with, (key, index) or None)
    while len(batch) < room and not goal.met:
        for group in state.groups:
            saved = goal.saved(group)
            if group.id not in best or best[group.id][0] is not saved:
                best[group.id] = (saved, _least(state, group, scores[group.id], saved))
        found = [(best[g.id][1], position, g) for position, g in enumerate(state.groups) if best[g.id][1] is not None]
        if not found:
            break
        (_, index), _, group = min(found, key=lambda f: (f[0][0], f[1]))
        del best[group.id]
        if state.take(group, index):  # else another group's removal left it the last of a tensor: look again
            batch.append((group, index, float(scores[group.id][index]), None, None,
                          goal.take(int(group.channels[index]))))
    return batch


def _least(state: _State, group: Group, scores: np.ndarray, saved: np.ndarray | None) -> tuple[float, int] | None:
    """(key, index) of the group's least-keyed channel that may go now, or None."""
    key = scores if saved is None else np.where(saved > 0, per_unit(scores, 1.0, np.maximum(saved, 1)), np.inf)
    for index in _order(_keys(key)).tolist():
        if np.isinf(key[index]) and saved is not None:
            return None
        if state.can_take(group, index):
            return float(key[index]), index
    return None


def prune_global(
    analysis: Analysis,
    groups: list[Group],
    config: PruneConfig,
    importance: Importance,
    *,
    scorer: DataScorer | None = None,
    done: list[list[Removal]] = (),
    on_iteration: Callable[[list[Removal]], None] = lambda removals: None,
    shapes=None,
) -> tuple[list[Removal], float | None]:
    """Prunes ``groups`` globally after the iterations already ``done`` (a resumed run); returns every
    removal and the original model's metric (None without a scorer)."""
    original = scorer.metric(analysis, groups[0], frozenset()) if scorer is not None else None
    removals = [r for batch in done for r in batch]
    by_id = {g.id: g for g in groups}
    removed = frozenset(int(by_id[r.group].channels[r.channel]) for r in removals)
    first = max((r.iteration for r in removals), default=-1) + 1
    for batch in global_iterations(analysis, groups, importance, config, removed=removed, scorer=scorer,
                                   budget=_budget(config, original, scorer), first=first, shapes=shapes):
        removals.extend(batch)
        on_iteration(batch)
    return removals, original
