"""CTC sequence recognition (CRNN, PaddleOCR's recognisers): greedy decoding, exact match, character error rate."""

import numpy as np

from onnxcar.errors import DataError
from onnxcar.tasks import TaskRule, register_task

BLANK = 0
"""The CTC blank's class index (PaddleOCR's and most CRNN exports')."""


@register_task("ctc")
class Ctc(TaskRule):
    """Reads the first output as ``[N, T, classes]`` (after moving its batch axis first, so ``[T, N, C]``
    exports too): per-position argmax, repeats collapsed, blanks dropped. Targets are the original
    model's decodes, padded with -1. Per-sample outcome: 1.0 for an exact match; ties by character
    error rate (edit distance over the target's length)."""

    help = "exact match of the greedy CTC decode of [N, T, C] or [T, N, C] against the original's"
    metric = "sequence_accuracy"
    tie_key = True

    def check(self, shapes):
        if len(shapes[0]) != 3:
            raise DataError(f"ctc reads a first output of [N, T, classes] (or [T, N, classes]); this one is "
                            f"{list(shapes[0])} for one item", arguments=("task",))

    def targets(self, view):
        return _decode(view)

    def outcomes(self, view, targets, sizes):
        return np.all(_decode(view) == targets, axis=1).astype(np.float64)

    def tie_values(self, view, targets, tie_break):
        decoded = _decode(view)
        return np.array([_edit_distance(d[d >= 0], t[t >= 0]) / max(int((t >= 0).sum()), 1)
                         for d, t in zip(decoded, targets)])


def _decode(view: np.ndarray) -> np.ndarray:
    """Greedy CTC decodes of ``[N, T, C]`` scores, each padded with -1 to length T."""
    best = view.argmax(axis=2)
    keep = (best != BLANK) & np.concatenate([np.ones((len(best), 1), bool), best[:, 1:] != best[:, :-1]], axis=1)
    decoded = np.full(best.shape, -1, np.int64)
    for i, (row, mask) in enumerate(zip(best, keep)):
        symbols = row[mask]
        decoded[i, : len(symbols)] = symbols
    return decoded


def _edit_distance(a: np.ndarray, b: np.ndarray) -> int:
    """Levenshtein distance between two sequences."""
    previous = np.arange(len(b) + 1)
    for i, symbol in enumerate(a, 1):
        current = np.empty_like(previous)
        current[0] = i
        for j in range(1, len(b) + 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (symbol != b[j - 1]))
        previous = current
    return int(previous[-1])
