"""The compressed container (``.onnxz``): one file from which the runnable model is restored bit for bit.

Layout (integers little-endian, varints unsigned LEB128)::

    4 bytes   magic "ONXZ"
    u8        format version (VERSION)
    u32       CRC-32 of the restored model's bytes
    varint n, n bytes   the model without the coded tensors' data, deflated (zlib, RFC 1950)
    varint    number of coded tensors
    records   varint index of the tensor among the model's initializers, then ``codec``'s record
    u32       CRC-32 of every byte before it

The decoder checks every length against the bytes left and every count against what
those bytes can describe before allocating, and the coded tensors' total size against a
cap (``max_decoded_bytes``, default 1 GiB) before decoding one, so a truncated, corrupted or
hostile file is a one-line ModelError, never a crash, a hang or an unbounded allocation.
Zeros cost nothing to decode; memory peaks near three times the restored model (its bytes,
the protobuf's copy and its serialisation for the checksum). A path that is not a regular
file (a FIFO, /dev/zero) is refused before it is read.
"""

import math
import os
import pathlib
import stat
import zlib
from dataclasses import dataclass

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto

from onnxcar.compression.bytestream import Corrupt, Reader, Writer
from onnxcar.compression.codec import RecordStats, decode_tensor, encode_tensor
from onnxcar.errors import ModelError, OnnxcarError

MAGIC = b"ONXZ"
VERSION = 1
MAX_MODEL_BYTES = 2**31 - 1  # one protobuf: what onnx can serialise
MAX_DECODED_BYTES = 2**30  # the default cap on the coded tensors' restored bytes
_FRAMING = len(MAGIC) + 1 + 4 + 4  # magic, version, the two CRCs


@dataclass(frozen=True)
class Packed:
    """A container's bytes and where they went: per coded tensor (by name) its record, and the rest."""

    data: bytes
    records: dict[str, RecordStats]
    record_bytes: dict[str, int]  # the whole record, its tensor index included
    skeleton_bytes: int  # the deflated model and its length field
    framing_bytes: int  # magic, version, CRCs and the record count


def pack(model: onnx.ModelProto, widths: dict[str, int]) -> Packed:
    """The container of ``model`` with the float32 initializers named in ``widths`` coded, each with its
    relative-index width. Their data must be raw (as onnxcar writes it), so the model restores bit for bit."""
    index = {init.name: i for i, init in enumerate(model.graph.initializer)}
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(model)
    body, records, record_bytes = Writer(), {}, {}
    body.varint(len(widths))
    for name, width in widths.items():
        if name not in index:
            raise OnnxcarError(f"the model has no initializer {name!r} to code")
        init = skeleton.graph.initializer[index[name]]
        if init.data_type != TensorProto.FLOAT or not init.HasField("raw_data"):
            raise OnnxcarError(f"initializer {name!r} is not float32 raw data; only such tensors are coded")
        start = len(body)
        body.varint(index[name])
        weights = np.frombuffer(init.raw_data, dtype="<f4")
        records[name] = encode_tensor(weights, width, body, f"initializer {name!r}")
        record_bytes[name] = len(body) - start
        init.ClearField("raw_data")
    deflated = zlib.compress(skeleton.SerializeToString(), 9)
    head = Writer()
    head.raw(MAGIC)
    head.u8(VERSION)
    head.u32(zlib.crc32(model.SerializeToString()))
    head.blob(deflated)
    skeleton_bytes = len(head) - len(MAGIC) - 1 - 4
    head.raw(bytes(body.data))
    head.u32(zlib.crc32(head.data))
    data = bytes(head.data)
    framing = len(data) - skeleton_bytes - sum(record_bytes.values())
    return Packed(data, records, record_bytes, skeleton_bytes, framing)


def read(path: str | os.PathLike, max_decoded_bytes: int = MAX_DECODED_BYTES) -> onnx.ModelProto:
    """The model held by the container file at ``path``; ModelError if it cannot be read or is not valid."""
    path = pathlib.Path(path)
    try:
        with open(path, "rb", opener=lambda name, flags: os.open(name, flags | getattr(os, "O_NONBLOCK", 0))) as f:
            st = os.fstat(f.fileno())  # of what was opened: a FIFO opens without blocking, then is refused
            if not stat.S_ISREG(st.st_mode):
                raise ModelError(f"cannot read {path}: not a regular file")
            if st.st_size > 2 * MAX_MODEL_BYTES:
                raise ModelError(f"cannot read {path}: larger than any container onnxcar writes")
            data = f.read(2 * MAX_MODEL_BYTES + 1)
    except OSError as err:
        raise ModelError(f"cannot read {path}: {err.strerror or err}") from None
    return unpack(data, str(path), max_decoded_bytes)


