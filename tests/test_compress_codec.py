"""Entropy coding of sparse shared weights: Huffman tables, relative positions with fillers, whole records."""

import numpy as np
import pytest
from bitarray import bitarray
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxcar.compression.bytestream import Corrupt, Reader, Writer
from onnxcar.compression.codec import MAX_CODEBOOK, decode_tensor, encode_tensor
from onnxcar.compression.huffman import MAX_LENGTH, Code
from onnxcar.compression.sparse import from_entries, to_entries
from onnxcar.errors import OnnxcarError


def round_trip(weights: np.ndarray, width: int):
    out = Writer()
    stats = encode_tensor(weights, width, out, "w")
    reader = Reader(bytes(out.data))
    back, decoded = decode_tensor(reader, weights.size, "w")
    assert reader.left == 0 and stats.bytes == len(out) and decoded == stats
    return back, stats


@st.composite
def sparse_quantized(draw):
    """A float32 tensor whose nonzero values come from a small codebook (fp16-exact or not, -0.0 possible)."""
    size = draw(st.integers(0, 3000))
    k = draw(st.integers(1, MAX_CODEBOOK))
    seed = draw(st.integers(0, 2**32 - 1))
    density = draw(st.sampled_from([0.0, 0.001, 0.05, 0.3, 0.9, 1.0]))
    rng = np.random.default_rng(seed)
    codebook = rng.standard_normal(k).astype(np.float32)
    if draw(st.booleans()):
        codebook = codebook.astype(np.float16).astype(np.float32)
    if draw(st.booleans()):
        codebook[0] = -0.0
    kept = rng.random(size) < density
    weights = np.where(kept, codebook[rng.integers(0, k, size)], np.float32(0)).astype(np.float32)
    return weights, draw(st.integers(1, 8))


@settings(max_examples=150, deadline=None)
@given(sparse_quantized())
def test_records_round_trip_bit_for_bit(case):
    weights, width = case
    back, stats = round_trip(weights, width)
    assert np.array_equal(back.view(np.uint32), weights.view(np.uint32))
    assert stats.kept == int(np.count_nonzero(weights.view(np.uint32)))
    assert stats.entries >= stats.kept


@pytest.mark.parametrize("weights, width, entries", [
    (np.zeros(0, np.float32), 4, 0),  # empty layer
    (np.zeros(100, np.float32), 4, 6),  # all zero: 6 fillers of 16 bridge 96, 4 trailing zeros are implied
    (np.array([0.5], np.float32), 4, 1),  # one weight
    (np.array([0.0] * 15 + [0.25], np.float32), 4, 1),  # the widest gap that needs no filler
    (np.array([0.0] * 16 + [0.25], np.float32), 4, 2),  # one zero more: a filler
    (np.array([0.0] * 40 + [0.25] + [0.0] * 40, np.float32), 2, 21),  # gaps ten times the widest, both sides
])
def test_edge_cases_round_trip(weights, width, entries):
    back, stats = round_trip(weights, width)
    assert np.array_equal(back.view(np.uint32), weights.view(np.uint32))
    assert stats.entries == entries


def test_fillers_bridge_long_gaps_and_the_tail():
    symbols = np.array([-1] * 37 + [3] + [-1] * 20 + [1], dtype=np.int64)
    gaps, values = to_entries(symbols, width=3, filler=9)
    assert gaps.tolist() == [7, 7, 7, 7, 5, 7, 7, 4]
    assert values.tolist() == [9, 9, 9, 9, 3, 9, 9, 1]
    positions, kept = from_entries(gaps, values, len(symbols), 3, 9)
    assert positions.tolist() == np.flatnonzero(symbols >= 0).tolist() and kept.tolist() == [3, 1]


@pytest.mark.parametrize("gaps, values, size, error", [
    ([3], [0], 100, "cannot describe"),  # a tail longer than a filler's span was left out
    ([3], [0], 3, "cover 4 of 3"),  # past the end
    ([2], [9], 10, "filler entry"),  # a filler that bridges less than a full gap
    ([8], [0], 12, "out of range"),
])
def test_entries_that_no_tensor_encodes_to_are_refused(gaps, values, size, error):
    with pytest.raises(ValueError, match=error):
        from_entries(np.array(gaps), np.array(values), size, 3, 9)


def test_huffman_lengths_stay_within_the_decoder_limit():
    fibonacci = [1, 1]
    while len(fibonacci) < 45:
        fibonacci.append(fibonacci[-1] + fibonacci[-2])
    code = Code.for_counts(np.array(fibonacci))
    assert code.lengths.max() <= MAX_LENGTH
    symbols = np.arange(45)
    decoded, used = code.decode(code.encode(symbols), 45)
    assert decoded.tolist() == symbols.tolist() and used == code.bits(symbols)


@pytest.mark.parametrize("counts", [[0, 0, 0], [0, 7, 0], [5, 1, 1, 0, 30], [1] * 257])
def test_code_tables_round_trip(counts):
    code = Code.for_counts(np.array(counts))
    bits = bitarray("101", endian="big")
    code.write(bits)
    back, end = Code.read(bits, 3, len(counts))
    assert back.lengths.tolist() == code.lengths.tolist() and end == len(bits)


@pytest.mark.parametrize("lengths", [[1, 1, 1], [0, 32], [-1, 1]])
def test_lengths_that_are_no_prefix_code_are_refused(lengths):
    with pytest.raises(ValueError):
        Code(lengths)


def test_too_many_distinct_values_are_refused():
    with pytest.raises(OnnxcarError, match="at most 256"):
        round_trip(np.arange(1, 300, dtype=np.float32), 4)


@pytest.mark.parametrize("mutate, error", [
    (lambda b: b[:-1], "needs"),  # truncated stream
    (lambda b: bytes([b[0] | 0x40]) + b[1:], "flags"),
    (lambda b: b[:1] + bytes([0x80] * 11) + b[2:], "longer than"),  # an endless varint
])
def test_damaged_records_raise_corrupt(mutate, error):
    out = Writer()
    encode_tensor(np.array([0, 1.5, 0, -2.0] * 50, np.float32), 4, out, "w")
    with pytest.raises(Corrupt, match=error):
        decode_tensor(Reader(mutate(bytes(out.data))), 200, "w")


def test_a_huge_declared_size_is_refused_before_allocating():
    out = Writer()
    encode_tensor(np.array([1.0], np.float32), 4, out, "w")
    with pytest.raises(Corrupt, match="cannot describe"):
        decode_tensor(Reader(bytes(out.data)), 2**40, "w")
