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


WINDOW_NODE = "window_sum"
"""The last part of the name surgery gives a pruned LRN's window Conv (``<lrn name>/window_sum``)."""


def is_window(name: str, weight: np.ndarray) -> bool:
    """True for the window Conv of a pruned LRN: named by surgery as such, and its 1x1 weight a square
    0/1 matrix with ones on its diagonal, which keeps channel i at position i. An identity Conv of
    the model's own is still a Conv."""
    if name.rsplit("/", 1)[-1] != WINDOW_NODE or weight.ndim < 3 or weight.shape[0] != weight.shape[1] or any(k != 1 for k in weight.shape[2:]):
        return False
    matrix = weight.reshape(weight.shape[:2])
    return bool(np.isin(matrix, (0, 1)).all() and (np.diagonal(matrix) == 1).all())
