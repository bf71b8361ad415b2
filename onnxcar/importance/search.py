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
"""

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
    task, samples = evaluator.task, evaluator.count
    settle = (tie_break != "index" if settle is None else settle) and task.higher_is_better
    keyed = settle and tie_break != "index"
    base = evaluator.outputs(current, [-1])[0]
    order = task.hardest_first(base, evaluator.targets)
    outcomes = np.full((len(candidates), samples), np.nan)
    values = np.full((len(candidates), samples), 0.0 if not keyed else np.nan) if settle else None
    base_value = float(task.tie_values(base, evaluator.targets, tie_break).mean()) if keyed else 0.0
    seen = np.zeros(len(candidates), dtype=np.int64)
    bound = np.zeros(len(candidates))
    pending = np.ones(len(candidates), dtype=bool)  # not yet found to be among the least
    for _ in range(min(count, len(candidates))):
        while True:
            waiting = np.flatnonzero(pending)
            lead = waiting[np.argmin(bound[waiting])]  # argmin keeps the earliest of equal bounds
            level = waiting[bound[waiting] == bound[lead]]
            unsettled = level[seen[level] < samples] if settle else level[:0]
            if seen[lead] == samples and not len(unsettled):
                if settle:  # every candidate of the least loss is known: the key decides
                    lead = level[np.lexsort((level, tie_growth(values[level], base_value)))[0]]
                pending[lead] = False
                break
            step = lead if seen[lead] < samples else unsettled[0]
            batch = waiting[(seen[waiting] == seen[step]) & (bound[waiting] == bound[step])]
            rows = order[seen[step] : seen[step] + CHUNK]
            if keyed:
                result, ties = evaluator.outcomes_and_ties(current, candidates[batch], rows, tie_break=tie_break)
                values[batch[:, None], rows] = ties
            else:
                result = evaluator.outcomes(current, candidates[batch], rows)
            outcomes[batch[:, None], rows] = result
            bound[batch] += task.losses(result).sum(axis=1)
            seen[batch] += len(rows)
    exact = seen == samples
    metrics = task.metric_of_loss(bound, samples)
    metrics[exact] = outcomes[exact].mean(axis=1)
    ties = None
    if settle:
        ties = np.full(len(candidates), np.nan)
        ties[exact] = tie_growth(values[exact], base_value)
    return Ranking(float(task.outcomes(base, evaluator.targets).mean()), metrics, exact, ties)
