"""The greedy pruning loop (Abbasi-Asl and Yu 2017): score, remove the least important, repeat."""

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from onnxcar.errors import OnnxcarError, UnsupportedOpError
from onnxcar.graph.analysis import Analysis, Group
from onnxcar.graph.feasibility import Survivors
from onnxcar.graph.quantized import integer_ops, integer_ops_reason
from onnxcar.graph.shapes import InputShapes
from onnxcar.importance.base import BoundedImportance, Importance
from onnxcar.importance.data import DataScorer
from onnxcar.pruning.config import PruneConfig
from onnxcar.pruning.targets import MaxDrop
from onnxcar.surgery import Tolerance, make_plan, mask_channels, remove_channels, verify_equal

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Removal:
    """One channel removed by the greedy loop, with the score that chose it.

    ``metric`` is the pruning-set accuracy (or MSE) after the whole ``iteration`` that removed
    it (iterations count from 0 within a group; one iteration removes ``per_iter`` channels).
    """

    group: int
    layer: str
    channel: int  # index in the original model's numbering of the group
    score: float
    metric: float | None = None
    iteration: int = 0
    tie: float | None = None  # the growth of the tie-break key, where the criterion breaks ties
    tied: bool | None = None  # another candidate had the same score, so the tie-break chose; None: unknown
    saved: int | None = None  # global pruning under a budget: the MACs or parameters the removal saved

    def to_dict(self) -> dict:
        return {"group": self.group, "layer": self.layer, "channel": self.channel, "score": self.score,
                "metric": self.metric, "iteration": self.iteration, "tie": self.tie, "tied": self.tied,
                "saved": self.saved}


def select_groups(analysis: Analysis, layers: tuple[str, ...]) -> list[Group]:
    """The groups named by ``layers`` in that order, or every prunable group when none are named."""
    if not layers:
        groups = [g for g in analysis.groups if g.prunable]
        quantized = integer_ops(analysis.model)
        if not groups:
            raise UnsupportedOpError(integer_ops_reason(quantized) if quantized
                                     else "the model has no prunable channel group (see inspect)")
        if quantized:
            log.warning("%s (the layers they compute stay as they are)", integer_ops_reason(quantized))
        return groups
    groups = list(dict.fromkeys(analysis.group(name) for name in layers))
    for group in groups:
        if not group.prunable:
            raise UnsupportedOpError(f"layer {analysis.layer_name(group.producers[0])} cannot be pruned: {group.reasons[0]}")
    return groups


@dataclass(frozen=True)
class Budget:
    """Stops a group's pruning once the metric would pass ``limit`` (None: no limit)."""

    limit: float | None
    higher_is_better: bool = True

    def exceeded(self, metric: float | None) -> bool:
        if self.limit is None or metric is None:
            return False
        return metric < self.limit if self.higher_is_better else metric > self.limit


def iterations(
    analysis: Analysis,
    group: Group,
    importance: Importance,
    removals: int,
    *,
    per_iter: int = 1,
    removed: frozenset[int] = frozenset(),
    scorer: DataScorer | None = None,
    budget: Budget = Budget(None),
    first: int = 0,
) -> Iterator[list[Removal]]:
    """Removes up to ``removals`` channels of ``group``, the ``per_iter`` lowest-scored each iteration.

    An importance whose scores depend on earlier removals (CAR, RAR) is rescored after every
    iteration on the network pruned so far, and asked only for its lowest scores when it can
    find them without computing the rest (``importance.search``); any other ranks the group
    once, and each iteration takes the next channels of that ranking. Ties go to the lowest
    channel index. With a scorer, each iteration records the metric it leaves, and the loop
    stops before an iteration that would exceed the budget. Iterations are numbered from ``first``.
    """
    name = analysis.layer_name(group.producers[0])
    rescore = getattr(importance, "depends_on_removals", True)
    ranking = None if rescore else _Ranking(analysis, group, importance, removed)
    removed = set(removed)
    done, iteration = 0, first
    while done < removals:
        wanted = min(per_iter, removals - done)
        if rescore:
            keys, exact, picks = _rescored_picks(importance, analysis, group, frozenset(removed), wanted)
        else:
            keys, exact, picks = ranking.keys, ranking.exact, ranking.take(wanted)
        if not picks:
            return  # every remaining channel is the last one of some tensor
        gone = group.channel_ids(picks)
        metric = scorer.metric(analysis, group, frozenset(removed | gone)) if scorer is not None else None
        if budget.exceeded(metric):
            return
        tied = _tied(group, keys, exact, removed, picks)
        removed |= gone
        done += len(picks)
        yield [Removal(group.id, name, index, float(keys[index, 0]), metric, iteration,
                       float(keys[index, 1]) if keys.shape[1] > 1 else None, was_tied)
               for index, was_tied in zip(picks, tied)]
        iteration += 1


def _keys(scores) -> np.ndarray:
    """Scores as a [channels, keys] array: the score, then any tie-break keys."""
    scores = np.asarray(scores, dtype=np.float64)
    return scores[:, None] if scores.ndim == 1 else scores


def _order(keys: np.ndarray) -> np.ndarray:
    """Channels from the lowest keys (compared in turn) to the highest; equal keys by index."""
    return np.lexsort((np.arange(len(keys)), *keys.T[::-1]))


def _tied(group: Group, keys: np.ndarray, exact: np.ndarray, removed: set[int], picks: list[int]) -> list:
    """For each pick, whether a channel still in the running had the same score, so that the
    tie-break chose; None for criteria without a tie-break key."""
    if keys.shape[1] == 1:
        return [None] * len(picks)
    running = exact & ~np.isin(group.channels, list(removed))
    tied = []
    for index in picks:
        running[index] = False
        tied.append(bool(np.any(running & (keys[:, 0] == keys[index, 0]))))
    return tied


