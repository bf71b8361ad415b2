"""A consumer as linear systems: its input unfolded into rows (one per output position, a Conv's
patches with a 1 for the bias), its targets, and its weights in the same layout.

A Conv with ``g`` groups gives ``g`` systems (a depthwise Conv one per channel); a Gemm or
MatMul one. Arrays are shaped (systems, rows, unknowns) and (systems, unknowns, outputs).
"""

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from onnxcar.repair.consumers import Consumer


def systems(consumer: Consumer) -> int:
    """How many independent systems the consumer is: a Conv's group count, else 1."""
    return consumer.attrs.get("group", 1) if consumer.op == "Conv" else 1


def input_rows(consumer: Consumer, x: np.ndarray) -> np.ndarray:
    """The consumer's input ``x`` (pruned network) as float32 rows, with a column of ones for a bias."""
    if consumer.op == "Conv":
        rows = _patches(consumer, x, systems(consumer))
    else:
        if consumer.op == "Gemm" and consumer.attrs.get("transA", 0):
            x = x.T
        rows = x.reshape(1, -1, x.shape[-1])
    rows = rows.astype(np.float32, copy=False)
    if consumer.op == "MatMul":
        return rows
    return np.concatenate([rows, np.ones((*rows.shape[:2], 1), np.float32)], axis=2)


def target_rows(consumer: Consumer, y: np.ndarray) -> np.ndarray:
    """The original network's output ``y`` of the consumer, kept channels only, as float32 rows."""
    axis = 1 if consumer.op != "MatMul" else y.ndim - 1
    if consumer.out_kept is not None:
        y = np.take(y, consumer.out_kept, axis=axis)
    if consumer.op != "Conv":
        return y.reshape(1, -1, y.shape[-1]).astype(np.float32, copy=False)
    n, m, oh, ow = y.shape
    groups = systems(consumer)
    return y.reshape(n, groups, m // groups, oh, ow).transpose(1, 0, 3, 4, 2).reshape(groups, -1, m // groups).astype(
        np.float32, copy=False)


def to_systems(consumer: Consumer, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """The consumer's weights (and bias) as the solution of its systems."""
    if consumer.op == "Conv":
        m, groups = weight.shape[0], systems(consumer)
        solution = weight.reshape(groups, m // groups, -1).transpose(0, 2, 1)
        bias = np.zeros(m) if bias is None else bias
        return np.concatenate([solution, bias.reshape(groups, 1, m // groups)], axis=1).astype(np.float64)
    if consumer.op == "MatMul":
        return weight[None].astype(np.float64)
    alpha, beta = consumer.attrs.get("alpha", 1.0), consumer.attrs.get("beta", 1.0)
    matrix = (weight.T if consumer.attrs.get("transB", 0) else weight) * alpha
    outputs = matrix.shape[1]
    bias = np.zeros(outputs) if bias is None else np.broadcast_to(bias.reshape(-1) * beta, (outputs,))
    return np.concatenate([matrix, bias[None]], axis=0)[None].astype(np.float64)


def from_systems(consumer: Consumer, solution: np.ndarray,
                 shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    """The weight (of ``shape``) and bias (None for a MatMul) that ``solution`` holds, as float32.

    A Gemm's weight is written for alpha = beta = 1."""
    if consumer.op == "MatMul":
        return solution[0].astype(np.float32), None
    weights, bias = solution[:, :-1], solution[:, -1]
    if consumer.op == "Conv":
        return weights.transpose(0, 2, 1).reshape(shape).astype(np.float32), bias.reshape(-1).astype(np.float32)
    matrix = weights[0].T if consumer.attrs.get("transB", 0) else weights[0]
    return matrix.astype(np.float32), bias[0].astype(np.float32)


def _patches(consumer: Consumer, x: np.ndarray, groups: int) -> np.ndarray:
    """im2col of a 2-D Conv with its stride, padding and dilation: (groups, n*oh*ow, c/groups*kh*kw)."""
    attrs = consumer.attrs
    kh, kw = attrs["kernel_shape"]
    sh, sw = attrs.get("strides", (1, 1))
    dh, dw = attrs.get("dilations", (1, 1))
    top, left, bottom, right = _pads(attrs, x.shape[2:], (kh, kw), (sh, sw), (dh, dw))
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    windows = sliding_window_view(padded, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw, ::dh, ::dw]  # n, c, oh, ow, kh, kw
    n, c, oh, ow = windows.shape[:4]
    grouped = windows.reshape(n, groups, c // groups, oh, ow, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6)
    return grouped.reshape(groups, n * oh * ow, c // groups * kh * kw)


def _pads(attrs: dict, size, kernel, strides, dilations) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) padding, explicit or from ``auto_pad``."""
    mode = attrs.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode in ("NOTSET", ""):
        pads = attrs.get("pads", (0, 0, 0, 0))
        return pads[0], pads[1], pads[2], pads[3]
    if mode == "VALID":
        return 0, 0, 0, 0
    begin, end = [], []
    for extent, k, s, d in zip(size, kernel, strides, dilations):
        total = max((math.ceil(extent / s) - 1) * s + (k - 1) * d + 1 - extent, 0)
        small, large = total // 2, total - total // 2
        begin.append(small if mode == "SAME_UPPER" else large)
        end.append(large if mode == "SAME_UPPER" else small)
    return begin[0], begin[1], end[0], end[1]
