"""Exact early stopping for one greedy step: the few candidates of least loss, found without
running every candidate on every sample.

Per-sample losses are never negative, so a candidate's loss summed over the samples it has
seen is a lower bound on its total. Samples are visited hardest first for the current
network (misclassified, then by smallest top-1 margin; for regression, largest error first),
where a removal's damage shows soonest. Best-first search: the candidate of least (bound, index) goes on to the next chunk
of samples; once that candidate has seen every sample, its total is exact and no other
candidate can end below it. Candidates at the same sample position with the same bound share
one batch.
"""

from dataclasses import dataclass

import numpy as np

from onnxcar.importance.evaluator import ProbeEvaluator

CHUNK = 32  # samples per step: smaller chunks stop hopeless candidates sooner, larger ones batch better


@dataclass(frozen=True)
class Ranking:
    """Candidates' outcomes under a search that stopped once the least-loss ones were known."""

    current: float  # the metric of the network without any candidate removed
    metrics: np.ndarray  # each candidate's metric; a bound (never worse than the truth) where not exact
    exact: np.ndarray  # bool: the candidate saw every sample


def least_loss(evaluator: ProbeEvaluator, current: np.ndarray, candidates: np.ndarray, count: int) -> Ranking:
    """Finds the ``count`` candidates of least total loss (ties to the earlier candidate), exactly."""
    task, samples = evaluator.task, evaluator.count
    base = evaluator.outputs(current, [-1])[0]
    order = task.hardest_first(base, evaluator.targets)
    outcomes = np.full((len(candidates), samples), np.nan)
    seen = np.zeros(len(candidates), dtype=np.int64)
    bound = np.zeros(len(candidates))
    pending = np.ones(len(candidates), dtype=bool)  # not yet found to be among the least
    for _ in range(min(count, len(candidates))):
        while True:
            waiting = np.flatnonzero(pending)
            lead = waiting[np.argmin(bound[waiting])]  # argmin keeps the earliest of equal bounds
            if seen[lead] == samples:
                pending[lead] = False
                break
            batch = waiting[(seen[waiting] == seen[lead]) & (bound[waiting] == bound[lead])]
            rows = order[seen[lead] : seen[lead] + CHUNK]
            values = evaluator.outcomes(current, candidates[batch], rows)
            outcomes[batch[:, None], rows] = values
            bound[batch] += task.losses(values).sum(axis=1)
            seen[batch] += len(rows)
    exact = seen == samples
    metrics = task.metric_of_loss(bound, samples)
    metrics[exact] = outcomes[exact].mean(axis=1)
    return Ranking(float(task.outcomes(base, evaluator.targets).mean()), metrics, exact)
