"""Safe loading and saving of ONNX models.

onnxcar refuses a model path that is not a regular file (a FIFO would block, /dev/zero
never ends), and a model file that is missing, empty, truncated or not ONNX, whose IR
version or default-domain opset is outside what it supports, or that the ONNX checker
rejects. External weights, of dense and sparse tensors alike, must sit inside the model's
folder: an absolute location or one that climbs out with ``..``, a symlink or hard link on
the way, an offset or length that is not a plain integer or runs past the end of the file,
and a span whose length disagrees with the tensor's shape and type are refused before any
weights are read; only the span a tensor needs is read. Every tensor's data must be exactly
as long as its shape and type say.
Outputs: never the input model or a file it reads, an existing file only with ``--force``,
written via a temporary file so a crash leaves the old one intact; over 2 GB, the weights
go to ``<output>.data``.
"""

from __future__ import annotations

import glob
import math
import os
import pathlib
import re
import stat
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import BinaryIO

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto
from onnx.external_data_helper import set_external_data, uses_external_data

from onnxcar.errors import OnnxcarError

SUPPORTED_IR = range(3, 15)
SUPPORTED_OPSET = range(7, 29)  # default domain ("" or "ai.onnx"); others are not checked here

EXTERNAL_DATA_THRESHOLD = 2_000_000_000
"""Models whose protobuf is larger than this many bytes are saved with external data."""

_PROTOBUF_LIMIT = 2**31 - 1
_TEMPORARY_SUFFIX = ".tmp"
_DEFAULT_DOMAINS = ("", "ai.onnx")
_NPY_VERSIONS = ((1, 0), (2, 0), (3, 0))
_PACKED_BITS = {"INT4": 4, "UINT4": 4, "FLOAT4E2M1": 4, "INT2": 2, "UINT2": 2, "FLOAT6E2M3": 6, "FLOAT6E3M2": 6}


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _error(path, reason) -> OnnxcarError:
    """A one-line OnnxcarError about the model file ``path``."""
    return OnnxcarError(f"cannot load {path}: {_one_line(reason)}")


def load_model(path: str | os.PathLike, *, load_external: bool = True) -> onnx.ModelProto:
    """Reads, validates and returns the model at ``path``, with its external data unless told not to."""
    path = pathlib.Path(path)
    model = _parse(path)
    _check_versions(model, path)
    _check_names(model, path)
    tensors = [*_tensors(model), *_sparse_parts(model)]
    external = [t for t in tensors if uses_external_data(t)]
    spans = [_external_span(t, path) for t in external] if load_external else []
    _run_checker(model, path, on_disk=bool(external))
    for tensor, span in zip(external, spans):
        _load_external(tensor, *span, path)
    for tensor in tensors:
        _check_raw_size(tensor, path)
    return model


