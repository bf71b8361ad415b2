"""Importance criteria: score channels through a runner, never edit the graph."""

from onnxcar.importance.base import BoundedImportance, Importance
from onnxcar.importance.data import DataScorer
from onnxcar.importance.registry import CRITERIA, Criterion, CriterionInputs, make_importance, register_criterion

__all__ = [
    "BoundedImportance", "CRITERIA", "Criterion", "CriterionInputs", "DataScorer", "Importance", "make_importance",
    "register_criterion",
]
