"""Sparse positions as relative indices of a fixed width, with filler entries where a gap overflows (Han et al. 2016).

A flat tensor of ``size`` entries becomes a list of entries ``(gap, symbol)``: ``gap`` zeros,
then one position holding ``symbol``. Gaps have ``width`` bits. A run of zeros longer
than the widest gap is bridged by filler entries ``(2**width - 1, FILLER)``, each covering
``2**width`` zeros; trailing zeros are bridged the same way until fewer than ``2**width``
are left, which the decoder fills in. The encoding of a tensor is therefore unique, and
the tensor can be at most ``(entries + 1) * 2**width - 1`` long, which a decoder checks
(``check_size``) before it reads the entries.
"""

import numpy as np

MAX_WIDTH = 8


def to_entries(symbols: np.ndarray, width: int, filler: int) -> tuple[np.ndarray, np.ndarray]:
    """(gaps, entry symbols) of a flat array of symbols in which -1 marks a zero."""
    span = 1 << width
    positions = np.flatnonzero(symbols >= 0)
    starts = np.concatenate([[0], positions[:-1] + 1]) if positions.size else positions
    runs = positions - starts
    fillers = runs // span
    end = int(positions[-1]) + 1 if positions.size else 0
    tail = (symbols.size - end) // span
    count = int(fillers.sum()) + positions.size + tail
    gaps = np.full(count, span - 1, dtype=np.int64)
    values = np.full(count, filler, dtype=np.int64)
    slots = np.cumsum(fillers + 1) - 1
    gaps[slots] = runs % span
    values[slots] = symbols[positions]
    return gaps, values


def check_size(entries: int, size: int, width: int) -> None:
    """Raises ValueError unless ``entries`` entries of ``width``-bit gaps can describe ``size`` positions."""
    if size >= (entries + 1) << width:
        raise ValueError(f"{entries} entries of {width}-bit gaps cannot describe {size} positions")


def from_entries(gaps: np.ndarray, values: np.ndarray, size: int, width: int,
                 filler: int) -> tuple[np.ndarray, np.ndarray]:
    """The positions and symbols of the nonzero weights of the ``size``-long tensor that ``to_entries`` turned
    into these entries: sparse, so decoding allocates nothing per zero.

    Raises ValueError for entries that no tensor of ``size`` positions encodes to.
    """
    span = 1 << width
    check_size(len(gaps), size, width)
    if len(gaps) != len(values) or (len(gaps) and (gaps.min() < 0 or gaps.max() >= span)):
        raise ValueError("gaps out of range")
    if np.any((values == filler) & (gaps != span - 1)):
        raise ValueError("a filler entry that does not bridge a full gap")
    positions = np.cumsum(gaps + 1) - 1
    end = int(positions[-1]) + 1 if len(positions) else 0
    if end > size or size - end >= span:
        raise ValueError(f"the entries cover {end} of {size} positions")
    real = values != filler
    return positions[real], values[real]