def _parse(path: pathlib.Path) -> onnx.ModelProto:
    """The ModelProto in ``path``, without external data."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # checked before opening: a FIFO blocks, /dev/zero never ends
            raise _error(path, "Is a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file")
        if st.st_size > _PROTOBUF_LIMIT:
            raise _error(path, "file is larger than 2 GB, so it is not an ONNX protobuf")
        data = path.read_bytes()
    except OSError as err:
        raise _error(path, err.strerror or err) from err
    if not data:
        raise _error(path, "file is empty")
    try:
        model = onnx.ModelProto.FromString(data)
    except DecodeError as err:
        raise _error(path, "not an ONNX model (the protobuf does not parse)") from err
    if not model.HasField("graph"):
        raise _error(path, "not an ONNX model (it has no graph)")
    return model


def _check_names(model: onnx.ModelProto, path: pathlib.Path) -> None:
    """Refuses names, op types and domains that are not valid UTF-8 (protobuf hands them over as bytes)."""
    nodes = list(_nodes(model))
    names = [x for n in nodes for x in (n.name, n.op_type, n.domain, *n.input, *n.output)]
    names += [a.name for n in nodes for a in n.attribute]
    for graph in _graphs(model):
        names += [v.name for v in (*graph.input, *graph.output, *graph.initializer)]
    names += [x for f in model.functions for x in (f.name, f.domain)]
    if any(not isinstance(name, str) for name in names):
        raise _error(path, "a name, op type or domain is not valid UTF-8")


def _check_versions(model: onnx.ModelProto, path: pathlib.Path) -> None:
    """Refuses an IR version or default-domain opset outside SUPPORTED_IR / SUPPORTED_OPSET."""
    ir, ops = SUPPORTED_IR, SUPPORTED_OPSET
    if model.ir_version not in ir:
        raise _error(path, f"IR version {model.ir_version} is not supported ({ir.start} to {ir.stop - 1})")
    for opset in model.opset_import:
        if opset.domain in _DEFAULT_DOMAINS and opset.version not in ops:
            raise _error(path, f"default-domain opset {opset.version} is not supported ({ops.start} to {ops.stop - 1})")


def _run_checker(model: onnx.ModelProto, path: pathlib.Path, *, on_disk: bool) -> None:
    """Runs the ONNX checker; ``on_disk`` checks the file, so external data is looked up next to it, not in the cwd."""
    try:
        onnx.checker.check_model(str(path) if on_disk else model)
    except (onnx.checker.ValidationError, ValueError) as err:
        raise _error(path, f"the ONNX checker rejects it: {err}") from err


def _graphs(model: onnx.ModelProto) -> Iterator[onnx.GraphProto]:
    """The main graph and every subgraph, those inside functions included."""

    def below(nodes) -> Iterator[onnx.GraphProto]:
        for node in nodes:
            for attr in node.attribute:
                for graph in [*([attr.g] if attr.HasField("g") else []), *attr.graphs]:
                    yield graph
                    yield from below(graph.node)

    yield model.graph
    yield from below(model.graph.node)
    for function in model.functions:
        yield from below(function.node)


def _nodes(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    """Every node: of the main graph, its subgraphs and the functions."""
    for graph in _graphs(model):
        yield from graph.node
    for function in model.functions:
        yield from function.node


def _tensors(model: onnx.ModelProto) -> Iterator[TensorProto]:
    """Every dense TensorProto in the model: initializers and tensor attributes, subgraphs and functions included."""
    for graph in _graphs(model):
        yield from graph.initializer
    for node in _nodes(model):
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors


def _sparse_parts(model: onnx.ModelProto) -> Iterator[TensorProto]:
    """The values and indices of every sparse initializer and sparse tensor attribute."""
    sparse = [s for graph in _graphs(model) for s in graph.sparse_initializer]
    for node in _nodes(model):
        for attr in node.attribute:
            sparse += [attr.sparse_tensor] if attr.HasField("sparse_tensor") else []
            sparse += attr.sparse_tensors
    for tensor in sparse:
        yield tensor.values
        yield tensor.indices


def _external_span(tensor: TensorProto, path: pathlib.Path) -> tuple[pathlib.Path, int, int]:
    """Validates a tensor's external-data entry; returns (file, offset, length) without reading the file."""
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    expected = _expected_size(tensor, path)
    try:
        file, size = _external_file(location, path.parent)
        offset = _int_entry(info, "offset", 0)
        length = _int_entry(info, "length", max(size - offset, 0))
        if offset + length > size:
            raise ValueError(f"offset {offset} + length {length} is past the end of the file ({size} bytes)")
        if length != expected:
            raise ValueError(f"holds {length} bytes, its shape and type need {expected}")
    except (OSError, ValueError) as err:
        raise _error(path, f"tensor {tensor.name!r}, external data {location!r}: {err}") from err
    return file, offset, length


def _external_file(location: str, folder: pathlib.Path) -> tuple[pathlib.Path, int]:
    """The regular file ``location`` inside ``folder``, reached without links, and its size."""
    parts = [p for p in re.split(r"[\\/]", location) if p not in ("", ".")]
    if not parts or location[0] in "/\\" or ":" in location or ".." in parts or "\0" in location:
        raise ValueError("not a relative path inside the model's folder")
    file = folder
    for part in parts:
        file = file / part
        if stat.S_ISLNK(os.lstat(file).st_mode):
            raise ValueError(f"{file} is a symbolic link")
    st = os.lstat(file)
    if not stat.S_ISREG(st.st_mode):
        raise ValueError("not a regular file")
    if st.st_nlink > 1:
        raise ValueError("the file has hard links")
    return file, st.st_size


def _int_entry(info: dict[str, str], key: str, default: int) -> int:
    """The non-negative integer ``info[key]``, or ``default`` when absent."""
    if key not in info:
        return default
    if not re.fullmatch(r"[0-9]{1,20}", info[key]):
        raise ValueError(f"{key} {info[key]!r} is not a non-negative integer")
    return int(info[key])


def _load_external(tensor: TensorProto, file: pathlib.Path, offset: int, length: int, path: pathlib.Path) -> None:
    """Moves the validated span of ``file`` into the tensor's raw_data."""
    try:
        with open(file, "rb") as f:
            f.seek(offset)
            data = f.read(length)
    except OSError as err:
        raise _error(path, err) from err
    if len(data) != length:
        raise _error(path, f"{file} changed while it was read")
    tensor.raw_data = data
    tensor.data_location = TensorProto.DEFAULT
    del tensor.external_data[:]


