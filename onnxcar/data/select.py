"""Deterministic choice of which items a DataSpec keeps (split, then limit)."""

import numpy as np

from onnxcar.data.spec import DataSpec
from onnxcar.errors import OnnxcarError


def select_indices(count: int, labels: np.ndarray | None, spec: DataSpec) -> np.ndarray:
    """Indices of the kept items, ascending.

    ``split`` and ``limit`` take prefixes of one shuffle seeded with ``spec.seed``
    (see ``shuffled``); the held-out part and the rest are complements.
    """
    if spec.split is None and spec.limit is None:
        return np.arange(count)
    order = shuffled(count, labels, spec.seed)
    if spec.split is not None:
        cut = int(round(spec.split * count))
        if not 0 < cut < count:
            raise OnnxcarError(f"split {spec.split} of {count} items leaves one part empty")
        order = order[:cut] if spec.split_part == "heldout" else order[cut:]
    if spec.limit is not None:
        order = order[: spec.limit]
    return np.sort(order)


def shuffled(count: int, labels: np.ndarray | None, seed: int) -> np.ndarray:
    """A seeded permutation; stratified when ``labels`` are class ids.

    Stratified: every prefix holds each class in proportion to its size (item r
    of a class of n sorts at (r + 0.5) / n; ties fall in random order).
    """
    perm = np.random.default_rng(seed).permutation(count)
    if labels is None or labels.ndim != 1 or labels.dtype.kind not in "iu":
        return perm
    _, cls, sizes = np.unique(labels[perm], return_inverse=True, return_counts=True)
    by_class = np.argsort(cls, kind="stable")
    rank = np.empty(count)
    rank[by_class] = np.arange(count) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return perm[np.argsort((rank + 0.5) / sizes[cls], kind="stable")]
