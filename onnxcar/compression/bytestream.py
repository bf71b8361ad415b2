"""Byte-level reading and writing of the container: unsigned LEB128 varints, fixed-width integers, bounded reads."""

import struct

from onnxcar.errors import ModelError

_MAX_VARINT_BYTES = 10  # 64 bits


class Corrupt(ModelError):
    """The container's bytes do not describe a valid model; the message says where they stop making sense."""


class Writer:
    """Appends fields to a growing byte string."""

    def __init__(self):
        self.data = bytearray()

    def __len__(self) -> int:
        return len(self.data)

    def varint(self, value: int) -> None:
        if value < 0:
            raise ValueError(f"a varint cannot hold {value}")
        while True:
            byte, value = value & 0x7F, value >> 7
            self.data.append(byte | (0x80 if value else 0))
            if not value:
                return

    def u8(self, value: int) -> None:
        self.data.append(value)

    def u32(self, value: int) -> None:
        self.data += struct.pack("<I", value)

    def raw(self, data: bytes) -> None:
        self.data += data

    def blob(self, data: bytes) -> None:
        """A varint length, then ``data``."""
        self.varint(len(data))
        self.raw(data)


class Reader:
    """Reads fields from ``data``, never past its end: a short or malformed field raises Corrupt."""

    def __init__(self, data: bytes, offset: int = 0):
        self.data, self.offset = memoryview(data), offset

    @property
    def left(self) -> int:
        return len(self.data) - self.offset

    def raw(self, size: int, what: str) -> bytes:
        if size < 0 or size > self.left:
            raise Corrupt(f"{what} needs {size} bytes, {self.left} are left")
        start, self.offset = self.offset, self.offset + size
        return bytes(self.data[start:self.offset])

    def u8(self, what: str) -> int:
        return self.raw(1, what)[0]

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.raw(4, what))[0]

    def varint(self, what: str, limit: int) -> int:
        """A varint no larger than ``limit``."""
        value = 0
        for shift in range(0, 7 * _MAX_VARINT_BYTES, 7):
            byte = self.u8(what)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if value > limit:
                    raise Corrupt(f"{what} is {value}, more than the {limit} allowed")
                if byte == 0 and shift:
                    raise Corrupt(f"{what} is not in its shortest form")
                return value
        raise Corrupt(f"{what} is longer than {_MAX_VARINT_BYTES} bytes")

    def blob(self, what: str) -> bytes:
        return self.raw(self.varint(f"length of {what}", self.left), what)