def _expected_size(tensor: TensorProto, path: pathlib.Path) -> int:
    """The bytes of raw data the tensor's dims and data type call for."""
    try:
        np_dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
    except KeyError:
        raise _error(path, f"tensor {tensor.name!r} has unknown data type {tensor.data_type}") from None
    bits = _PACKED_BITS.get(TensorProto.DataType.Name(tensor.data_type), 8 * np_dtype.itemsize)
    return (math.prod(tensor.dims) * bits + 7) // 8


def _check_raw_size(tensor: TensorProto, path: pathlib.Path) -> None:
    """Refuses raw_data whose length disagrees with the tensor's dims and data type."""
    if not tensor.HasField("raw_data"):
        return
    expected = _expected_size(tensor, path)
    if len(tensor.raw_data) != expected:
        raise _error(path, f"tensor {tensor.name!r} holds {len(tensor.raw_data)} bytes, its shape and type need {expected}")


def check_output_path(path: str | os.PathLike, *, force: bool, source: str | os.PathLike | None = None) -> pathlib.Path:
    """Refuses an output that is the input model ``source`` or its external data, exists (unless ``force``),
    is a folder or has no folder."""
    out = pathlib.Path(path)
    if not out.parent.is_dir():
        raise OnnxcarError(f"cannot write {out}: folder {out.parent} does not exist")
    if source is not None and _same_file(out, pathlib.Path(source)):
        raise OnnxcarError(f"cannot write {out}: it is the input model; choose another output")
    if source is not None and out.exists() and any(_same_file(out, f) for f in _external_files(pathlib.Path(source))):
        raise OnnxcarError(f"cannot write {out}: it is external data of the input model {source}; choose another output")
    if out.is_dir():
        raise OnnxcarError(f"cannot write {out}: it is a folder")
    if out.exists() and not force:
        raise OnnxcarError(f"cannot write {out}: it exists; overwrite it only by force", arguments=("force",))
    return out


def _same_file(a: pathlib.Path, b: pathlib.Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except (OSError, ValueError):  # e.g. a NUL byte in a location
        return False


def _external_files(model_path: pathlib.Path) -> list[pathlib.Path]:
    """The external-data files the model at ``model_path`` names; none when it does not parse (load_model says why)."""
    try:
        model = _parse(model_path)
    except OnnxcarError:
        return []
    tensors = [*_tensors(model), *_sparse_parts(model)]
    locations = {e.value for t in tensors if uses_external_data(t) for e in t.external_data if e.key == "location"}
    return [model_path.parent / location for location in sorted(locations)]


def save_model(
    model: onnx.ModelProto,
    path: str | os.PathLike,
    *,
    force: bool = False,
    source: str | os.PathLike | None = None,
) -> pathlib.Path:
    """Writes ``model`` atomically to ``path``, weights in ``<path>.data`` when over the threshold."""
    out = check_output_path(path, force=force, source=source)
    if any(uses_external_data(t) for t in (*_tensors(model), *_sparse_parts(model))):
        raise OnnxcarError(f"cannot write {out}: the model's external data was not loaded")
    try:
        if model.ByteSize() > EXTERNAL_DATA_THRESHOLD:
            model = _save_weights(model, out, force, source)
        atomic_write(out, lambda f: _serialize(model, f))
    except OSError as err:
        raise OnnxcarError(f"cannot write {out}: {err.strerror or err}") from err
    return out


def _save_weights(
    model: onnx.ModelProto, out: pathlib.Path, force: bool, source: str | os.PathLike | None
) -> onnx.ModelProto:
    """Writes all raw tensor data to ``<out>.data``; returns a copy of the model that refers to it."""
    data_path = check_output_path(out.with_name(out.name + ".data"), force=force, source=source)
    light = onnx.ModelProto()
    light.CopyFrom(model)

    def write(f: BinaryIO) -> None:
        for tensor in _tensors(light):
            if tensor.HasField("raw_data"):
                set_external_data(tensor, data_path.name, f.tell(), len(tensor.raw_data))
                f.write(tensor.raw_data)
                tensor.ClearField("raw_data")

    atomic_write(data_path, write)
    return light


def _serialize(model: onnx.ModelProto, f: BinaryIO) -> None:
    f.write(model.SerializeToString())


def atomic_write(path: pathlib.Path, write: Callable[[BinaryIO], None]) -> None:
    """Runs ``write`` on a temporary file next to ``path``, fsyncs it, then renames it over ``path``."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{_TEMPORARY_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temporaries(path: pathlib.Path) -> None:
    """Deletes the temporary files that writes of ``path`` killed mid-way left behind."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{8}}{re.escape(_TEMPORARY_SUFFIX)}")
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*{_TEMPORARY_SUFFIX}"):
        if pattern.fullmatch(stale.name):
            stale.unlink(missing_ok=True)