def unpack(data: bytes, source: str = "the container", max_decoded_bytes: int = MAX_DECODED_BYTES) -> onnx.ModelProto:
    """The model a container holds; ModelError (one line, naming ``source``) for anything that is not a valid container,
    or whose coded tensors restore to more than ``max_decoded_bytes``."""
    return unpack_with_layout(data, source, max_decoded_bytes)[0]


def unpack_with_layout(data: bytes, source: str = "the container",
                       max_decoded_bytes: int = MAX_DECODED_BYTES) -> tuple[onnx.ModelProto, Packed]:
    """The model a container holds, and where its bytes went (as ``pack`` reports it)."""
    try:
        return _unpack(data, min(max_decoded_bytes, MAX_MODEL_BYTES))
    except Corrupt as err:
        raise ModelError(f"cannot read {source}: {err}", arguments=err.arguments) from None


def _unpack(data: bytes, max_decoded_bytes: int) -> tuple[onnx.ModelProto, Packed]:
    if len(data) < _FRAMING or data[: len(MAGIC)] != MAGIC:
        raise Corrupt("not an onnxcar container (no ONXZ header)")
    if data[len(MAGIC)] != VERSION:
        raise Corrupt(f"container format version {data[len(MAGIC)]} is not supported (this onnxcar reads version {VERSION})")
    if zlib.crc32(data[:-4]) != int.from_bytes(data[-4:], "little"):
        raise Corrupt("checksum mismatch: the file is damaged or truncated")
    reader = Reader(data[:-4], len(MAGIC) + 1)
    expected_crc = reader.u32("model checksum")
    model = _inflate(reader.blob("compressed model"))
    skeleton_bytes = reader.offset - len(MAGIC) - 1 - 4
    initializers = model.graph.initializer
    count = reader.varint("number of coded tensors", len(initializers))
    restored, records, record_bytes = 0, {}, {}
    for _ in range(count):
        start = reader.offset
        position = reader.varint("tensor index", len(initializers) - 1)
        init = initializers[position]
        what = f"initializer {init.name!r}"
        if init.data_type != TensorProto.FLOAT or _holds_data(init) or min(init.dims, default=0) < 0:
            raise Corrupt(f"{what} is not an empty float32 tensor to fill (or is coded twice)")
        size = math.prod(init.dims)
        restored += 4 * size
        if restored > max_decoded_bytes:
            raise Corrupt(f"the coded tensors restore to more than {max_decoded_bytes} bytes (max_decoded_bytes)",
                          arguments=("max_decoded_bytes",))
        weights, records[init.name] = decode_tensor(reader, size, what)
        init.raw_data = weights.astype("<f4", copy=False).tobytes()
        del weights
        record_bytes[init.name] = reader.offset - start
    if reader.left:
        raise Corrupt(f"{reader.left} bytes follow the last record")
    if zlib.crc32(model.SerializeToString()) != expected_crc:
        raise Corrupt("the restored model's checksum differs from the recorded one")
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as err:
        raise Corrupt(f"the restored model fails the ONNX checker: {' '.join(str(err).split())[:200]}") from None
    framing = len(data) - skeleton_bytes - sum(record_bytes.values())
    return model, Packed(data, records, record_bytes, skeleton_bytes, framing)


def _inflate(deflated: bytes) -> onnx.ModelProto:
    """The model in a zlib stream of at most MAX_MODEL_BYTES, parsed."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(deflated, MAX_MODEL_BYTES)
    except zlib.error as err:
        raise Corrupt(f"the compressed model does not inflate ({err})") from None
    if inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
        raise Corrupt("the compressed model is truncated, too large or followed by stray bytes")
    try:
        return onnx.ModelProto.FromString(raw)
    except DecodeError:
        raise Corrupt("the model inside does not parse") from None


def _holds_data(init: TensorProto) -> bool:
    return init.HasField("raw_data") or any(
        len(getattr(init, field)) for field in ("float_data", "int32_data", "int64_data", "double_data", "external_data")
    )
