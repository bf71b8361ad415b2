"""Tasks: how a model's outputs are read, and what accuracy (or error) and agreement mean.

CAR, RAR, the tie-break and ``eval`` ask the bound :class:`Task` and never look at output
shapes themselves. A task is a :class:`TaskRule` in the ``TASKS`` registry; a plugin adds one
with::

    @register_task("keypoints")
    class Keypoints(TaskRule):
        metric = "pck"
        def outcomes(self, view, targets): ...

Built in: ``classification`` (top-1), ``regression`` (squared error over all outputs),
``fidelity`` (relative squared error of every output against the original model's),
``segmentation`` (mean IoU of per-pixel argmax, or of the map thresholded at 0.5 for one
channel), ``ctc`` (exact match of the greedy CTC decode, character error rate for ties),
``detection`` (F1 at IoU 0.5 of a YOLO-style head's boxes against the original's).
"""

from dataclasses import dataclass

import numpy as np

from onnxcar.errors import DataError
from onnxcar.registry import Registry


class TaskRule:
    """A task's reading of the outputs. ``view`` gives one batch-first array per call; the rest work on it.

    ``higher_is_better``: the outcome is an accuracy (CAR) rather than an error (RAR).
    ``agreement_only``: targets always come from the original model's outputs, never from labels.
    ``tie_key``: ``tie_values`` gives a continuous key that orders candidates of equal metric.
    """

    name = ""
    help = ""  # one line for --help
    metric = "accuracy"
    higher_is_better = True
    agreement_only = True
    tie_key = False

    def view(self, outputs: list[np.ndarray], axes: tuple[int, ...], sizes: tuple[int, ...]) -> np.ndarray:
        """The array the task reads: by default the first output, batch axis first."""
        return np.moveaxis(outputs[0], axes[0] if axes else 0, 0)

    def check(self, shapes: list[tuple[int, ...]]) -> None:
        """Raises DataError when the task cannot read outputs of these shapes (one item's, batch axis first)."""

    def targets(self, view: np.ndarray) -> np.ndarray:
        """Agreement targets: what the original model's ``view`` says each sample is."""
        return view

    def outcomes(self, view: np.ndarray, targets: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError

    def tie_values(self, view: np.ndarray, targets: np.ndarray, tie_break: str) -> np.ndarray:
        """Per-sample tie-break values, lower is better (only where ``tie_key``)."""
        raise NotImplementedError

    def hardest_first(self, view: np.ndarray, targets: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
        """Sample order, most likely to be lost first: by outcome."""
        outcomes = self.outcomes(view, targets, sizes)
        return np.argsort(outcomes if self.higher_is_better else -outcomes, kind="stable")


def _builtins() -> None:
    from onnxcar.tasks import classification, ctc, dense, detection, outputs  # noqa: F401  (they register)


TASKS: Registry[TaskRule] = Registry("task", _builtins)


def register_task(name: str):
    """Registers the decorated :class:`TaskRule` subclass as the task ``name``."""

    def decorate(cls: type[TaskRule]) -> type[TaskRule]:
        rule = cls()
        rule.name = name
        TASKS.add(name, rule)
        return cls

    return decorate


@dataclass(frozen=True)
class Task:
    """A task by name, bound to a model's outputs: ``axes`` (each output's batch axis) and ``sizes`` (each
    output's values per sample), as :func:`bind_task` finds them; unbound, the batch is axis 0 of output 0."""

    kind: str = "classification"
    axes: tuple[int, ...] = ()
    sizes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        TASKS.get(self.kind)  # refuses an unknown name, listing the known ones

    @property
    def rule(self) -> TaskRule:
        return TASKS.get(self.kind)

    @property
    def higher_is_better(self) -> bool:
        return self.rule.higher_is_better

    @property
    def metric_name(self) -> str:
        return self.rule.metric

    @property
    def tie_key(self) -> bool:
        return self.rule.tie_key

    def view(self, outputs: list[np.ndarray]) -> np.ndarray:
        """What the task reads of a model's ``outputs`` (all of them, in graph order)."""
        return self.rule.view(outputs, self.axes, self.sizes)

    def outcomes(self, view: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Per-sample outcome: an accuracy in [0, 1], or an error (never negative)."""
        return self.rule.outcomes(view, targets, self.sizes)

    def losses(self, outcomes: np.ndarray) -> np.ndarray:
        """Per-sample losses, never negative: 1 - accuracy, or the error."""
        return 1.0 - outcomes if self.higher_is_better else outcomes

    def metric_of_loss(self, total: np.ndarray, samples: int) -> np.ndarray:
        """The metric from a summed loss over ``samples``."""
        return (samples - total) / samples if self.higher_is_better else total / samples

    def hardest_first(self, view: np.ndarray, targets: np.ndarray) -> np.ndarray:
        return self.rule.hardest_first(view, targets, self.sizes)

    def tie_values(self, view: np.ndarray, targets: np.ndarray, tie_break: str) -> np.ndarray:
        return self.rule.tie_values(view, targets, tie_break)


def bind_task(task: Task, one: list[np.ndarray], two: list[np.ndarray] | None) -> Task:
    """``task`` bound to the outputs of one item (``one``) and of two (``two``; None where the model
    takes one item at a time, or the data holds one): each output's batch axis is the one that doubles
    (axis 0 without ``two``). Raises DataError where the task cannot read the outputs."""
    axes = []
    for index, (a, b) in enumerate(zip(one, two if two is not None else one)):
        grown = [axis for axis, (m, n) in enumerate(zip(a.shape, b.shape)) if n == 2 * m and m == 1]
        if two is not None and len(grown) != 1:
            raise DataError(f"output {index} of the model ({a.shape} for one item, {b.shape} for two) has no one "
                            f"batch axis for the {task.kind} task to read", arguments=("task",))
        axes.append(grown[0] if two is not None else 0)
    bound = Task(task.kind, tuple(axes), tuple(int(np.prod(a.shape)) for a in one))
    bound.rule.check([np.moveaxis(a, axis, 0).shape for a, axis in zip(one, axes)])
    return bound
