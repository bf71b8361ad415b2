"""Builders of hostile files shared by the data, container and CLI tests (issues 13 and 23)."""

import os
import pathlib
import struct
import zlib

import numpy as np
from bitarray import bitarray
from onnx import TensorProto, helper


def npy_raw(header: str, data: bytes = b"") -> bytes:
    """An .npy file of format 1.0 with ``header`` as its header text, then ``data``."""
    text = header.encode("latin1")
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


def dds() -> bytes:
    """A DDS header with a pixel format Pillow does not implement (it raises NotImplementedError)."""
    header = struct.pack("<7I", 124, 0x1007, 4, 4, 0, 0, 0) + bytes(44)
    pixel_format = struct.pack("<2I4s5I", 32, 0x4, b"ZZZZ", 0, 0, 0, 0, 0)
    return b"DDS " + header + pixel_format + struct.pack("<5I", 0x1000, 0, 0, 0, 0) + bytes(64)


def filler_bomb(entries: int, width: int = 8) -> bytes:
    """A valid-looking container whose one tensor is ``entries`` filler entries of 2 bits each: about
    ``entries * 2**width`` zero floats declared by ``entries / 4`` bytes."""
    from onnxcar.compression.bytestream import Writer
    from onnxcar.compression.container import MAGIC, VERSION
    from onnxcar.compression.huffman import Code

    size = entries << width
    weights = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[size])
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [size])
    graph = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "bomb", [], [output], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    gaps, values = np.full(entries, (1 << width) - 1), np.full(entries, 1)  # every entry a filler
    gap_code = Code.for_counts(np.bincount(gaps, minlength=1 << width))
    value_code = Code.for_counts(np.bincount(values, minlength=2))
    stream = bitarray(endian="big")
    gap_code.write(stream)
    value_code.write(stream)
    stream += gap_code.encode(gaps) + value_code.encode(values)
    out = Writer()
    out.raw(MAGIC)
    out.u8(VERSION)
    out.u32(0)
    out.blob(zlib.compress(model.SerializeToString()))
    out.varint(1)
    out.varint(0)  # the tensor's index, then its record: width, a one-value codebook, the entries
    out.u8(width)
    out.varint(1)
    out.raw(np.float32(1).tobytes())
    out.varint(entries)
    out.blob(stream.tobytes())
    body = bytes(out.data)
    return body + zlib.crc32(body).to_bytes(4, "little")


def special_file(folder: pathlib.Path, kind: str, name: str) -> pathlib.Path:
    """A path that is no regular file: a FIFO named ``name`` in ``folder`` (``kind`` "fifo"), or the
    device ``kind`` itself (e.g. "/dev/zero")."""
    if kind != "fifo":
        return pathlib.Path(kind)
    path = folder / name
    os.mkfifo(path)
    return path
