"""CAR scoring speed: the naive method against the engine, in one process, on the same data.

The naive method builds every candidate's pruned model and a runner (an onnxruntime session,
or a torch module with --runner torch) for it, then runs it over the whole pruning set. The engine caches the prefix activations and runs
batches of candidates through the suffix with per-sample channel masks; "exhaustive" scores
every candidate on every image, "engine" (what `onnxcar prune` runs) stops early on the
candidates that can no longer be the least harmful (see onnxcar.importance.search). All three
run the same greedy iterations; the script checks they pick the same filters and prints the ratios.

With ``--backend ray``, the naive method is skipped: exhaustive scoring and the engine run on the
local backend and on Ray (a local instance of ``--ray-workers`` CPUs, or the cluster at
``--ray-address``), the picks are checked equal, and the script prints the ratio and what a cost
model of more workers needs: the shards run, their mean compute time, and the bytes that go to
the object store per probe and per shard.

    python benchmarks/car_speed.py [--model samples/alexnet_cifar10.onnx] [--data samples/cifar10_prune_1000.npz]
                                   [--runner ort|torch] [--device cpu|cuda]
                                   [--backend ray [--ray-workers N | --ray-address HOST:PORT]]
"""

import argparse
import time
from contextlib import contextmanager

import numpy as np

from onnxcar.data import DataSpec, Preprocess, load_dataset
from onnxcar.graph import analyze
from onnxcar.importance import backends, shards
from onnxcar.importance.backends import BackendConfig, open_backend
from onnxcar.importance.batch import make_batch
from onnxcar.importance.data import DataScorer, ReductionIndex
from onnxcar.tasks import Task
from onnxcar.io import load_model
from onnxcar.pruning.driver import greedy
from onnxcar.runners import RunnerConfig, make_runner
from onnxcar.runners.ort import OrtRunner
from onnxcar.surgery import make_plan, remove_channels

RUNNER = {"seconds": 0.0, "rows": 0}


@contextmanager
def timed_runner(runner_class):
    """Adds the wall time spent inside ``runner_class.run``, and the output rows it made, to RUNNER."""
    original = runner_class.run

    def run(self, *args, **kwargs):
        start = time.perf_counter()
        outputs = original(self, *args, **kwargs)
        RUNNER["seconds"] += time.perf_counter() - start
        RUNNER["rows"] += len(outputs[0])
        return outputs

    runner_class.run = run
    try:
        yield
    finally:
        runner_class.run = original


def naive_greedy(analysis, group, batch, iterations, config):
    """Greedy CAR the plain way: a pruned model and a runner per candidate."""
    (name, images), = batch.inputs.items()
    removed, picks = frozenset(), []
    for _ in range(iterations):
        accuracies = np.full(group.size, -np.inf)
        for i in range(group.size):
            if int(group.channels[i]) in removed:
                continue
            model = remove_channels(make_plan(analysis, removed | group.channel_ids([i])))
            with make_runner(model, config) as runner:
                outputs = [runner.run({name: images[s : s + config.batch_size]})[0] for s in range(0, len(images), config.batch_size)]
            accuracies[i] = np.mean(np.concatenate(outputs).argmax(axis=1) == batch.targets)
        best = int(np.lexsort((np.arange(group.size), -accuracies))[0])
        picks.append(best)
        removed = removed | group.channel_ids([best])
    return picks


class Exhaustive:
    """CAR without early stopping: every candidate's exact score, every iteration."""

    def __init__(self, index: ReductionIndex):
        self.index, self.name = index, index.name

    def __call__(self, analysis, group, removed):
        return self.index(analysis, group, removed)


def engine_greedy(analysis, group, batch, iterations, config, *, exhaustive=False, backend=None):
    scorer = DataScorer(batch, Task(), config, backend=backend)
    index = Exhaustive(ReductionIndex(scorer)) if exhaustive else ReductionIndex(scorer)
    picks = [r.channel for r in greedy(analysis, group, index, iterations)]
    scorer.close()
    return picks


