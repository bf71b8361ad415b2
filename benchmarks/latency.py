"""Measured latency against MACs: do fewer MACs make inference faster?

Prunes the sample (and a ResNet-50-shaped export with random weights, built in code) to several
MACs budgets by global L1 (latency depends on the layer widths, not on the weights, so a
data-free criterion gives the same shapes a data-driven one would choose for the same widths),
then times the original and every pruned model in this one process with
``onnxcar.latency.measure_latency`` (onnxruntime CPU, seeded inputs, warm-up calls, then the
median of timed calls: the measurement the ``run`` recipe's ``max_latency_ms`` gate uses).
Models are timed in alternation, ``--rounds`` times each, and the median of those medians is
reported, so drift in the machine's load hits every model alike. Extra ONNX files (``--extra``)
are timed against the first model's original.

    PYTHONPATH=. python benchmarks/latency.py [--models sample,resnet50] [--targets 0.75,0.5,0.25]
                                              [--batches 1,32] [--threads 1] [--extra pruned.onnx ...]
"""

import argparse
import statistics
import time

import onnx

import onnxcar
from onnxcar.io import load_model
from onnxcar.latency import measure_latency

SECONDS_PER_MEASUREMENT = 4.0  # timed calls per measurement: about this long, 5 to 30 calls


def sample() -> onnx.ModelProto:
    return load_model("samples/alexnet_cifar10.onnx")


def resnet50() -> onnx.ModelProto:
    from benchmarks.dataless_speed import export
    from tests.zoo.exported import ResNet50Like

    return export(ResNet50Like(), 224)


def timed(model: onnx.ModelProto, batch: int, threads: int, runs: int) -> float:
    return measure_latency(model, batch=batch, runs=runs, warmup=2, threads=threads).median_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="sample,resnet50")
    parser.add_argument("--targets", default="0.75,0.5,0.25", help="MACs budgets (fractions to keep)")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (0: its default)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--extra", nargs="*", default=[], help="more pruned models of the first --models entry")
    args = parser.parse_args()
    builders = {"sample": sample, "resnet50": resnet50}
    print(f"onnxruntime CPU, {args.threads} intra-op thread(s), median of medians over {args.rounds} rounds")
    print(f"{'model':10s} {'variant':16s} {'MACs':>14s} {'params':>11s} {'batch':>5s} {'ms':>9s} "
          f"{'MACs gain':>9s} {'latency gain':>12s}")
    for index, name in enumerate(args.models.split(",")):
        original = builders[name]()
        start = time.perf_counter()
        variants = {"original": original}
        for keep in map(float, args.targets.split(",")):
            variants[f"l1 macs {keep:g}"] = onnxcar.prune(original, criterion="l1", target=onnxcar.Macs(keep)).model
        for path in args.extra if index == 0 else ():
            variants[path] = load_model(path)
        costs = {label: onnxcar.inspect(model) for label, model in variants.items()}
        print(f"  ({name}: pruned {len(variants) - 1 - len(args.extra if index == 0 else ())} variants in "
              f"{time.perf_counter() - start:.1f} s)", flush=True)
        for batch in map(int, args.batches.split(",")):
            first = time.perf_counter()
            measure_latency(original, batch=batch, runs=1, warmup=1, threads=args.threads)
            runs = int(min(30, max(5, SECONDS_PER_MEASUREMENT / (time.perf_counter() - first))))
            rounds = {label: [] for label in variants}
            for _ in range(args.rounds):
                for label, model in variants.items():
                    rounds[label].append(timed(model, batch, args.threads, runs))
            base = statistics.median(rounds["original"])
            for label, times in rounds.items():
                ms = statistics.median(times)
                macs, params = costs[label].macs, costs[label].params
                print(f"{name:10s} {label:16s} {macs:>14,} {params:>11,} {batch:>5d} {ms:>9.3f} "
                      f"{costs['original'].macs / macs:>8.2f}x {base / ms:>11.2f}x", flush=True)


if __name__ == "__main__":
    main()
