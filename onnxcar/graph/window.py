"""LRN's channel window as an explicit 0/1 matrix over channel positions.

ONNX LRN divides channel c by a power of the sum of squares over channels
``c - floor((size - 1) / 2) .. c + ceil((size - 1) / 2)``. Written as a matrix, that window
survives channel removal: removing channels drops their rows and columns, and each kept
channel still sums exactly its kept neighbours. Surgery writes a pruned LRN as a 1x1 Conv
with this matrix; :func:`is_window` recognises it again.
"""

import numpy as np


def window_matrix(size: int, channels: int) -> np.ndarray:
    """The ``channels x channels`` 0/1 matrix whose row c marks the channels LRN sums for c."""
    offset = np.arange(channels)[None, :] - np.arange(channels)[:, None]
    return ((offset >= -((size - 1) // 2)) & (offset <= size // 2)).astype(np.float32)


def is_window(weight: np.ndarray) -> bool:
    """True for a 1x1 Conv weight that is a square 0/1 matrix with ones on its diagonal: a channel
    window, which keeps channel i at position i (the form a pruned LRN takes)."""
    if weight.ndim < 3 or weight.shape[0] != weight.shape[1] or any(k != 1 for k in weight.shape[2:]):
        return False
    matrix = weight.reshape(weight.shape[:2])
    return bool(np.isin(matrix, (0, 1)).all() and (np.diagonal(matrix) == 1).all())
