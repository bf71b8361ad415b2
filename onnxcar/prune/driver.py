"""The greedy pruning loop (Abbasi-Asl and Yu 2017) and the run around it."""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import onnx

from onnxcar.errors import OnnxcarError
from onnxcar.graph.analysis import Analysis, Group
from onnxcar.graph.cost import Cost, plan_cost
from onnxcar.importance.base import BoundedImportance, Importance
from onnxcar.importance.data import DataScorer
from onnxcar.prune.config import PruneConfig
from onnxcar.prune.journal import Journal
from onnxcar.surgery import make_plan, mask_channels, remove_channels, verify_equal
from onnxcar.surgery.plan import Plan


@dataclass(frozen=True)
class Removal:
    """One channel removed by the greedy loop, with the score that chose it."""

    group: int
    layer: str
    channel: int  # index in the original model's numbering of the group
    score: float
    metric: float | None = None  # pruning-set accuracy (or MSE) after this removal

    def to_dict(self) -> dict:
        return {"group": self.group, "layer": self.layer, "channel": self.channel, "score": self.score, "metric": self.metric}


@dataclass
class PruneResult:
    """A pruned model and what it took."""

    model: onnx.ModelProto
    removals: list[Removal]
    before: Cost
    after: Cost
    original_metric: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    max_verify_error: float | None = None

    def summary(self) -> dict:
        curves: dict[str, list] = {}
        metric = self.original_metric
        for removal in self.removals if metric is not None else ():  # curves need data
            curve = curves.setdefault(removal.layer, [[0, metric]])
            curve.append([len(curve), removal.metric])
            metric = removal.metric
        return {
            "removed": [r.to_dict() for r in self.removals],
            "original_metric": self.original_metric,
            "final_metric": self.removals[-1].metric if self.removals else self.original_metric,
            "curves": curves,
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "verify_max_abs_error": self.max_verify_error,
        }


def select_groups(analysis: Analysis, layers: tuple[str, ...]) -> list[Group]:
    """The groups named by ``layers`` in that order, or every prunable group when none are named."""
    if not layers:
        groups = [g for g in analysis.groups if g.prunable]
        if not groups:
            raise OnnxcarError("the model has no prunable channel group (see `onnxcar inspect`)")
        return groups
    groups = list(dict.fromkeys(analysis.group(name) for name in layers))
    for group in groups:
        if not group.prunable:
            raise OnnxcarError(f"layer {analysis.layer_name(group.producers[0])} cannot be pruned: {group.reasons[0]}")
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


def greedy(
    analysis: Analysis,
    group: Group,
    importance: Importance,
    removals: int,
    *,
    per_iter: int = 1,
    removed: frozenset[int] = frozenset(),
    scorer: DataScorer | None = None,
    budget: Budget = Budget(None),
) -> Iterator[Removal]:
    """Removes up to ``removals`` channels of ``group``, the ``per_iter`` lowest-scored each iteration.

    Scores are recomputed after every iteration on the network pruned so far; ties go to
    the lowest channel index. An importance that can find its lowest scores without computing
    the others (CAR and RAR: see ``importance.search``) is asked for just those. With a scorer, each removal records the metric it leaves, and
    the loop stops before a removal that would exceed the budget.
    """
    done = 0
    name = analysis.layer_name(group.producers[0])
    while done < removals:
        wanted = min(per_iter, removals - done)
        scores, exact = _lowest_scores(importance, analysis, group, removed, wanted)
        picks = _pick(analysis, group, scores, exact, removed, wanted)
        if picks is None:  # infeasible picks reached a bounded score: rank every channel exactly
            scores = np.asarray(importance(analysis, group, removed), dtype=np.float64)
            picks = _pick(analysis, group, scores, np.ones(group.size, dtype=bool), removed, wanted)
        if not picks:
            return  # every remaining channel is the last one of some tensor
        trial = removed | group.channel_ids(picks)
        metric = scorer.metric(analysis, group, trial) if scorer is not None else None
        if budget.exceeded(metric):
            return
        removed = trial
        for index in picks:
            done += 1
            yield Removal(group.id, name, index, float(scores[index]), metric)


