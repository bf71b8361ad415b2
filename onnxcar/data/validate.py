"""Checks that a data set fits a model, before any long work."""

import logging

import numpy as np

from onnxcar.data.dataset import Dataset
from onnxcar.errors import OnnxcarError

log = logging.getLogger(__name__)

_ORT_TYPES = {"float": "float32", "double": "float64"}
_CHUNK = 256


def validate_for_model(
    ds: Dataset,
    input_shape: list[int | str | None],
    input_dtype: str,
    num_outputs: int | None,
    task: str = "classification",
) -> None:
    """Raises OnnxcarError unless ``ds`` fits the model input and outputs.

    ``input_shape`` dims that are positive ints are static and must match (the
    batch axis is free); ``input_dtype`` is a numpy name or an onnxruntime type
    such as ``tensor(float)``. Classification labels must be class ids in
    ``[0, num_outputs)``. Warns (logging) when all labels are one class: allowed,
    but then every filter's accuracy drop is measured on one class only, so CAR's
    ranking says little about the others; when preset-none float images look
    like raw [0, 255] pixels; and when an image tree's class count differs from
    ``num_outputs``.
    """
    if len(ds) == 0:
        raise OnnxcarError("the data set is empty")
    _check_shape(ds.images.shape, input_shape)
    _check_dtype(ds.images.dtype, input_dtype)
    if ds.images.dtype.kind == "f":
        _check_values(ds)
    if ds.labels is not None:
        (_check_classes if task == "classification" else _check_targets)(ds.labels, num_outputs)
    if ds.classes is not None and num_outputs is not None and len(ds.classes) != num_outputs:
        log.warning(
            "the image tree has %d class folders but the model %d outputs: labels index the sorted folder names, "
            "which match the model's classes only when every class has a folder",
            len(ds.classes), num_outputs,
        )


def _check_shape(shape: tuple[int, ...], expected: list[int | str | None]) -> None:
    static = [(axis, dim) for axis, dim in enumerate(expected) if axis > 0 and isinstance(dim, int) and dim > 0]
    if len(shape) != len(expected) or any(shape[axis] != dim for axis, dim in static):
        dims = ", ".join("?" if dim is None else str(dim) for dim in expected)
        raise OnnxcarError(
            f"images are shaped {tuple(shape)} but the model input takes [{dims}] (batch axis free); "
            "check resize, crop and layout"
        )


def _check_dtype(dtype: np.dtype, input_dtype: str) -> None:
    name = input_dtype.removeprefix("tensor(").removesuffix(")")
    expected = np.dtype(_ORT_TYPES.get(name, name))
    if dtype != expected:
        raise OnnxcarError(
            f"images are {dtype} but the model input takes {expected}; "
            f"pick a preprocess preset or store {expected} arrays"
        )


def _check_values(ds: Dataset) -> None:
    for start in range(0, len(ds), _CHUNK):
        chunk = ds.images[start : start + _CHUNK]
        bad = ~np.isfinite(chunk).reshape(len(chunk), -1).all(axis=1)
        if bad.any():
            raise OnnxcarError(f"images contain NaN or Inf (first in image {start + int(np.argmax(bad))})")
    low, high = float(ds.images.min()), float(ds.images.max())
    if ds.spec.preprocess.passthrough and low >= 0 and 1.5 < high <= 255:
        log.warning("float images range over [%g, %g]: raw pixels? preset none feeds them unnormalised", low, high)


def _check_classes(labels: np.ndarray, num_outputs: int | None) -> None:
    if labels.dtype.kind == "f" or labels.ndim != 1:
        raise OnnxcarError(
            f"classification needs one integer class id per image; labels are {labels.dtype} shaped {labels.shape}"
        )
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or (num_outputs is not None and high >= num_outputs):
        allowed = "non-negative" if num_outputs is None else f"in [0, {num_outputs}) for {num_outputs} outputs"
        raise OnnxcarError(f"labels range over [{low}, {high}] but class ids must be {allowed}")
    if low == high:
        log.warning("all %d labels are class %d: CAR then ranks filters by that class alone", len(labels), low)


def _check_targets(labels: np.ndarray, num_outputs: int | None) -> None:
    if labels.dtype.kind not in "fiu":
        raise OnnxcarError(f"regression targets must be numbers, got {labels.dtype}")
    if not np.all(np.isfinite(labels)):
        raise OnnxcarError("regression targets contain NaN or Inf values")
    width = labels.shape[-1] if labels.ndim > 1 else 1
    if num_outputs is not None and (labels.ndim > 2 or width != num_outputs):
        raise OnnxcarError(f"targets are shaped {labels.shape} but the model has {num_outputs} outputs per sample")
