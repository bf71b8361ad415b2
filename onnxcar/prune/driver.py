"""The greedy pruning loop (Abbasi-Asl and Yu 2017, Algorithm 1) and the run around it."""

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import onnx

from onnxcar.errors import OnnxcarError
from onnxcar.graph.analysis import Analysis, Group, layer_name
from onnxcar.graph.cost import Cost, plan_cost
from onnxcar.importance.base import Importance
from onnxcar.prune.config import PruneConfig
from onnxcar.surgery import make_plan, mask_channels, remove_channels, verify_equal
from onnxcar.surgery.plan import Plan


@dataclass(frozen=True)
class Removal:
    """One channel removed by the greedy loop, with the score that chose it."""

    group: int
    layer: str
    channel: int  # index in the original model's numbering of the group
    score: float

    def to_dict(self) -> dict:
        return {"group": self.group, "layer": self.layer, "channel": self.channel, "score": self.score}


@dataclass
class PruneResult:
    """A pruned model and what it took."""

    model: onnx.ModelProto
    removals: list[Removal]
    before: Cost
    after: Cost
    timings: dict[str, float] = field(default_factory=dict)
    max_verify_error: float | None = None

    def summary(self) -> dict:
        return {
            "removed": [r.to_dict() for r in self.removals],
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "verify_max_abs_error": self.max_verify_error,
        }


def select_groups(analysis: Analysis, layers: tuple[str, ...]) -> list[Group]:
    """The groups named by ``layers``, or every prunable group when none are named."""
    if not layers:
        groups = [g for g in analysis.groups if g.prunable]
        if not groups:
            raise OnnxcarError("the model has no prunable channel group (see `onnxcar inspect`)")
        return groups
    groups = list(dict.fromkeys(analysis.group(name) for name in layers))
    for group in groups:
        if not group.prunable:
            raise OnnxcarError(f"layer {layer_name(group.producers[0])} cannot be pruned: {group.reasons[0]}")
    return groups


def greedy(
    analysis: Analysis,
    group: Group,
    importance: Importance,
    removals: int,
    *,
    per_iter: int = 1,
    removed: frozenset[int] = frozenset(),
) -> Iterator[Removal]:
    """Removes ``removals`` channels of ``group``, the ``per_iter`` lowest-scored each iteration.

    Scores are recomputed after every iteration on the network pruned so far; ties go to
    the lowest channel index.
    """
    done = 0
    name = layer_name(group.producers[0])
    while done < removals:
        scores = np.asarray(importance(analysis, group, removed), dtype=np.float64)
        alive = np.array([int(c) not in removed for c in group.channels])
        order = [int(i) for i in np.lexsort((np.arange(group.size), scores)) if alive[i]]
        for index in order[: min(per_iter, removals - done)]:
            removed = removed | {int(group.channels[index])}
            done += 1
            yield Removal(group.id, name, index, float(scores[index]))


def prune(analysis: Analysis, config: PruneConfig, importance: Importance) -> PruneResult:
    """Prunes the selected groups one after another, then removes the channels physically."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    removed: frozenset[int] = frozenset()
    removals: list[Removal] = []
    for group in select_groups(analysis, config.layers):
        for removal in greedy(
            analysis, group, importance, config.target.removals(group.size), per_iter=config.per_iter, removed=removed
        ):
            removals.append(removal)
            removed = removed | {int(group.channels[removal.channel])}
    timings["scoring"] = time.perf_counter() - start
    plan = make_plan(analysis, removed)
    pruned, error, timings["surgery"], timings["verify"] = _remove_and_verify(plan, config.verify)
    return PruneResult(pruned, removals, plan_cost(Plan(analysis, frozenset())), plan_cost(plan), timings, error)


def _remove_and_verify(plan: Plan, verify: bool) -> tuple[onnx.ModelProto, float | None, float, float]:
    start = time.perf_counter()
    pruned = remove_channels(plan)
    surgery = time.perf_counter() - start
    if not verify:
        return pruned, None, surgery, 0.0
    start = time.perf_counter()
    result = verify_equal(mask_channels(plan), pruned)
    return pruned, result.max_abs_error, surgery, time.perf_counter() - start
