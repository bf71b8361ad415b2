"""The in-memory data set every consumer iterates, and how it is loaded."""

from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np

from onnxcar.data.select import select_indices
from onnxcar.data.sources import open_source
from onnxcar.data.spec import DataSpec
from onnxcar.data.transforms import normalize
from onnxcar.errors import OnnxcarError


@dataclass(frozen=True)
class Dataset:
    """Preprocessed images (model layout and dtype, C-contiguous) and aligned labels.

    ``labels`` are int64 class ids, float targets (regression) or None
    (unlabelled); ``classes`` names the class ids of an image tree.
    """

    images: np.ndarray
    labels: np.ndarray | None
    classes: list[str] | None
    spec: DataSpec

    def __post_init__(self):
        if self.labels is not None and len(self.labels) != len(self.images):
            raise OnnxcarError(f"{len(self.labels)} labels for {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """(images, labels) slices of ``batch_size`` items, in order; the last may be shorter."""
        if batch_size < 1:
            raise OnnxcarError(f"batch size must be at least 1, got {batch_size}")
        for start in range(0, len(self), batch_size):
            stop = start + batch_size
            yield self.images[start:stop], None if self.labels is None else self.labels[start:stop]

    def with_labels(self, labels: np.ndarray) -> "Dataset":
        """The same images with other labels, e.g. the original model's top-1 (agreement mode)."""
        return replace(self, labels=as_labels(labels, "new labels"))

    def subset(self, index: np.ndarray) -> "Dataset":
        """The items at ``index`` (integer indices or a boolean mask), in that order."""
        index = np.asarray(index)
        if index.size == 0:  # np.asarray([]) is float
            index = index.astype(np.intp)
        labels = None if self.labels is None else self.labels[index]
        return replace(self, images=np.ascontiguousarray(self.images[index]), labels=labels)


def as_labels(labels: np.ndarray, what: str) -> np.ndarray:
    """Integer labels as int64 class ids; float labels (targets) unchanged."""
    labels = np.asarray(labels)
    if labels.dtype.kind in "iu":
        return labels.astype(np.int64)
    if labels.dtype.kind == "f":
        return labels
    raise OnnxcarError(f"{what} are {labels.dtype}: expected integer class ids or float targets")


def load_dataset(spec: DataSpec) -> Dataset:
    """Reads, selects (split, limit) and preprocesses the data ``spec`` names."""
    pixels = load_pixels(spec)
    images = pixels.images if spec.preprocess.passthrough else normalize(pixels.images, spec.preprocess)
    return replace(pixels, images=images)


def load_pixels(spec: DataSpec) -> Dataset:
    """The data ``spec`` names before normalisation: NHWC uint8 pixels, resized and cropped
    (the stored arrays untouched for preprocess ``none``)."""
    source = open_source(spec)
    if len(source) == 0:
        raise OnnxcarError(f"no images in {spec.path}")
    labels = None if source.labels is None else as_labels(source.labels, f"labels in {spec.path}")
    index = select_indices(len(source), labels, spec)
    return Dataset(source.read(index, spec.preprocess), None if labels is None else labels[index], source.classes, spec)
