"""Builders of hostile files shared by the data and CLI tests (issue 13)."""

import struct


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
