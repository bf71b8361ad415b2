"""CAR scoring speed: the naive method against the engine, in one process, on the same data.

The naive method builds every candidate's pruned model and an onnxruntime session for it,
then runs it over the whole pruning set. The engine caches the prefix activations and runs
batches of candidates through the suffix with per-sample channel masks. Both run the same
greedy iterations; the script checks they pick the same filters and prints the ratios.

    python benchmarks/car_speed.py [--model samples/alexnet_cifar10.onnx] [--data samples/cifar10_prune_1000.npz]
"""

import argparse
import time
from contextlib import contextmanager

import numpy as np

from onnxcar.data import DataSpec, Preprocess, load_dataset
from onnxcar.graph import analyze
from onnxcar.importance.batch import make_batch
from onnxcar.importance.data import DataScorer, ReductionIndex
from onnxcar.importance.evaluator import Task
from onnxcar.io import load_model
from onnxcar.prune.driver import greedy
from onnxcar.runners.config import RunnerConfig
from onnxcar.runners.ort import OrtRunner
from onnxcar.surgery import make_plan, remove_channels

ORT_SECONDS = [0.0]


@contextmanager
def timed_onnxruntime():
    """Adds the wall time spent inside OrtRunner.run to ORT_SECONDS."""
    original = OrtRunner.run

    def run(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            ORT_SECONDS[0] += time.perf_counter() - start

    OrtRunner.run = run
    try:
        yield
    finally:
        OrtRunner.run = original


def naive_greedy(analysis, group, batch, iterations, config):
    """Greedy CAR the plain way: a pruned model and a session per candidate."""
    (name, images), = batch.inputs.items()
    removed, picks = frozenset(), []
    for _ in range(iterations):
        accuracies = np.full(group.size, -np.inf)
        for i in range(group.size):
            if int(group.channels[i]) in removed:
                continue
            model = remove_channels(make_plan(analysis, removed | group.channel_ids([i])))
            with OrtRunner(model, config) as runner:
                outputs = [runner.run({name: images[s : s + config.batch_size]})[0] for s in range(0, len(images), config.batch_size)]
            accuracies[i] = np.mean(np.concatenate(outputs).argmax(axis=1) == batch.targets)
        best = int(np.lexsort((np.arange(group.size), -accuracies))[0])
        picks.append(best)
        removed = removed | group.channel_ids([best])
    return picks


def engine_greedy(analysis, group, batch, iterations, config):
    scorer = DataScorer(batch, Task(), config)
    picks = [r.channel for r in greedy(analysis, group, ReductionIndex(scorer), iterations)]
    scorer.close()
    return picks


def measure(label, run, candidates):
    ORT_SECONDS[0] = 0.0
    start = time.perf_counter()
    picks = run()
    seconds = time.perf_counter() - start
    print(f"  {label:7s} {seconds:8.2f} s  {candidates / seconds:12,.0f} image-candidates/s  "
          f"onnxruntime {ORT_SECONDS[0] / seconds:5.1%} of the time")
    return picks, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="samples/alexnet_cifar10.onnx")
    parser.add_argument("--data", default="samples/cifar10_prune_1000.npz")
    parser.add_argument("--preprocess", default="cifar10")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--layers", default="conv1,conv2")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    model = load_model(args.model)
    config = RunnerConfig(device="cpu", batch_size=args.batch_size)
    spec = DataSpec(args.data, preprocess=Preprocess.preset(args.preprocess), limit=args.images)
    batch = make_batch(model, load_dataset(spec), Task(), config)
    analysis = analyze(model)
    count = len(batch.targets)
    with timed_onnxruntime():
        for layer in args.layers.split(","):
            group = analysis.group(layer)
            candidates = count * sum(group.size - k for k in range(args.iterations))
            print(f"{layer}: {group.size} filters, {count} images, {args.iterations} greedy iterations")
            naive, naive_s = measure("naive", lambda: naive_greedy(analysis, group, batch, args.iterations, config), candidates)
            fast, fast_s = measure("engine", lambda: engine_greedy(analysis, group, batch, args.iterations, config), candidates)
            if naive != fast:
                raise SystemExit(f"  the engine picked {fast}, the naive method {naive}")
            print(f"  same filters picked: {fast}\n  speed ratio (naive / engine): {naive_s / fast_s:.2f}x")


if __name__ == "__main__":
    main()
