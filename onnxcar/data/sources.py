"""Readers for every data format behind one protocol, chosen by the path."""

import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np
from PIL import Image

from onnxcar.data.archive import extract, tree_root
from onnxcar.data.spec import DataSpec, Preprocess
from onnxcar.data.transforms import resize_crop, resize_crop_batch, to_nhwc
from onnxcar.errors import OnnxcarError

_ARCHIVES = (".tar", ".tar.gz", ".tgz")
_NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


class Source(Protocol):
    """Labels up front, images on demand (cf. onnxruntime's CalibrationDataReader).

    ``read`` returns the images at ``index``, in that order: the stored arrays
    untouched when ``pre.passthrough``, else NHWC uint8 pixels already resized
    and cropped, for ``transforms.normalize`` to finish.
    """

    labels: np.ndarray | None
    classes: list[str] | None

    def __len__(self) -> int: ...

    def read(self, index: np.ndarray, pre: Preprocess) -> np.ndarray: ...


def open_source(spec: DataSpec) -> Source:
    """The reader for ``spec.path``: a .npz, an image folder or a tar of one."""
    path = Path(spec.path)
    if path.is_dir():
        return FolderSource(path, labelled=spec.labels_key is not None)
    if not path.is_file():
        raise OnnxcarError(f"data not found: {path}")
    if path.name.lower().endswith(".npz"):
        return NpzSource(path, spec.images_key, spec.labels_key)
    if path.name.lower().endswith(_ARCHIVES):
        return FolderSource(tree_root(extract(path)), labelled=spec.labels_key is not None)
    raise OnnxcarError(f"unsupported data file {path}: expected .npz, an image folder, or {', '.join(_ARCHIVES)}")


class NpzSource:
    """Arrays in a .npz: uint8 images (NHWC, NCHW or NHW) or preprocessed floats."""

    def __init__(self, path: Path, images_key: str, labels_key: str | None):
        self.path = path
        with _open_npz(path) as npz:
            self.images = _array(npz, images_key, path)
            self.labels = None if labels_key is None else _array(npz, labels_key, path)
        self.classes = None
        if self.labels is not None and len(self.labels) != len(self.images):
            raise OnnxcarError(
                f"{path}: {len(self.labels)} labels ({labels_key!r}) for {len(self.images)} images ({images_key!r})"
            )

    def __len__(self) -> int:
        return len(self.images)

    def read(self, index: np.ndarray, pre: Preprocess) -> np.ndarray:
        images = self.images[index]
        if pre.passthrough:
            return np.ascontiguousarray(images)
        if images.dtype != np.uint8:
            raise OnnxcarError(
                f"images in {self.path} are {images.dtype}, not uint8 pixels: store uint8 pixels, "
                "or use preprocess none (--preprocess none) for already preprocessed arrays"
            )
        return resize_crop_batch(to_nhwc(images), pre)


class FolderSource:
    """An image tree ``root/<class>/<image>``: classes and files in sorted order, label = class index."""

    def __init__(self, root: Path, labelled: bool):
        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not self.classes:
            raise OnnxcarError(f"no class folders in {root}: expected {root}/<class>/<image files>")
        self.files: list[Path] = []
        labels: list[int] = []
        for label, name in enumerate(self.classes):
            found = sorted(p for p in (root / name).rglob("*") if p.is_file() and not _hidden(p.relative_to(root)))
            self.files += found
            labels += [label] * len(found)
        self.labels = np.asarray(labels, dtype=np.int64) if labelled else None

    def __len__(self) -> int:
        return len(self.files)

    def read(self, index: np.ndarray, pre: Preprocess) -> np.ndarray:
        files = [self.files[i] for i in index]
        pixels = [resize_crop(_decode(f), pre) for f in files]
        odd = next((i for i, p in enumerate(pixels) if p.shape != pixels[0].shape), None)
        if odd is not None:
            (h0, w0), (h1, w1) = pixels[0].shape[:2], pixels[odd].shape[:2]
            raise OnnxcarError(
                f"images differ in size after preprocessing: {files[0]} is {w0}x{h0}, {files[odd]} is {w1}x{h1}; "
                "set resize and crop (--resize, --crop)"
            )
        return np.stack(pixels)


def npz_dtype(path: Path, key: str) -> np.dtype:
    """The dtype of one array in a .npz, read from its header without loading it."""
    with _open_npz(path) as npz, npz.zip.open(f"{_key(npz, key, path)}.npy") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        return read_header(f)[2]


@contextmanager
def _open_npz(path: Path) -> Iterator[np.lib.npyio.NpzFile]:
    with open(path, "rb") as file:  # np.load leaks the handle it opens when the zip is bad
        try:
            npz = np.load(file, allow_pickle=False)
        except _NPZ_ERRORS as err:
            raise OnnxcarError(f"cannot read {path} as .npz: {err}") from err
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise OnnxcarError(f"{path} is a single .npy array, not a .npz archive of named arrays")
        with npz:
            yield npz


def _array(npz: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return npz[_key(npz, key, path)]
    except _NPZ_ERRORS as err:
        raise OnnxcarError(f"cannot read array {key!r} of {path}: {err}") from err


def _key(npz: np.lib.npyio.NpzFile, key: str, path: Path) -> str:
    if key not in npz.files:
        raise OnnxcarError(f"{path} has no array {key!r}; it holds: {', '.join(npz.files) or 'nothing'}")
    return key


def _decode(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise OnnxcarError(f"cannot read image {path}: {err}") from err


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)
