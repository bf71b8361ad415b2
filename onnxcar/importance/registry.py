"""The criterion registry: every way of ranking filters, by name.

A criterion is a factory that builds an :class:`~onnxcar.importance.base.Importance` from
the pruning-set scorer (None for data-free criteria) and a seed. Register one with::

    @register_criterion("taylor", needs_data=True, help="first-order Taylor expansion")
    def _taylor(inputs: CriterionInputs) -> Importance:
        return Taylor(inputs.scorer)
"""

from collections.abc import Callable
from dataclasses import dataclass

from onnxcar.errors import OnnxcarError
from onnxcar.importance.base import Importance
from onnxcar.importance.evaluator import TIE_BREAKS
from onnxcar.registry import Registry
from onnxcar.tasks import Task


@dataclass(frozen=True)
class CriterionInputs:
    """What a criterion factory may use: the pruning-set scorer (None without data), a seed, and
    how to order channels of equal score (``loss``, ``margin`` or ``index``; CAR honours it)."""

    scorer: object | None  # onnxcar.importance.data.DataScorer
    seed: int = 0
    tie_break: str = "index"


@dataclass(frozen=True)
class Criterion:
    """A registered criterion."""

    name: str
    make: Callable[[CriterionInputs], Importance]
    needs_data: bool = False
    task: str | None = None  # "classification": tasks measured by an accuracy; "regression": by an error; None: any
    help: str = ""


def _builtins() -> None:
    from onnxcar.importance import data, weights  # noqa: F401  (their decorators register)


CRITERIA: Registry[Criterion] = Registry("criterion", _builtins)


def register_criterion(name: str, *, needs_data: bool = False, task: str | None = None, help: str = ""):
    """Registers the decorated factory as the criterion ``name``."""

    def decorate(make: Callable[[CriterionInputs], Importance]):
        CRITERIA.add(name, Criterion(name, make, needs_data, task, help))
        return make

    return decorate


def make_importance(name: str, scorer=None, seed: int = 0, tie_break: str = "index") -> Importance:
    """The criterion ``name`` built over ``scorer`` (the pruning-set scorer; None without data)."""
    if tie_break not in TIE_BREAKS:
        raise OnnxcarError(f"tie_break must be one of {', '.join(TIE_BREAKS)}, got {tie_break!r}",
                           arguments=("tie_break",))
    criterion = CRITERIA.get(name)
    if criterion.needs_data and scorer is None:
        raise OnnxcarError(f"criterion {name} needs data to score filters", arguments=("criterion", "data"))
    if scorer is not None and criterion.task is not None and Task(criterion.task).higher_is_better != \
            scorer.task.higher_is_better:
        measure = "an accuracy" if scorer.task.higher_is_better else "an error"
        raise OnnxcarError(f"criterion {name} is for {criterion.task}; the {scorer.task.kind} task is measured by "
                           f"{measure}", arguments=("criterion", "task"))
    return criterion.make(CriterionInputs(scorer, seed, tie_break))
