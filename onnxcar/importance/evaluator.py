"""Evaluates masked variants of one group on cached prefix activations (the fast CAR engine)."""

import numpy as np

from onnxcar.progress import Progress, silent
from onnxcar.importance.backends import Backend, LocalBackend
from onnxcar.importance.shards import Layout, plan
from onnxcar.runners.config import RunnerConfig
from onnxcar.runners import make_runner
from onnxcar.surgery.probe import Probe
from onnxcar.tasks import Task


TIE_BREAKS = ("loss", "margin", "index")


class ProbeEvaluator:
    """Runs the prefix once over the data, then scores channel-mask rows through the suffix, in
    shards (see ``importance.shards``) that ``backend`` runs: here, or on a cluster."""

    def __init__(self, probe: Probe, inputs: dict[str, np.ndarray], targets: np.ndarray, task: Task, config: RunnerConfig,
                 *, cache: dict[str, np.ndarray] | None = None, backend: Backend | None = None):
        """``cache``: the prefix's outputs over ``inputs``, computed earlier for the same cut."""
        self.probe, self.targets, self.task, self.config = probe, targets, task, config
        self.count = len(targets)
        self.cache = {name: inputs[name] for name in probe.passthrough}
        if cache is not None:
            self.cache.update((name, cache[name]) for name in probe.cut)
        elif probe.cut:
            with make_runner(probe.prefix, config) as prefix:
                chunks = [
                    prefix.run({k: v[i : i + config.batch_size] for k, v in inputs.items()}, list(probe.cut))
                    for i in range(0, self.count, config.batch_size)
                ]
            for j, name in enumerate(probe.cut):
                self.cache[name] = np.concatenate([chunk[j] for chunk in chunks])
        self.suffix = (backend or LocalBackend()).open(probe.suffix, Layout.of(probe), self.cache, targets, task, config)

    def outputs(self, current: np.ndarray, candidates, samples: np.ndarray | None = None) -> np.ndarray:
        """Model outputs, shape [candidates, samples, ...], under mask ``current`` with each
        candidate channel also removed (-1: none), on every sample or on ``samples`` (indices)."""
        return self._collect(current, candidates, samples, "outputs")

    def outcomes(self, current: np.ndarray, candidates, samples: np.ndarray | None = None,
                 progress: Progress = silent) -> np.ndarray:
        """Per-sample outcomes, shape [candidates, samples]; see ``outputs``."""
        return self._collect(current, candidates, samples, "outcomes", progress)

    def outcomes_and_ties(self, current: np.ndarray, candidates, samples: np.ndarray | None = None, *,
                          tie_break: str, progress: Progress = silent) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample outcomes and tie-break values (see ``Task.tie_values``), each [candidates, samples]."""
        pairs = self._collect(current, candidates, samples, tie_break, progress)
        return pairs[..., 0], pairs[..., 1]

    def _collect(self, current, candidates, samples, reduce: str, progress: Progress = silent) -> np.ndarray:
        """Runs the suffix in shards of at most ``batch_size`` rows and stacks what ``reduce`` names."""
        current = np.asarray(current, dtype=np.float32).reshape(self.probe.channels)
        candidates = np.asarray(candidates, dtype=np.int64).reshape(-1)
        samples = np.arange(self.count) if samples is None else np.asarray(samples)
        calls = plan(candidates, samples, self.config.batch_size)
        result = None
        for (first, start, shard), value in zip(calls, self.suffix.run(current, [c[2] for c in calls], reduce)):
            if result is None:
                result = np.empty((len(candidates), len(samples), *value.shape[2:]), value.dtype)
            result[first : first + len(shard.block), start : start + len(shard.rows)] = value
            if first + len(shard.block) == len(candidates):
                progress("scoring", start + len(shard.rows), len(samples))
        return result

    def metric(self, current: np.ndarray, candidates, progress: Progress = silent) -> np.ndarray:
        """The task's metric with each candidate removed on top of ``current``."""
        return self.outcomes(current, candidates, progress=progress).mean(axis=1)

    def close(self) -> None:
        self.suffix.close()
