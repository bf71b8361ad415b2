"""Resize and Upsample (nearest and linear), interpolating one axis at a time.

Source coordinates follow the ONNX formulas in float32, as onnxruntime computes them.
"""

import math

import numpy as np
import torch

from onnxcar.bridge.registry import ints, padded, register

_COORDINATES = {  # (output coords, scale, input length, output length) -> source coords
    "half_pixel": lambda x, s, n_in, n_out: (x + 0.5) / s - 0.5,
    "pytorch_half_pixel": lambda x, s, n_in, n_out: (x + 0.5) / s - 0.5 if n_out > 1 else 0 * x,
    "align_corners": lambda x, s, n_in, n_out: x * np.float32((n_in - 1) / (n_out - 1)) if n_out > 1 else 0 * x,
    "asymmetric": lambda x, s, n_in, n_out: x / s,
    "half_pixel_symmetric": lambda x, s, n_in, n_out: (
        np.float32(n_in / 2 * (1 - n_out / (s * n_in))) + (x + 0.5) / s - 0.5
    ),
}
_ROUNDING = {
    "round_prefer_floor": lambda c: np.ceil(c - 0.5),
    "round_prefer_ceil": lambda c: np.floor(c + 0.5),
    "floor": np.floor,
    "ceil": np.ceil,
}


def _floats(t) -> list[float] | None:
    """Scales from a tensor or attribute list; None when absent or empty."""
    values = t.reshape(-1).tolist() if isinstance(t, torch.Tensor) else t
    return [float(v) for v in values] if values else None


def _along(values: np.ndarray, x: torch.Tensor, axis: int) -> torch.Tensor:
    """``values`` as a tensor on ``x``'s device, shaped to broadcast along ``axis``."""
    shape = [-1 if d == axis else 1 for d in range(x.dim())]
    return torch.from_numpy(values).to(x.device, x.dtype).reshape(shape)


def _interpolate(x, axis, n_out, scale, coords, mode, rounding):
    """Resize ``x`` along one axis; a no-op when the source coordinates are the identity."""
    n_in = x.shape[axis]
    src = coords(np.arange(n_out, dtype=np.float32), np.float32(scale), n_in, n_out)
    identity = np.arange(n_in)
    if mode == "nearest":
        index = np.clip(rounding(src), 0, n_in - 1).astype(np.int64)
        if n_out == n_in and np.array_equal(index, identity):
            return x
        return x.index_select(axis, torch.from_numpy(index).to(x.device))
    src = np.clip(src, 0, n_in - 1)
    if n_out == n_in and np.array_equal(src, identity):
        return x
    low = np.floor(src).astype(np.int64)
    high = np.minimum(low + 1, n_in - 1)
    weight = _along((src - low).astype(np.float32), x, axis)
    x_low = x.index_select(axis, torch.from_numpy(low).to(x.device))
    x_high = x.index_select(axis, torch.from_numpy(high).to(x.device))
    return x_low + (x_high - x_low) * weight


def _resize(ctx, x, scales, sizes, attrs, coordinate_mode, nearest_mode):
    """Shared body of Resize and Upsample; ``scales``/``sizes`` cover ``axes`` (default all)."""
    mode = attrs.get("mode", "nearest")
    if mode not in ("nearest", "linear"):
        raise ctx.error(f"mode {mode!r} is not supported (only nearest and linear are)")
    if coordinate_mode not in _COORDINATES:
        raise ctx.error(f"coordinate_transformation_mode {coordinate_mode!r} is not supported")
    if nearest_mode not in _ROUNDING:
        raise ctx.error(f"nearest_mode {nearest_mode!r} is not supported")
    if attrs.get("antialias", 0) or attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise ctx.error("antialias and keep_aspect_ratio_policy are not supported")
    axes = [a % x.dim() for a in attrs.get("axes", range(x.dim()))]
    for i, axis in enumerate(axes):
        n_in = x.shape[axis]
        if sizes is not None:
            n_out, scale = sizes[i], sizes[i] / n_in
        else:
            n_out, scale = math.floor(n_in * scales[i]), scales[i]
        x = _interpolate(x, axis, n_out, scale, _COORDINATES[coordinate_mode], mode, _ROUNDING[nearest_mode])
    return x


@register("Resize")
def resize(ctx, inputs, attrs):
    x = inputs[0]
    if ctx.opset < 11:  # Resize-10 has Upsample's semantics
        return _resize(ctx, x, _floats(inputs[1]), None, attrs, "asymmetric", "floor")
    _, _, scales, sizes = padded(inputs, 4)
    coordinate_mode = attrs.get("coordinate_transformation_mode", "half_pixel")
    nearest_mode = attrs.get("nearest_mode", "round_prefer_floor")
    sizes = ints(sizes) if sizes is not None and sizes.numel() else None
    return _resize(ctx, x, _floats(scales), sizes, attrs, coordinate_mode, nearest_mode)


@register("Upsample")
def upsample(ctx, inputs, attrs):
    scales = inputs[1] if len(inputs) > 1 else attrs["scales"]
    return _resize(ctx, inputs[0], _floats(scales), None, attrs, "asymmetric", "floor")
