"""Readers for every data format behind one protocol, chosen by the path."""

import os
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator, Protocol, TypeVar

import numpy as np
from PIL import Image

from onnxcar.data.archive import hidden, list_tree, member_name, read_members
from onnxcar.data.spec import DataSpec, Preprocess
from onnxcar.data.transforms import resize_crop, resize_crop_batch, to_nhwc
from onnxcar.errors import DataError, OnnxcarError
from onnxcar.io import npy_header, read_npy

T = TypeVar("T")

_ARCHIVES = (".tar", ".tar.gz", ".tgz")
_NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_SIXTEEN_BIT_FORMATS = ("PNG", "PPM")  # their mode-I images hold 16-bit values (Pillow scales a PGM's maxval to 16 bits)


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
        return ArchiveSource(path, spec.labels_key is not None, spec.archive_max_files, spec.archive_max_bytes)
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
            raise DataError(
                f"images in {self.path} are {images.dtype}, not uint8 pixels: store uint8 pixels, "
                "or use preprocess none for already preprocessed arrays", arguments=("preprocess",)
            )
        return resize_crop_batch(to_nhwc(images), pre)


class FolderSource:
    """An image tree ``root/<class>/<image>``: classes and files in sorted order, label = class index."""

    def __init__(self, root: Path, labelled: bool):
        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not hidden(p.name))
        if not self.classes:
            raise OnnxcarError(f"no class folders in {root}: expected {root}/<class>/<image files>")
        found = [sorted(_files_below(root / name)) for name in self.classes]
        self.files: list[Path] = [f for files in found for f in files]
        self.labels = _labels(found) if labelled else None

    def __len__(self) -> int:
        return len(self.files)

    def read(self, index: np.ndarray, pre: Preprocess) -> np.ndarray:
        files = [self.files[i] for i in index]
        return _stack([resize_crop(_decode(f, f), pre) for f in files], files)


class ArchiveSource:
    """An image tree in a .tar/.tar.gz/.tgz, read in place: classes and files in sorted order, label = class index."""

    def __init__(self, path: Path, labelled: bool, max_files: int, max_bytes: int):
        self.path = path
        self.tree = list_tree(path, max_files, max_bytes)
        self.classes = self.tree.classes
        if not self.classes:
            raise OnnxcarError(f"no class folders in {path}: expected <class>/<image files> inside it")
        self.members = [m for members in self.tree.files for m in members]
        self.labels = _labels(self.tree.files) if labelled else None

    def __len__(self) -> int:
        return len(self.members)

    def read(self, index: np.ndarray, pre: Preprocess) -> np.ndarray:
        members = [self.members[i] for i in index]
        pixels = read_members(self.path, self.tree, members, lambda file, name: resize_crop(_decode(file, name), pre))
        return _stack(pixels, [member_name(self.path, m) for m in members])


def _labels(files_by_class: list[list]) -> np.ndarray:
    """Class index of every file, classes in order."""
    return np.repeat(np.arange(len(files_by_class), dtype=np.int64), [len(files) for files in files_by_class])


def _stack(pixels: list[np.ndarray], names: list) -> np.ndarray:
    """One array of equally sized images; a clear error naming two that differ."""
    odd = next((i for i, p in enumerate(pixels) if p.shape != pixels[0].shape), None)
    if odd is not None:
        (h0, w0), (h1, w1) = pixels[0].shape[:2], pixels[odd].shape[:2]
        raise DataError(
            f"images differ in size after preprocessing: {names[0]} is {w0}x{h0}, {names[odd]} is {w1}x{h1}; "
            "set resize and crop", arguments=("resize", "crop")
        )
    return np.stack(pixels)


def _files_below(folder: Path) -> Iterator[Path]:
    """The visible files under ``folder``, at any depth, without recursion; linked folders are not entered."""
    stack = [folder]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if hidden(entry.name):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file():
                    yield Path(entry.path)


def npz_dtype(path: Path, key: str) -> np.dtype:
    """The dtype of one array in a .npz, read from its header without loading it."""
    with _open_npz(path) as npz:
        return _member(npz, key, path, npy_header)[1]


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
    array = _member(npz, key, path, read_npy)
    if array.ndim == 0:
        raise OnnxcarError(f"array {key!r} of {path} is a single value (0-d); expected one entry per image")
    return array


def _member(npz: np.lib.npyio.NpzFile, key: str, path: Path, read: Callable[[np.lib.npyio.NpzFile, str], T]) -> T:
    """``read(npz, key)``, its failures turned into one-line errors."""
    _key(npz, key, path)
    try:
        return read(npz, key)
    except _NPZ_ERRORS as err:
        raise OnnxcarError(f"cannot read array {key!r} of {path}: {err}") from err


def _key(npz: np.lib.npyio.NpzFile, key: str, path: Path) -> str:
    if key not in npz.files:
        raise OnnxcarError(f"{path} has no array {key!r}; it holds: {', '.join(npz.files) or 'nothing'}")
    return key


def _decode(file: Path | IO[bytes], name) -> Image.Image:
    """The image in ``file`` as 8-bit RGB: 16-bit images scaled (v / 257, rounded), 32-bit and float ones refused."""
    try:
        with Image.open(file) as image:
            if image.mode in _SIXTEEN_BIT_MODES or (image.mode == "I" and image.format in _SIXTEEN_BIT_FORMATS):
                wide = np.asarray(image).astype(np.uint32)
                return Image.fromarray(((wide + 128) // 257).astype(np.uint8)).convert("RGB")
            if image.mode.startswith(("I", "F")):
                raise OnnxcarError(
                    f"cannot read image {name}: mode {image.mode} pixels have no fixed range; store 8- or 16-bit images"
                )
            return image.convert("RGB")
    except OnnxcarError:
        raise
    except Exception as err:  # Pillow's decoders raise many types on crafted files (a DDS: NotImplementedError)
        raise OnnxcarError(f"cannot read image {name}: {err or type(err).__name__}") from err
