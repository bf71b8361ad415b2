"""One weight tensor coded as Deep Compression stores it (Han et al. 2016): a codebook of shared values,
Huffman-coded codebook indices and Huffman-coded relative positions.

Record layout (after the container's tensor index)::

    u8      relative-index width in bits (bits 0-3); bit 7 set: the codebook is float16
    varint  K, codebook entries
    K x 2|4 the codebook, little-endian float16 or float32
    varint  m, entries (kept weights plus fillers)
    varint  n, bytes of the bit stream
    n bytes the bit stream: position code table, value code table, m position codes,
            m value codes, then zero bits up to a byte boundary

Values are symbols 0..K-1 (codebook entries) and K (a filler zero); see ``sparse``.
A weight is zero exactly when its bit pattern is +0.0, so decoding is bit for bit.
"""

from dataclasses import asdict, dataclass

import numpy as np
from bitarray import bitarray

from onnxcar.compression.bytestream import Corrupt, Reader, Writer
from onnxcar.compression.huffman import Code
from onnxcar.compression.sparse import MAX_WIDTH, check_size, from_entries, to_entries
from onnxcar.errors import OnnxcarError

MAX_CODEBOOK = 256  # 8-bit codebook indices
_FLOAT16 = 0x80


@dataclass(frozen=True)
class RecordStats:
    """What one record holds, for the size table (``bytes`` counts every byte of the record but the tensor index)."""

    size: int  # weights in the tensor
    kept: int  # nonzero weights
    entries: int  # kept weights plus fillers
    codebook: int  # shared values
    width: int  # bits of a relative position index before coding
    codebook_bytes: int
    table_bits: int  # both code tables
    position_bits: int  # coded relative positions
    value_bits: int  # coded codebook indices
    stream_bytes: int  # tables and codes, padded to a byte
    bytes: int

    def to_dict(self) -> dict:
        return asdict(self)


def encode_tensor(weights: np.ndarray, width: int, out: Writer, what: str) -> RecordStats:
    """Appends the record of float32 ``weights`` to ``out``; their distinct nonzero values form the codebook."""
    if not 1 <= width <= MAX_WIDTH:
        raise OnnxcarError(f"{what}: relative indices need 1 to {MAX_WIDTH} bits, got {width}")
    patterns = np.ascontiguousarray(weights, dtype=np.float32).reshape(-1).view(np.uint32)
    nonzero = patterns != 0
    codebook = np.unique(patterns[nonzero])
    if len(codebook) > MAX_CODEBOOK:
        raise OnnxcarError(f"{what} holds {len(codebook)} distinct nonzero values; a codebook has at most {MAX_CODEBOOK}")
    values = codebook.view(np.float32)
    half = bool(np.array_equal(values.astype(np.float16).astype(np.float32).view(np.uint32), codebook))
    symbols = np.full(patterns.size, -1, dtype=np.int64)
    symbols[nonzero] = np.searchsorted(codebook, patterns[nonzero])
    gaps, entries = to_entries(symbols, width, filler=len(codebook))
    gap_code = Code.for_counts(np.bincount(gaps, minlength=1 << width))
    value_code = Code.for_counts(np.bincount(entries, minlength=len(codebook) + 1))
    stream = bitarray(endian="big")
    gap_code.write(stream)
    value_code.write(stream)
    table_bits = len(stream)
    stream += gap_code.encode(gaps)
    position_bits = len(stream) - table_bits
    stream += value_code.encode(entries)
    start = len(out)
    out.u8(width | (_FLOAT16 if half else 0))
    out.varint(len(codebook))
    codebook_bytes = (values.astype("<f2") if half else values.astype("<f4")).tobytes()
    out.raw(codebook_bytes)
    out.varint(len(gaps))
    out.blob(stream.tobytes())
    return RecordStats(
        size=patterns.size, kept=int(nonzero.sum()), entries=len(gaps), codebook=len(codebook), width=width,
        codebook_bytes=len(codebook_bytes), table_bits=table_bits, position_bits=position_bits,
        value_bits=len(stream) - table_bits - position_bits, stream_bytes=(len(stream) + 7) // 8,
        bytes=len(out) - start,
    )


def decode_tensor(reader: Reader, size: int, what: str) -> tuple[np.ndarray, RecordStats]:
    """The float32 weights (flat, ``size`` of them) of the record at the reader, and what the record holds;
    Corrupt if it is not a record."""
    start = reader.offset
    flags = reader.u8(f"{what}: flags")
    width = flags & 0x0F
    if flags & ~(0x0F | _FLOAT16) or not 1 <= width <= MAX_WIDTH:
        raise Corrupt(f"{what}: flags {flags:#04x} are not valid")
    count = reader.varint(f"{what}: codebook size", MAX_CODEBOOK)
    dtype = "<f2" if flags & _FLOAT16 else "<f4"
    raw = reader.raw(count * np.dtype(dtype).itemsize, f"{what}: codebook")
    codebook = np.frombuffer(raw, dtype=dtype).astype(np.float32).view(np.uint32)
    if np.any(codebook == 0) or len(np.unique(codebook)) != count:
        raise Corrupt(f"{what}: the codebook holds a zero or a value twice")
    entries = reader.varint(f"{what}: entry count", 4 * reader.left)  # two codes of one bit at least per entry
    stream = reader.blob(f"{what}: bit stream")
    if entries > 4 * len(stream):
        raise Corrupt(f"{what}: {entries} entries cannot fit in {len(stream)} bytes")
    try:
        check_size(entries, size, width)
    except ValueError as err:
        raise Corrupt(f"{what}: {err}") from None
    bits = bitarray(endian="big")
    bits.frombytes(stream)
    try:
        gap_code, table_bits = Code.read(bits, 0, 1 << width)
        value_code, table_bits = Code.read(bits, table_bits, count + 1)
        gaps, position_bits = gap_code.decode(bits[table_bits:], entries)
        values, value_bits = value_code.decode(bits[table_bits + position_bits:], entries)
        offset = table_bits + position_bits + value_bits
        if len(bits) - offset >= 8 or bits[offset:].any():
            raise ValueError("the bit stream does not end where its codes do")
        positions, symbols = from_entries(gaps, values, size, width, filler=count)
    except ValueError as err:
        raise Corrupt(f"{what}: {err}") from None
    patterns = np.zeros(size, dtype=np.uint32)
    patterns[positions] = codebook[symbols]
    stats = RecordStats(
        size=size, kept=len(positions), entries=entries, codebook=count, width=width, codebook_bytes=len(raw),
        table_bits=table_bits, position_bits=position_bits, value_bits=value_bits, stream_bytes=len(stream),
        bytes=reader.offset - start,
    )
    return patterns.view(np.float32), stats