SHAPE_ONLY_ELEMENTS = 4096
"""Initializers larger than this reach shape inference as typed inputs, without their data."""


def without_weight_data(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` for shape inference: its initializers of more than
    :data:`SHAPE_ONLY_ELEMENTS` values become typed graph inputs, so inference reads what it needs
    (shape tensors are small and keep their values) without copying the weights in and out of C++.
    Its IR version is at least 4, where an initializer need not be an input: inference under IR 3
    ignores one that is not (as folding leaves the constants it makes)."""
    light = onnx.ModelProto()
    _copy_fields(model, light, skip="graph")
    light.ir_version = max(model.ir_version, 4)
    _copy_fields(model.graph, light.graph, skip="initializer")
    graph, inputs = light.graph, {value.name for value in model.graph.input}
    for tensor in model.graph.initializer:
        if math.prod(tensor.dims) <= SHAPE_ONLY_ELEMENTS:
            graph.initializer.append(tensor)
        elif tensor.name not in inputs:
            graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims))
    return light


def infer_shapes(model: onnx.ModelProto, failure: str = "shape inference failed", *,
                 in_place: bool = False) -> onnx.ModelProto:
    """``model`` with the shapes strict ONNX inference (with data propagation) finds, inferred on
    :func:`without_weight_data`: a copy, or ``model`` itself with ``in_place`` (its weights are
    then not copied at all). A failure is OnnxcarError(``failure: why``)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(without_weight_data(model), strict_mode=True, data_prop=True)
    except Exception as err:  # onnx raises several unrelated types here
        raise OnnxcarError(f"{failure}: {first_line(err)}") from None
    if in_place:
        for field in ("node", "output", "value_info"):  # nodes too: inference fills their subgraphs' shapes
            del getattr(model.graph, field)[:]
            getattr(model.graph, field).extend(getattr(inferred.graph, field))
        return model
    del inferred.graph.input[len(model.graph.input):]  # the inputs that stood in for weights
    del inferred.graph.initializer[:]
    inferred.graph.initializer.extend(model.graph.initializer)
    return inferred


def _copy_fields(source, target, skip: str) -> None:
    """Copies every set field of the protobuf message ``source`` but ``skip`` into ``target``."""
    for field, value in source.ListFields():
        if field.name == skip:
            continue
        slot = getattr(target, field.name)
        if hasattr(slot, "extend"):  # a repeated field
            slot.extend(value)
        elif field.message_type is not None:
            slot.CopyFrom(value)
        else:
            setattr(target, field.name, value)


def first_line(err: Exception) -> str:
    """The first line of an exception's message (its type's name when it has none), at most 300 characters."""
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]


def load_npz(path: str | os.PathLike, *keys: str) -> dict[str, np.ndarray]:
    """The arrays ``keys`` (all when none are named) of an .npz file, loaded without pickle."""
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise OnnxcarError(f"cannot load {path}: not an .npz archive")
        with archive:
            missing = [k for k in keys if k not in archive.files]
            if missing:
                raise OnnxcarError(f"{path} has no array {missing[0]!r} (it has {', '.join(archive.files) or 'none'})")
            return {k: read_npy(archive, k) for k in keys or archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise OnnxcarError(f"cannot load {path}: {_one_line(err)}") from err


def npy_header(npz: np.lib.npyio.NpzFile, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of array ``key`` of an open .npz, from its header; ValueError unless the header is
    well formed, of a supported version, without Python objects, and the member holds exactly the bytes it declares."""
    name = f"{key}.npy"
    if name not in npz.zip.namelist():
        raise ValueError("it is not .npy data")
    with npz.zip.open(name) as f:
        version = np.lib.format.read_magic(f)
        if version not in _NPY_VERSIONS:
            raise ValueError(f"format version {version} is not supported")
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
        held = npz.zip.getinfo(name).file_size - f.tell()
    if dtype.hasobject:
        raise ValueError("it holds Python objects, which are never unpickled")
    declared = math.prod(shape) * dtype.itemsize
    if declared != held:
        raise ValueError(f"its header declares shape {shape} ({declared} bytes), the file holds {held}")
    return shape, dtype


def read_npy(npz: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    """Array ``key`` of an open .npz, read only after npy_header has checked its header against its size."""
    npy_header(npz, key)
    with npz.zip.open(f"{key}.npy") as f:
        return np.lib.format.read_array(f, allow_pickle=False)
