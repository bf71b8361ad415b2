"""Canonical Huffman codes (Huffman 1952; canonical form as in DEFLATE, RFC 1951), run by bitarray's C routines.

A code is given by each symbol's code length alone, so a decoder needs only the lengths:
``Code.write`` stores them in a few bits each, ``Code.read`` restores the code.
"""

from itertools import islice

import numpy as np
from bitarray import bitarray
from bitarray.util import ba2int, canonical_decode, canonical_huffman, int2ba

MAX_LENGTH = 31  # bitarray's canonical_decode takes codes of at most 31 bits
LENGTH_FIELD = 5  # bits holding a table's longest code length (0 to 31)


class Code:
    """The canonical prefix code whose symbol ``s`` has ``lengths[s]`` bits (0: ``s`` never occurs).

    Raises ValueError for lengths that are no prefix code (over-full, or longer than MAX_LENGTH).
    """

    def __init__(self, lengths):
        self.lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        if self.lengths.size and (self.lengths.min() < 0 or self.lengths.max() > MAX_LENGTH):
            raise ValueError(f"code lengths must lie in 0..{MAX_LENGTH}")
        used = np.flatnonzero(self.lengths)
        if sum(1 << (MAX_LENGTH - int(n)) for n in self.lengths[used]) > 1 << MAX_LENGTH:
            raise ValueError("the code lengths over-fill the code space (Kraft sum above 1)")
        order = used[np.lexsort((used, self.lengths[used]))]  # by length, then by symbol
        self._symbols = order.tolist()
        self._count = np.bincount(self.lengths[used], minlength=int(self.lengths.max(initial=0)) + 1).tolist()
        self._count[0] = 0
        self._codes, code, previous = {}, 0, 0
        for symbol in self._symbols:
            length = int(self.lengths[symbol])
            code <<= length - previous
            self._codes[symbol] = int2ba(code, length, endian="big")
            code, previous = code + 1, length

    @classmethod
    def for_counts(cls, counts) -> "Code":
        """The Huffman code for symbol frequencies ``counts``, at most MAX_LENGTH bits long.

        Should Huffman's lengths exceed the limit (frequencies that grow like Fibonacci
        numbers over millions of symbols), the frequencies are halved until they fit.
        """
        counts = np.asarray(counts, dtype=np.int64)
        freq = {int(s): int(counts[s]) for s in np.flatnonzero(counts)}
        lengths = np.zeros(len(counts), dtype=np.int64)
        while freq:
            codes = canonical_huffman(freq)[0]
            lengths[list(codes)] = [len(c) for c in codes.values()]
            if lengths.max() <= MAX_LENGTH:
                break
            freq = {s: (f + 1) // 2 for s, f in freq.items()}
        return cls(lengths)

    def encode(self, symbols: np.ndarray) -> bitarray:
        bits = bitarray(endian="big")
        if len(symbols):
            bits.encode(self._codes, np.asarray(symbols).tolist())
        return bits

    def decode(self, bits: bitarray, count: int) -> tuple[np.ndarray, int]:
        """The first ``count`` symbols coded in ``bits``, and the number of bits they take.

        Raises ValueError when ``bits`` ends first or holds a word that is no code.
        """
        if count == 0:
            return np.zeros(0, dtype=np.int64), 0
        if not self._symbols:
            raise ValueError("symbols to decode, but the code is empty")
        symbols = np.fromiter(islice(canonical_decode(bits, self._count, self._symbols), count), np.int64, count)
        return symbols, int(self.lengths[symbols].sum())

    def bits(self, symbols: np.ndarray) -> int:
        """How many bits ``symbols`` take in this code."""
        return int(self.lengths[symbols].sum())

    def write(self, out: bitarray) -> None:
        """Appends the table: the longest length in LENGTH_FIELD bits, then each symbol's length in as few bits as it needs."""
        longest = int(self.lengths.max(initial=0))
        out += int2ba(longest, LENGTH_FIELD, endian="big")
        width = longest.bit_length()
        if width:
            out += bitarray(((self.lengths[:, None] >> np.arange(width - 1, -1, -1)) & 1).ravel().tolist(), endian="big")

    @classmethod
    def read(cls, bits: bitarray, offset: int, alphabet: int) -> tuple["Code", int]:
        """The code of ``alphabet`` symbols whose table starts at bit ``offset``, and the offset after the table."""
        if offset + LENGTH_FIELD > len(bits):
            raise ValueError("the bit stream ends inside a code table")
        longest = ba2int(bits[offset:offset + LENGTH_FIELD])
        width, offset = longest.bit_length(), offset + LENGTH_FIELD
        end = offset + alphabet * width
        if end > len(bits):
            raise ValueError("the bit stream ends inside a code table")
        field = np.array(bits[offset:end].tolist(), dtype=np.int64).reshape(alphabet, width)
        lengths = field @ (1 << np.arange(width - 1, -1, -1, dtype=np.int64)) if width else np.zeros(alphabet, np.int64)
        if int(lengths.max(initial=0)) != longest:
            raise ValueError("a code table's longest length is not the one it declares")
        return cls(lengths), end
