"""Segmentation and other dense maps: mean IoU of per-pixel labels against the original model's."""

import numpy as np

from onnxcar.errors import DataError
from onnxcar.tasks import TaskRule, register_task

THRESHOLD = 0.5
"""Where a one-channel map (a sigmoid probability map, such as a text detector's) turns to foreground."""


@register_task("segmentation")
class Segmentation(TaskRule):
    """Reads the first output as ``[N, C, *spatial]``: per-pixel argmax over C, or the map above
    :data:`THRESHOLD` for C = 1. Per-sample outcome: the mean IoU over the classes present in either
    labelling (for one channel, the foreground's IoU); 1.0 where both are empty."""

    help = "mean IoU of per-pixel argmax (one channel: the map above 0.5) against the original's"
    metric = "miou"

    def check(self, shapes):
        if len(shapes[0]) < 3:
            raise DataError(f"segmentation reads a first output of [N, C, H, ...] per-pixel scores; this one is "
                            f"{list(shapes[0])} for one item", arguments=("task",))

    def targets(self, view):
        return _labels(view)

    def outcomes(self, view, targets, sizes):
        predicted = _labels(view).reshape(len(view), -1)
        targets = targets.reshape(len(targets), -1)
        classes = max(view.shape[1], 2)
        scores = np.empty(len(view))
        for i, (p, t) in enumerate(zip(predicted, targets)):
            confusion = np.bincount(t * classes + p, minlength=classes * classes).reshape(classes, classes)
            union = confusion.sum(axis=0) + confusion.sum(axis=1) - np.diag(confusion)
            present = union > 0
            if view.shape[1] == 1:
                present[0] = False  # one channel: background is what is left, not a class
            scores[i] = np.mean(np.diag(confusion)[present] / union[present]) if present.any() else 1.0
        return scores


def _labels(view: np.ndarray) -> np.ndarray:
    """Per-pixel class ids of ``[N, C, *spatial]`` scores."""
    if view.shape[1] == 1:
        return (view[:, 0] > THRESHOLD).astype(np.int64)
    return view.argmax(axis=1).astype(np.int64)
