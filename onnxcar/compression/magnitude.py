"""Magnitude weight pruning (Han et al. 2015, "Learning both Weights and Connections"): the smallest weights become zero."""

import numpy as np


def prune_smallest(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """A copy of ``weights`` with the ``round(sparsity * size)`` smallest magnitudes set to +0.0 (ties: earlier first)."""
    flat = np.array(weights, dtype=np.float32).reshape(-1)
    order = np.argsort(np.abs(flat), kind="stable")
    flat[order[: int(round(sparsity * flat.size))]] = 0.0
    return flat.reshape(np.shape(weights))
