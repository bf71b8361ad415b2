"""Importance criteria: score channels through a runner, never edit the graph."""

from onnxcar.errors import OnnxcarError
from onnxcar.importance.base import Importance
from onnxcar.importance.weights import RandomScore, WeightNorm

DATA_FREE = ("l1", "l2", "random")


def data_free_importance(name: str, seed: int = 0) -> Importance:
    """The data-free criterion called ``name``."""
    if name == "l1":
        return WeightNorm(1)
    if name == "l2":
        return WeightNorm(2)
    if name == "random":
        return RandomScore(seed)
    raise OnnxcarError(f"unknown data-free criterion {name!r}; choose from {', '.join(DATA_FREE)}")


__all__ = ["DATA_FREE", "Importance", "RandomScore", "WeightNorm", "data_free_importance"]
