"""The data layer: what to read (DataSpec), reading it (load_dataset) and checking it fits a model."""

from onnxcar.data.dataset import Dataset, load_dataset, load_pixels
from onnxcar.data.spec import DataSpec, Preprocess
from onnxcar.data.validate import validate_for_model

__all__ = ["DataSpec", "Dataset", "Preprocess", "load_dataset", "load_pixels", "validate_for_model"]
