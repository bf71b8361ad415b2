"""Measured inference latency on onnxruntime's CPU provider: fewer MACs do not always mean faster."""

import statistics
import time
from dataclasses import asdict, dataclass

import onnx

from onnxcar.graph.shapes import InputShapes
from onnxcar.runners.config import RunnerConfig
from onnxcar.runners.ort import OrtRunner
from onnxcar.surgery.verify import random_feeds


@dataclass(frozen=True)
class Latency:
    """Milliseconds per call at ``batch``: the median of ``runs`` timed calls after ``warmup`` untimed ones."""

    batch: int
    median_ms: float
    min_ms: float
    runs: int
    warmup: int
    threads: int

    def to_dict(self) -> dict:
        return asdict(self)


def measure_latency(model: onnx.ModelProto, *, batch: int = 1, runs: int = 30, warmup: int = 5,
                    threads: int = 0, input_shapes: InputShapes | None = None) -> Latency:
    """Times ``model`` on seeded random inputs of ``batch`` samples with onnxruntime on the CPU.

    ``threads`` sets onnxruntime's intra-op threads (0: its default); ``input_shapes`` sizes
    the dims the model leaves symbolic. Compare two models only when measured in the same
    process, one after the other, on the same machine.
    """
    feeds = random_feeds(model, batch, seed=0, input_shapes=input_shapes)
    with OrtRunner(model, RunnerConfig(device="cpu", threads=threads)) as runner:
        for _ in range(warmup):
            runner.run(feeds)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            runner.run(feeds)
            times.append((time.perf_counter() - start) * 1000)
    return Latency(batch, statistics.median(times), min(times), runs, warmup, threads)
