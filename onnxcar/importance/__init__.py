"""Importance criteria: score channels through a runner, never edit the graph."""

from onnxcar.errors import OnnxcarError
from onnxcar.importance.base import Importance
from onnxcar.importance.data import ActivationStatistic, DataScorer, ReductionIndex
from onnxcar.importance.weights import RandomScore, WeightNorm

DATA_FREE = ("l1", "l2", "random")
DATA_DRIVEN = ("car", "rar", "mean-act", "apoz")
CRITERIA = DATA_DRIVEN + DATA_FREE


def make_importance(name: str, scorer: DataScorer | None = None, seed: int = 0) -> Importance:
    """The criterion called ``name``; data-driven ones need a scorer over the pruning set."""
    if name == "l1":
        return WeightNorm(1)
    if name == "l2":
        return WeightNorm(2)
    if name == "random":
        return RandomScore(seed)
    if name not in DATA_DRIVEN:
        raise OnnxcarError(f"unknown criterion {name!r}; choose from {', '.join(CRITERIA)}")
    if scorer is None:
        raise OnnxcarError(f"--criterion {name} needs --data")
    if name in ("car", "rar"):
        if (name == "car") != scorer.task.higher_is_better:
            raise OnnxcarError(f"--criterion {name} is for {'classification' if name == 'car' else 'regression'}")
        return ReductionIndex(scorer)
    return ActivationStatistic(scorer, name)


__all__ = ["CRITERIA", "DATA_DRIVEN", "DATA_FREE", "DataScorer", "Importance", "make_importance"]
