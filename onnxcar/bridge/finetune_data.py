"""Fine-tuning data: checks that a dataset fits the model, and its arrays as torch tensors."""

import numpy as np
import onnx
import torch

from onnxcar.data import Dataset, validate_for_model
from onnxcar.errors import OnnxcarError
from onnxcar.runners.base import graph_signature


def check_data(model: onnx.ModelProto, ds: Dataset, task: str, what: str) -> None:
    """Raises OnnxcarError unless ``ds`` fits the model's only input and, when labelled, its output."""
    inputs, outputs = graph_signature(model)
    if len(inputs) != 1:
        raise OnnxcarError(f"fine-tuning needs a model with one input; this one has {[i.name for i in inputs]}")
    shape = outputs[0].shape
    width = shape[-1] if shape and isinstance(shape[-1], int) and shape[-1] > 0 else None
    try:
        validate_for_model(ds, inputs[0].shape, inputs[0].type, width, task)
    except OnnxcarError as err:
        raise OnnxcarError(f"{what}: {err}") from None


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """A CPU tensor sharing ``array``'s memory (copied first unless C-contiguous and writable)."""
    return torch.from_numpy(np.require(array, requirements=["C", "W"]))


def targets(ds: Dataset) -> torch.Tensor:
    """Class ids (int64) or regression targets (float)."""
    labels = ds.labels if ds.labels.dtype.kind == "f" else ds.labels.astype(np.int64)
    return to_tensor(labels)
