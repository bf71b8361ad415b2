"""Shards of candidate evaluation: (candidates, image chunk) pairs that any worker runs alone.

A probe's suffix scores candidates on cached prefix tensors (see ``surgery.probe``). One call
feeds a block of candidates on a chunk of images; the call's inputs are rebuilt from the cache,
the mask row and the block, so a worker that holds the suffix, the cache and the targets needs
nothing else per shard. Local and distributed backends run the same shards, so they compute
the same numbers.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from onnxcar.surgery.linear import CANDIDATE_INPUT
from onnxcar.surgery.probe import MASK_INPUT, Probe

REDUCTIONS = ("outputs", "outcomes", "loss", "margin")  # loss, margin: outcomes with that tie-break value


@dataclass(frozen=True)
class Layout:
    """How a suffix takes its feeds: the mask width, and, for the rank-1 suffix, the one source
    tensor fed once per image (the others are tiled per candidate)."""

    channels: int
    linear: bool
    untiled: str | None

    @classmethod
    def of(cls, probe: Probe) -> "Layout":
        return cls(probe.channels, probe.linear, probe.sources[0][0] if probe.linear else None)


@dataclass(frozen=True)
class Shard:
    """Candidates ``block`` (channel indices; -1: none removed) on samples ``rows``."""

    block: np.ndarray
    rows: np.ndarray


def plan(candidates: np.ndarray, samples: np.ndarray, batch_size: int) -> list[tuple[int, int, Shard]]:
    """The calls that score ``candidates`` on ``samples``, each of at most ``batch_size`` rows, with
    the position of each in the [candidates, samples] result."""
    count = len(candidates)
    images = min(len(samples), max(1, batch_size // count))
    per_call = max(1, batch_size // images)
    return [(first, start, Shard(candidates[first : first + per_call], samples[start : start + images]))
            for start in range(0, len(samples), images) for first in range(0, count, per_call)]


def reduction(task, kind: str) -> Callable[[list[np.ndarray], np.ndarray], np.ndarray]:
    """What a shard returns per row of the model's outputs: the task's view of them, the outcomes, or
    outcomes and a tie-break value."""
    if kind == "outputs":
        return lambda outputs, targets: task.view(outputs)
    if kind == "outcomes":
        return lambda outputs, targets: task.outcomes(task.view(outputs), targets)

    def outcomes_and_ties(outputs: list[np.ndarray], targets: np.ndarray) -> np.ndarray:
        view = task.view(outputs)
        return np.stack([task.outcomes(view, targets), task.tie_values(view, targets, kind)], axis=-1)

    return outcomes_and_ties


def run_shard(runner, layout: Layout, cache: dict[str, np.ndarray], targets: np.ndarray, reduce, current: np.ndarray,
              shard: Shard) -> np.ndarray:
    """The reduced suffix outputs of one shard, shape [candidates, samples, ...]."""
    chunk = {name: value[shard.rows] for name, value in cache.items()}
    outputs = runner.run(feeds(layout, chunk, current, shard.block))
    value = reduce(outputs, np.concatenate([targets[shard.rows]] * len(shard.block)))
    return value.reshape(len(shard.block), len(shard.rows), *value.shape[1:])


def feeds(layout: Layout, chunk: dict[str, np.ndarray], current: np.ndarray, block: np.ndarray) -> dict[str, np.ndarray]:
    """Candidate-major feeds: row ``j * images + i`` is candidate j on image i."""
    tiled = {name: value if name == layout.untiled else np.concatenate([value] * len(block))
             for name, value in chunk.items()}
    if layout.linear:
        tiled[MASK_INPUT] = current[None]
        tiled[CANDIDATE_INPUT] = np.where(block < 0, layout.channels, block)
        return tiled
    rows = np.repeat(current[None], len(block), axis=0)
    chosen = np.flatnonzero(block >= 0)
    rows[chosen, block[chosen]] = 0
    tiled[MASK_INPUT] = np.repeat(rows, len(next(iter(chunk.values()))), axis=0)
    return tiled
