"""Exact early stopping for one greedy step: the few candidates of least loss, found without
running every candidate on every sample.

Per-sample losses are never negative, so a candidate's loss summed over the samples it has
seen is a lower bound on its total. Samples are visited hardest first for the current
network (misclassified, then by smallest top-1 margin; for regression, largest error first),
where a removal's damage shows soonest. Best-first search: the candidate of least (bound,
index) goes on to the next chunk of samples; once that candidate has seen every sample, its
total is exact and no other candidate can end below it. Candidates at the same sample
position with the same bound share one batch.

With a tie-break key (classification), every candidate that may still share the least loss
is also run to the end, and among those that do, the least key wins (then the lowest index).

Across groups (global pruning), the candidates of every group share one search: each group
has its own evaluator, all of them on the same network, and the key becomes the growth of the
loss per unit of cost the removal saves, which a partial sum bounds from below just as well.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from onnxcar.importance.evaluator import ProbeEvaluator

CHUNK = 32  # samples per step: smaller chunks stop hopeless candidates sooner, larger ones batch better
TIE_DECIMALS = 6  # tie-break keys closer than this count as equal, and the lower index goes


@dataclass(frozen=True)
class Ranking:
    """Candidates' outcomes under a search that stopped once the least-loss ones were known."""

    current: float  # the metric of the network without any candidate removed
    metrics: np.ndarray  # each candidate's metric; a bound (never worse than the truth) where not exact
    exact: np.ndarray  # bool: the candidate saw every sample
    ties: np.ndarray | None = None  # the growth of the tie-break key where exact (NaN elsewhere); None: no key
    picks: tuple[int, ...] = ()  # the candidates found, least first


@dataclass(frozen=True)
class Pool:
    """Candidates that one evaluator scores: channel ``candidates`` under mask ``current``, and,
    in a search across groups, what removing each saves (``per``; None: rank by loss alone)."""

    evaluator: ProbeEvaluator
    current: np.ndarray
    candidates: np.ndarray
    per: np.ndarray | None = None


def per_unit(growth, scale: float, per):
    """The key of a removal under a budget: a score (``growth / scale``) per unit ``per`` saved when
    it is positive; a removal that costs nothing (score <= 0) keys below every harmful one, largest
    saving first, as ``(score - 1) * per``. Non-decreasing in ``growth``, so a bound keys as a bound.
    Written with one rounding where ``growth`` and ``scale * per`` are integers, so that equal ratios
    key equal."""
    growth = np.asarray(growth, dtype=np.float64)
    return np.where(growth > 0, growth / (scale * per), (growth - scale) * per / scale)


def tie_growth(values: np.ndarray, current: float) -> np.ndarray:
    """Each row's mean tie-break value minus the current network's, rounded to TIE_DECIMALS."""
    return np.round(values.mean(axis=-1) - current, TIE_DECIMALS)


def least_loss(
    evaluator: ProbeEvaluator, current: np.ndarray, candidates: np.ndarray, count: int, tie_break: str = "index",
    *, settle: bool | None = None,
) -> Ranking:
    """Finds the ``count`` candidates least in (total loss, tie-break key, index), exactly.

    ``tie_break`` is ``index`` (ties in loss go to the earlier candidate, as soon as it has
    seen every sample), or ``loss`` or ``margin`` (see ``Task.tie_values``; classification only).
    ``settle`` (default: with a key) runs every candidate that may share the least loss to the
    end, so that ties are known; with ``index`` their keys are all 0.
    """
    return least_across([Pool(evaluator, current, np.asarray(candidates))], count, tie_break, settle=settle)


def least_across(
    pools: list[Pool], count: int, tie_break: str = "index", *, settle: bool | None = None,
    take: Callable[[int], bool] | None = None,
) -> Ranking:
    """:func:`least_loss` over the candidates of several pools (groups), which share the network
    and so its sample order and loss; candidates are numbered pool after pool.

    With ``per``, the key is the score per unit saved (see :func:`per_unit`; the score is the growth
    of the mean loss): a bound on it, too, only grows as a candidate sees more samples. ``take`` is asked about
    each candidate found least; when it answers False, the candidate is passed over (it cannot
    be removed) and the search goes on to the next.
    """
    first = pools[0]
    task, samples, targets = first.evaluator.task, first.evaluator.count, first.evaluator.targets
    settle = (tie_break != "index" if settle is None else settle) and task.tie_key
    keyed = settle and tie_break != "index"
    base = first.evaluator.outputs(first.current, [-1])[0]
    order = task.hardest_first(base, targets)
    base_loss = float(task.losses(task.outcomes(base, targets)).sum())
    source = np.concatenate([np.full(len(p.candidates), i) for i, p in enumerate(pools)])
    local = np.concatenate([np.arange(len(p.candidates)) for p in pools])
    per = None if first.per is None else np.concatenate([p.per for p in pools]).astype(np.float64)
    total = len(source)
    outcomes = np.full((total, samples), np.nan)
    values = np.full((total, samples), 0.0 if not keyed else np.nan) if settle else None
    base_value = float(task.tie_values(base, targets, tie_break).mean()) if keyed else 0.0
    seen = np.zeros(total, dtype=np.int64)
    bound = np.zeros(total)
    key = bound.copy() if per is None else per_unit(bound - base_loss, samples, per)
    pending = np.ones(total, dtype=bool)  # not yet found to be among the least
    picks: list[int] = []
    while len(picks) < count and pending.any():
        while True:
            waiting = np.flatnonzero(pending)
            lead = waiting[np.argmin(key[waiting])]  # argmin keeps the earliest of equal keys
            level = waiting[key[waiting] == key[lead]]
            unsettled = level[seen[level] < samples] if settle else level[:0]
            if seen[lead] == samples and not len(unsettled):
                if settle:  # every candidate of the least key is known: the tie-break key decides
                    lead = level[np.lexsort((level, tie_growth(values[level], base_value)))[0]]
                pending[lead] = False
                break
            step = lead if seen[lead] < samples else unsettled[0]
            batch = waiting[(seen[waiting] == seen[step]) & (key[waiting] == key[step])
                            & (source[waiting] == source[step])]
            rows = order[seen[step] : seen[step] + CHUNK]
            pool = pools[source[step]]
            chosen = pool.candidates[local[batch]]
            if keyed:
                result, ties = pool.evaluator.outcomes_and_ties(pool.current, chosen, rows, tie_break=tie_break)
                values[batch[:, None], rows] = ties
            else:
                result = pool.evaluator.outcomes(pool.current, chosen, rows)
            outcomes[batch[:, None], rows] = result
            bound[batch] += task.losses(result).sum(axis=1)
            seen[batch] += len(rows)
            key[batch] = bound[batch] if per is None else per_unit(bound[batch] - base_loss, samples, per[batch])
        if take is None or take(int(lead)):
            picks.append(int(lead))
    exact = seen == samples
    metrics = task.metric_of_loss(bound, samples)
    metrics[exact] = outcomes[exact].mean(axis=1)
    ties = None
    if settle:
        ties = np.full(total, np.nan)
        ties[exact] = tie_growth(values[exact], base_value)
    return Ranking(float(task.outcomes(base, targets).mean()), metrics, exact, ties, tuple(picks))