def _lowest_scores(
    importance: Importance, analysis: Analysis, group: Group, removed: frozenset[int], count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Scores, exact at least for the ``count`` lowest, and which ones are exact."""
    if isinstance(importance, BoundedImportance):
        scores, exact = importance.lowest(analysis, group, removed, count)
    else:
        scores, exact = importance(analysis, group, removed), np.ones(group.size, dtype=bool)
    return np.asarray(scores, dtype=np.float64), exact


def _pick(
    analysis: Analysis, group: Group, scores: np.ndarray, exact: np.ndarray, removed: frozenset[int], count: int
) -> list[int] | None:
    """The ``count`` lowest-scored live channels (ties to the lowest index) that leave every tensor
    a channel; None when the choice would rest on an inexact score."""
    picks, trial = [], removed
    for index in np.lexsort((np.arange(group.size), scores)):
        if len(picks) == count:
            break
        if int(group.channels[index]) in removed:
            continue
        if not exact[index]:
            return None
        if analysis.feasible(trial | group.channel_ids([index])):
            picks.append(int(index))
            trial = trial | group.channel_ids([index])
    return picks


def prune(
    analysis: Analysis,
    config: PruneConfig,
    importance: Importance,
    *,
    scorer: DataScorer | None = None,
    journal: Journal | None = None,
    on_removal: Callable[[Removal], None] = lambda removal: None,
) -> PruneResult:
    """Prunes the selected groups one after another, then removes the channels physically."""
    groups = check_run(analysis, config, scorer)
    by_id = {g.id: g for g in groups}
    timings: dict[str, float] = {}
    start = time.perf_counter()
    original = scorer.metric(analysis, groups[0], frozenset()) if scorer is not None else None
    budget = _budget(config, original, scorer)
    removals = [_replayed(entry, by_id) for entry in (journal.entries if journal else [])]
    removed = frozenset(int(by_id[r.group].channels[r.channel]) for r in removals)
    for removal in removals:
        on_removal(removal)
    position = {g.id: i for i, g in enumerate(groups)}
    resumed_at = max((position[r.group] for r in removals), default=0)
    for group in groups[resumed_at:]:  # groups before the journal's last one were finished
        wanted = config.target.removals(group.size) - sum(r.group == group.id for r in removals)
        for removal in greedy(
            analysis, group, importance, wanted, per_iter=config.per_iter, removed=removed, scorer=scorer, budget=budget
        ):
            removals.append(removal)
            removed = removed | {int(group.channels[removal.channel])}
            if journal is not None:
                journal.record(removal.to_dict())
            on_removal(removal)
    timings["scoring"] = time.perf_counter() - start
    if scorer is not None:
        scorer.close()
    plan = make_plan(analysis, removed)
    pruned, error, timings["surgery"], timings["verify"] = _remove_and_verify(plan, config.verify)
    before, after = plan_cost(Plan(analysis, frozenset())), plan_cost(plan)
    return PruneResult(pruned, removals, before, after, original, timings, error)


def _replayed(entry: dict, groups: dict[int, Group]) -> Removal:
    if entry.get("group") not in groups:
        raise OnnxcarError("the journal names a layer this run does not prune; delete it to start afresh")
    return Removal(entry["group"], entry["layer"], entry["channel"], entry["score"], entry["metric"])


def check_run(analysis: Analysis, config: PruneConfig, scorer: DataScorer | None) -> list[Group]:
    """Refuses a run that cannot start; returns the groups it prunes, in order."""
    if config.target.max_drop is not None and scorer is None:
        raise OnnxcarError("--max-drop needs --data to measure accuracy")
    return select_groups(analysis, config.layers)


def _budget(config: PruneConfig, original: float | None, scorer: DataScorer | None) -> Budget:
    drop = config.target.max_drop
    if drop is None:
        return Budget(None)
    if scorer.task.higher_is_better:
        return Budget(original - drop / 100.0, True)
    return Budget(original + drop, False)


def _remove_and_verify(plan: Plan, verify: bool) -> tuple[onnx.ModelProto, float | None, float, float]:
    start = time.perf_counter()
    pruned = remove_channels(plan)
    surgery = time.perf_counter() - start
    if not verify:
        return pruned, None, surgery, 0.0
    start = time.perf_counter()
    result = verify_equal(mask_channels(plan), pruned)
    return pruned, result.max_abs_error, surgery, time.perf_counter() - start
