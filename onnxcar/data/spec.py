"""What to read and how to preprocess it: frozen, validated, recorded in every report."""

import os
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from onnxcar.errors import OnnxcarError

_LAYOUTS = ("NCHW", "NHWC")
_SPLIT_PARTS = ("heldout", "rest")


@dataclass(frozen=True)
class Preprocess:
    """How uint8 pixels become model input.

    Steps, in order: resize the shorter side to ``resize`` (bilinear), centre-crop
    ``crop`` x ``crop``, divide by 255 if ``scale``, subtract ``mean`` and divide by
    ``std`` per channel (one value, or all values equal, broadcasts), lay out as
    ``layout`` and cast to ``dtype``. ``passthrough`` (preset ``none``) feeds the
    stored arrays untouched instead; it takes no other setting but ``input_name``.
    """

    resize: int | None = None
    crop: int | None = None
    scale: bool = True
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    layout: str = "NCHW"
    dtype: str = "float32"
    input_name: str | None = None
    passthrough: bool = False

    def __post_init__(self):
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        for name in ("resize", "crop"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise OnnxcarError(f"{name} must be a positive number of pixels, got {value}")
        if not self.mean or not self.std or 0.0 in self.std:
            raise OnnxcarError(f"mean and std need at least one value and std no zero, got {self.mean} and {self.std}")
        if self.layout not in _LAYOUTS:
            raise OnnxcarError(f"layout must be one of {', '.join(_LAYOUTS)}, got {self.layout!r}")
        if not _is_float_type(self.dtype):
            raise OnnxcarError(f"preprocess dtype must be a float type, got {self.dtype!r}")
        settings = (self.resize, self.crop, self.scale, self.mean, self.std, self.layout, self.dtype)
        if self.passthrough and settings != (None, None, False, (0.0,) * 3, (1.0,) * 3, "NCHW", "float32"):
            raise OnnxcarError(
                "preprocess none passes arrays through untouched: it takes no resize, crop, mean, std or layout"
            )

    @classmethod
    def preset(cls, name: str, **overrides) -> "Preprocess":
        """The named preset (``imagenet``, ``cifar10`` or ``none``) with ``overrides`` applied."""
        if name not in PRESETS:
            raise OnnxcarError(f"unknown preprocess preset {name!r}; known: {', '.join(PRESETS)}")
        return replace(PRESETS[name], **overrides)

    def to_dict(self) -> dict:
        return asdict(self)


def _is_float_type(name: str) -> bool:
    try:
        return np.dtype(name).kind == "f"
    except TypeError:
        return False


PRESETS = {
    # torchvision's ImageNet evaluation transform.
    "imagenet": Preprocess(resize=256, crop=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    # CIFAR-10 training-set statistics; some model zoos use std (0.2023, 0.1994, 0.2010): override --std.
    "cifar10": Preprocess(mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
    # Already preprocessed arrays.
    "none": Preprocess(scale=False, passthrough=True),
}


@dataclass(frozen=True)
class DataSpec:
    """Where the data lies and which part of it to use.

    ``path`` is a ``.npz`` file, an image folder ``root/<class>/<image>`` or a
    ``.tar``/``.tar.gz``/``.tgz`` of one. ``preprocess`` is a :class:`Preprocess` or a preset
    name. ``labels_key=None`` means unlabelled data.
    ``split`` carves a fraction out (``split_part`` ``heldout``) or keeps the
    remainder (``rest``); ``limit`` then keeps the first N. Both take a prefix of
    one seeded shuffle, stratified by class when the labels are class ids (each
    class keeps its share), plain otherwise; the kept items stay in stored order.
    An archive is read in place, never unpacked; one with more than
    ``archive_max_files`` members (default 1,000,000) or that unpacks to more than
    ``archive_max_bytes`` (default 64 GiB) is refused.
    """

    path: str
    images_key: str = "images"
    labels_key: str | None = "labels"
    preprocess: Preprocess = field(default_factory=Preprocess)
    limit: int | None = None
    split: float | None = None
    split_part: str = "heldout"
    seed: int = 0
    archive_max_files: int = 1_000_000
    archive_max_bytes: int = 64 * 2**30

    def __post_init__(self):
        object.__setattr__(self, "path", os.fspath(self.path))
        if isinstance(self.preprocess, str):
            object.__setattr__(self, "preprocess", Preprocess.preset(self.preprocess))
        for name in ("limit", "archive_max_files", "archive_max_bytes"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise OnnxcarError(f"{name} must be at least 1, got {value}")
        if self.split is not None and not 0.0 < self.split < 1.0:
            raise OnnxcarError(f"split must be a fraction strictly between 0 and 1, got {self.split}")
        if self.split_part not in _SPLIT_PARTS:
            raise OnnxcarError(f"split_part must be one of {', '.join(_SPLIT_PARTS)}, got {self.split_part!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DataSpec":
        """The spec ``to_dict`` wrote (as a report records it)."""
        try:
            return cls(**{**data, "preprocess": Preprocess(**data.get("preprocess", {}))})
        except TypeError as err:
            raise OnnxcarError(f"not a data spec: {err}") from err
