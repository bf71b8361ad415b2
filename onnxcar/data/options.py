"""A DataSpec from flat options, as the CLI and recipes name them."""

from pathlib import Path

from onnxcar.data.sources import npz_dtype
from onnxcar.data.spec import PRESETS, DataSpec, Preprocess
from onnxcar.errors import DataError


def data_spec(
    path: str,
    *,
    images_key: str = "images",
    labels_key: str = "labels",
    no_labels: bool = False,
    preprocess: str | None = None,
    resize: int | None = None,
    crop: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    layout: str | None = None,
    input_name: str | None = None,
    limit: int | None = None,
    split: float | None = None,
    split_part: str = "heldout",
    seed: int = 0,
    archive_max_files: int | None = None,
    archive_max_bytes: int | None = None,
) -> DataSpec:
    """The DataSpec these options describe. Without ``preprocess``, float images in a .npz pass
    through untouched; any other data must name its preprocessing. Archive limits left None
    keep DataSpec's defaults."""
    overrides = {"resize": resize, "crop": crop, "mean": mean, "std": std, "layout": layout, "input_name": input_name}
    overrides = {name: value for name, value in overrides.items() if value is not None}
    limits = {"archive_max_files": archive_max_files, "archive_max_bytes": archive_max_bytes}
    return DataSpec(
        path=path,
        images_key=images_key,
        labels_key=None if no_labels else labels_key,
        preprocess=Preprocess.preset(preprocess or _default_preset(path, images_key), **overrides),
        limit=limit,
        split=split,
        split_part=split_part,
        seed=seed,
        **{name: value for name, value in limits.items() if value is not None},
    )


def _default_preset(data: str, images_key: str) -> str:
    """``none`` for float .npz images; any other data must name its preprocessing."""
    path = Path(data)
    if path.is_file() and path.name.lower().endswith(".npz"):
        dtype = npz_dtype(path, images_key)
        if dtype.kind == "f":
            return "none"
        found = f"{dtype} images"
    else:
        found = "image files"
    raise DataError(f"{data} holds {found}: choose a preprocessing ({', '.join(PRESETS)})", arguments=("preprocess",))
