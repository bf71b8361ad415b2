"""Classification: top-1 accuracy of the first output, read as ``[N, classes]``."""

import numpy as np

from onnxcar.errors import DataError
from onnxcar.tasks import TASKS, TaskRule, register_task


@register_task("classification")
class Classification(TaskRule):
    """Per-sample outcome 1.0 for a correct top-1; ties by cross-entropy (``loss``) or top-1 margin (``margin``)."""

    help = "top-1 of an [N, classes] output"
    agreement_only = False
    tie_key = True

    def view(self, outputs, axes, sizes):
        scores = super().view(outputs, axes, sizes)
        return scores.reshape(len(scores), -1)

    def check(self, shapes):
        """Refuses, listing the tasks, a first output that is not ``[N, classes]`` up to dims of size 1:
        top-1 accuracy of anything else would read one value of a flattened map or sequence."""
        if sum(size > 1 for size in shapes[0][1:]) > 1:
            others = ", ".join(name for name in TASKS.names() if name != "classification")
            raise DataError(f"the model's first output is shaped {list(shapes[0])} for one item, not [1, classes]: "
                            f"choose the task that reads it ({others})", arguments=("task",))

    def targets(self, view):
        return view.argmax(axis=1).astype(np.int64)

    def outcomes(self, view, targets, sizes):
        return (view.argmax(axis=1) == targets).astype(np.float64)

    def hardest_first(self, view, targets, sizes):
        """Misclassified first, then by top-1 margin."""
        return np.argsort(_margins(view, targets), kind="stable")

    def tie_values(self, view, targets, tie_break):
        """The cross-entropy (``loss``) or minus the true class's margin over the best other class (``margin``)."""
        if tie_break == "margin":
            return -_margins(view, targets)
        logits = view.astype(np.float64)
        top = logits.max(axis=1)
        log_sum = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
        return log_sum - logits[np.arange(len(logits)), targets]


def _margins(view: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The true class's logit minus the largest other logit, per sample."""
    logits = view.astype(np.float64)
    rows = np.arange(len(logits))
    true = logits[rows, targets].copy()
    logits[rows, targets] = -np.inf
    return true - logits.max(axis=1)