class _Ranking:
    """One ranking of a group whose scores do not depend on removals, taken from the lowest on."""

    def __init__(self, analysis: Analysis, group: Group, importance: Importance, removed: frozenset[int]):
        self.keys = _keys(importance(analysis, group, removed))
        self.exact = np.ones(group.size, dtype=bool)
        self._order = iter(_order(self.keys).tolist())
        self._survivors = Survivors(analysis, group, removed)

    def take(self, count: int) -> list[int]:
        """The next ``count`` channels of the ranking that leave every tensor a channel (fewer at its end).

        A channel that cannot go now never can, since tensors only lose channels.
        """
        picks = []
        for index in self._order:
            if self._survivors.take(index):
                picks.append(index)
                if len(picks) == count:
                    break
        return picks


def greedy(analysis: Analysis, group: Group, importance: Importance, removals: int, **options) -> Iterator[Removal]:
    """The removals of :func:`iterations`, one at a time."""
    for batch in iterations(analysis, group, importance, removals, **options):
        yield from batch


def _rescored_picks(
    importance: Importance, analysis: Analysis, group: Group, removed: frozenset[int], wanted: int
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Score keys on the current network, which of them are exact, and the ``wanted`` picks they give."""
    if isinstance(importance, BoundedImportance):
        scores, exact = importance.lowest(analysis, group, removed, wanted)
        keys = _keys(scores)
        picks = _picks(Survivors(analysis, group, removed), keys, exact, wanted)
        if picks is not None:
            return keys, np.asarray(exact, dtype=bool), picks
        # an infeasible pick reached a bounded score: rank every channel exactly
    keys, exact = _keys(importance(analysis, group, removed)), np.ones(group.size, dtype=bool)
    return keys, exact, _picks(Survivors(analysis, group, removed), keys, exact, wanted)


def _picks(survivors: Survivors, keys: np.ndarray, exact: np.ndarray, count: int) -> list[int] | None:
    """The ``count`` lowest-keyed channels (ties to the lowest index) that leave every tensor a
    channel; None when the choice would rest on an inexact score."""
    picks: list[int] = []
    for index in _order(keys).tolist():
        if len(picks) == count:
            break
        if not survivors.can_take(index):
            continue
        if not exact[index]:
            return None
        survivors.take(index)
        picks.append(index)
    return picks


def prune_groups(
    analysis: Analysis,
    groups: list[Group],
    config: PruneConfig,
    importance: Importance,
    *,
    scorer: DataScorer | None = None,
    done: list[list[Removal]] = (),
    on_iteration: Callable[[list[Removal]], None] = lambda removals: None,
) -> tuple[list[Removal], float | None]:
    """Prunes ``groups`` one after another, after the iterations already ``done`` (a resumed run);
    returns every removal and the original model's metric (None without a scorer)."""
    original = scorer.metric(analysis, groups[0], frozenset()) if scorer is not None else None
    budget = _budget(config, original, scorer)
    removals = [r for batch in done for r in batch]
    by_id = {g.id: g for g in groups}
    removed = {int(by_id[r.group].channels[r.channel]) for r in removals}
    position = {g.id: i for i, g in enumerate(groups)}
    resumed_at = max((position[r.group] for r in removals), default=0)
    for group in groups[resumed_at:]:  # groups before the last one journaled were finished
        earlier = [r for r in removals if r.group == group.id]
        wanted = config.target.removals(group.size) - len(earlier)
        first = max((r.iteration for r in earlier), default=-1) + 1
        for batch in iterations(analysis, group, importance, wanted, per_iter=config.per_iter,
                                removed=frozenset(removed), scorer=scorer, budget=budget, first=first):
            removals.extend(batch)
            removed.update(int(group.channels[r.channel]) for r in batch)
            on_iteration(batch)
    return removals, original


def _budget(config: PruneConfig, original: float | None, scorer: DataScorer | None) -> Budget:
    if not isinstance(config.target, MaxDrop):
        return Budget(None)
    if scorer is None:
        raise OnnxcarError("a max-drop target needs data to measure accuracy", arguments=("max_drop", "data"))
    higher = scorer.task.higher_is_better
    return Budget(config.target.limit(original, higher), higher)


@dataclass(frozen=True)
class Surgery:
    """The physically pruned model, the verification's worst error, and the seconds each took."""

    model: onnx.ModelProto
    max_verify_error: float | None
    surgery_s: float
    verify_s: float


def remove_and_verify(analysis: Analysis, removed: set[int], verify: bool, *, input_shapes: InputShapes | None = None,
                      samples: Mapping[str, np.ndarray] | None = None, tolerance: Tolerance = Tolerance()) -> Surgery:
    """Removes the channels ``removed``; with ``verify``, checks the result against the masked model
    (at ``input_shapes``, and on ``samples`` of real data; see :func:`~onnxcar.surgery.verify_equal`)."""
    plan = make_plan(analysis, removed)
    start = time.perf_counter()
    pruned = remove_channels(plan)
    surgery = time.perf_counter() - start
    if not verify:
        return Surgery(pruned, None, surgery, 0.0)
    start = time.perf_counter()
    result = verify_equal(mask_channels(plan), pruned, input_shapes=input_shapes, samples=samples, tolerance=tolerance)
    return Surgery(pruned, result.max_abs_error, surgery, time.perf_counter() - start)
