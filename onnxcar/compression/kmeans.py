"""Weight sharing (Han et al. 2016): per layer, 1-D k-means over the surviving weights, centroids linearly initialised."""

from dataclasses import dataclass

import numpy as np

from onnxcar.errors import VerificationError

MAX_ITERATIONS = 300


@dataclass(frozen=True)
class Codebook:
    """Shared weights: ``centroids`` (float32, exactly storable in the codebook dtype) and, per weight,
    the index of its centroid (-1: pruned, the weight is zero)."""

    centroids: np.ndarray
    index: np.ndarray

    def weights(self) -> np.ndarray:
        """The float32 weights: each kept weight its centroid, the others +0.0."""
        if not self.centroids.size:
            return np.zeros(self.index.shape, dtype=np.float32)
        return np.where(self.index >= 0, self.centroids[np.maximum(self.index, 0)], np.float32(0)).astype(np.float32)

    def refit(self, weights: np.ndarray, dtype: str, what: str) -> "Codebook":
        """The codebook whose centroids are the values ``weights`` hold at each centroid's positions (after
        trained quantization), rounded to ``dtype``; VerificationError if one centroid's weights differ."""
        centroids = self.centroids.copy()
        for k in np.unique(self.index[self.index >= 0]):
            values = weights[self.index == k]
            if np.any(values != values[0]):
                raise VerificationError(f"{what}: the weights of centroid {k} no longer share one value")
            centroids[k] = values[0]
        return Codebook(storable(centroids, dtype), self.index)


def share_weights(weights: np.ndarray, bits: int, dtype: str) -> Codebook:
    """k-means with 2**``bits`` centroids, linearly spaced over [min, max] of the nonzero weights at the start
    (Han et al.'s best initialisation); zeros stay zero. Lloyd iterations run until no weight changes cluster.

    In one dimension a cluster is a run of the sorted weights, so an iteration finds its runs'
    ends by binary search and their sums from a prefix sum, in O(2**bits log n).
    """
    weights = np.asarray(weights, dtype=np.float32)
    kept = weights != 0
    index = np.full(weights.shape, -1, dtype=np.int64)
    if not kept.any():
        return Codebook(np.zeros(0, dtype=np.float32), index)
    values = np.sort(weights[kept].astype(np.float64))
    prefix = np.concatenate([[0.0], np.cumsum(values)])
    centroids = np.linspace(values[0], values[-1], 1 << bits)
    ends = None
    for _ in range(MAX_ITERATIONS):
        # a weight joins the first centroid whose midpoint with the next is not below it
        new = np.concatenate([[0], np.searchsorted(values, _midpoints(centroids), "right"), [len(values)]])
        if ends is not None and np.array_equal(new, ends):
            break
        ends = new
        sizes = np.diff(ends)
        centroids = np.where(sizes > 0, (prefix[ends[1:]] - prefix[ends[:-1]]) / np.maximum(sizes, 1), centroids)
    index[kept] = np.searchsorted(_midpoints(centroids), weights[kept].astype(np.float64), "left")
    return Codebook(storable(centroids, dtype), index)


def _midpoints(centroids: np.ndarray) -> np.ndarray:
    return (centroids[:-1] + centroids[1:]) / 2


def storable(centroids: np.ndarray, dtype: str) -> np.ndarray:
    """``centroids`` rounded to ``dtype`` (float16 or float32), as float32."""
    return np.asarray(centroids).astype(dtype).astype(np.float32)