def measure(label, run, candidates):
    RUNNER.update(seconds=0.0, rows=0)
    start = time.perf_counter()
    picks = run()
    seconds = time.perf_counter() - start
    runner = f"  runner {RUNNER['seconds'] / seconds:5.1%} of the time, {RUNNER['rows']:,} rows" if RUNNER["rows"] else ""
    print(f"  {label:10s} {seconds:8.2f} s  {candidates / seconds:12,.0f} image-candidates/s{runner}")
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
    parser.add_argument("--runner", choices=["ort", "torch"], default="ort")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--backend", choices=["local", "ray"], default="local")
    parser.add_argument("--ray-workers", type=int, default=2, help="CPUs of the local Ray instance")
    parser.add_argument("--ray-address", help="a running Ray cluster instead of a local instance")
    args = parser.parse_args()

    model = load_model(args.model)
    config = RunnerConfig(device=args.device, batch_size=args.batch_size, runner=args.runner)
    if args.runner == "torch":
        from onnxcar.runners.torch_runner import TorchRunner as runner_class
    else:
        runner_class = OrtRunner
    spec = DataSpec(args.data, preprocess=Preprocess.preset(args.preprocess), limit=args.images)
    batch = make_batch(model, load_dataset(spec), Task(), config)
    analysis = analyze(model)
    count = len(batch.targets)
    print(f"runner {args.runner} on {args.device}, batch size {args.batch_size}")
    if args.backend == "ray":
        compare_backends(args, analysis, batch, config)
        return
    with timed_runner(runner_class):
        for layer in args.layers.split(","):
            group = analysis.group(layer)
            candidates = count * sum(group.size - k for k in range(args.iterations))
            print(f"{layer}: {group.size} filters, {count} images, {args.iterations} greedy iterations")
            naive, naive_s = measure("naive", lambda: naive_greedy(analysis, group, batch, args.iterations, config), candidates)
            full, full_s = measure(
                "exhaustive", lambda: engine_greedy(analysis, group, batch, args.iterations, config, exhaustive=True), candidates
            )
            fast, fast_s = measure("engine", lambda: engine_greedy(analysis, group, batch, args.iterations, config), candidates)
            if not naive == full == fast:
                raise SystemExit(f"  picks differ: naive {naive}, exhaustive {full}, engine {fast}")
            print(f"  same filters picked: {fast}")
            print(f"  speed ratio naive / engine: {naive_s / fast_s:.2f}x "
                  f"(naive / exhaustive {naive_s / full_s:.2f}x, exhaustive / engine {full_s / fast_s:.2f}x)")


SHARDS = {"count": 0, "seconds": 0.0, "in_bytes": 0, "out_bytes": 0, "stored_bytes": 0}


@contextmanager
def counted_shards():
    """Counts the shards the local backend runs, their compute seconds and the bytes a remote
    worker would receive (mask row, indices) and send back (the reduced outputs)."""
    original = shards.run_shard

    def run(runner, layout, cache, targets, reduce, current, shard):
        start = time.perf_counter()
        value = original(runner, layout, cache, targets, reduce, current, shard)
        SHARDS["seconds"] += time.perf_counter() - start
        SHARDS["count"] += 1
        SHARDS["in_bytes"] += current.nbytes + shard.block.nbytes + shard.rows.nbytes
        SHARDS["out_bytes"] += value.nbytes
        return value

    def open_(self, suffix, layout, cache, targets, task, config):
        SHARDS["stored_bytes"] += suffix.ByteSize() + sum(v.nbytes for v in cache.values()) + targets.nbytes
        return backends.LocalSuffix(suffix, layout, cache, targets, task, config)

    saved_open = backends.LocalBackend.open
    backends.run_shard, backends.LocalBackend.open = run, open_
    try:
        yield
    finally:
        backends.run_shard, backends.LocalBackend.open = original, saved_open


def compare_backends(args, analysis, batch, config) -> None:
    """Exhaustive scoring and the engine, on the local backend and on Ray: same picks, and the ratio."""
    import ray

    if args.ray_address:
        remote = open_backend(BackendConfig("ray", args.ray_address))
    else:
        ray.init(num_cpus=args.ray_workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
        remote = open_backend(BackendConfig("ray"))
    workers = int(ray.cluster_resources().get("CPU", 0))
    count = len(batch.targets)
    for layer in args.layers.split(","):
        group = analysis.group(layer)
        candidates = count * sum(group.size - k for k in range(args.iterations))
        print(f"{layer}: {group.size} filters, {count} images, {args.iterations} greedy iterations, "
              f"Ray with {workers} CPUs")
        for exhaustive in (True, False):
            label = "exhaustive" if exhaustive else "engine"
            SHARDS.update(count=0, seconds=0.0, in_bytes=0, out_bytes=0, stored_bytes=0)
            with counted_shards():
                local, local_s = measure(f"{label} local", lambda: engine_greedy(
                    analysis, group, batch, args.iterations, config, exhaustive=exhaustive), candidates)
            stats = dict(SHARDS)
            on_ray, ray_s = measure(f"{label} ray", lambda: engine_greedy(
                analysis, group, batch, args.iterations, config, exhaustive=exhaustive, backend=remote), candidates)
            if local != on_ray:
                raise SystemExit(f"  picks differ: local {local}, ray {on_ray}")
            print(f"  same filters picked: {local}; ray / local time: {ray_s / local_s:.2f}x "
                  f"(local is {local_s / ray_s:.2f}x the speed of ray)")
            print(f"  shards: {stats['count']:,}, {1000 * stats['seconds'] / max(stats['count'], 1):.2f} ms compute "
                  f"each ({stats['seconds'] / local_s:.0%} of the local time); per shard "
                  f"{stats['in_bytes'] / max(stats['count'], 1):,.0f} B in, "
                  f"{stats['out_bytes'] / max(stats['count'], 1):,.0f} B out; "
                  f"stored once per probe: {stats['stored_bytes'] / 2**20:,.1f} MiB in all", flush=True)
    remote.close()
    ray.shutdown()


if __name__ == "__main__":
    main()
