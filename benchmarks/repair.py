"""Repair without training on a sample: test top-1 of pruned models with and without each repair.

Each run prunes the model once (no repair), then applies every repair to that pruned model
through the repair registry, and measures test top-1 on the test set. ``lsq`` runs twice: on
the pruning images, and on ``--repair-limit`` unlabelled training images. ``bn`` runs only on
a model with BatchNorms. It prints Markdown tables, the repair times, and writes the JSON
(runs are saved as they finish; ``--resume`` keeps those already in the file).

    python benchmarks/repair.py --runs single            # half of conv1 / conv2 by one criterion
    python benchmarks/repair.py --runs global            # global budgets of 0.75, 0.5, 0.33 of the MACs
"""

import argparse
import json
import pathlib
import time

import onnxcar
from onnxcar.importance.evaluator import Task
from onnxcar.io import load_model
from onnxcar.report import write_json
from onnxcar.repair import kept_after
from onnxcar.repair.step import RepairConfig, repair_pruned

CACHE = pathlib.Path.home() / ".cache/onnxcar/cifar10"
CAR = {"limit": 200, "per_iter": 4}  # the README's CAR command
SINGLE = [
    ("half of conv1, l1", {"layers": ["conv1"], "criterion": "l1", "target": ("ratio", 0.5)}),
    ("half of conv1, mean-act", {"layers": ["conv1"], "criterion": "mean-act", "target": ("ratio", 0.5)}),
    ("half of conv1, car", {"layers": ["conv1"], "criterion": "car", "target": ("ratio", 0.5), **CAR}),
    ("half of conv2, l1", {"layers": ["conv2"], "criterion": "l1", "target": ("ratio", 0.5)}),
    ("half of conv2, car", {"layers": ["conv2"], "criterion": "car", "target": ("ratio", 0.5), **CAR}),
]
GLOBAL = [
    (f"global {criterion}, {share} of the MACs", {"criterion": criterion, "target": ("macs", share)})
    for share in (0.75, 0.5, 0.33) for criterion in ("mean-act", "l1")
] + [("uniform l1, 30 % of every layer", {"criterion": "l1", "target": ("ratio", 0.3)})]
DATA_FREE = ("l1", "l2", "random")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="samples/alexnet_cifar10.onnx")
    parser.add_argument("--name", help="the model's name in the output file [default: the model's file stem]")
    parser.add_argument("--prune-data", default="samples/cifar10_prune_1000.npz")
    parser.add_argument("--repair-data", default=str(CACHE / "cifar10_train_45000.npz"))
    parser.add_argument("--repair-limit", type=int, default=5000)
    parser.add_argument("--test-data", default=str(CACHE / "cifar10_test_10000.npz"))
    parser.add_argument("--runs", default="single,global", help="single, global, or both")
    parser.add_argument("--only", help="run only the runs whose name contains this text")
    parser.add_argument("--out", help="[default: benchmarks/results/repair_<name>.json]")
    parser.add_argument("--resume", action="store_true", help="keep the runs already in --out")
    args = parser.parse_args()

    name = args.name or pathlib.Path(args.model).stem
    out = pathlib.Path(args.out or f"benchmarks/results/repair_{name}.json")
    model = load_model(args.model)
    runner = onnxcar.RunnerConfig(device="cpu")
    prune_data = onnxcar.Data(args.prune_data, preprocess="cifar10")
    repair_data = onnxcar.Data(args.repair_data, preprocess="cifar10", labels_key=None, limit=args.repair_limit)
    test_data = onnxcar.Data(args.test_data, preprocess="cifar10")
    has_bn = any(n.op_type == "BatchNormalization" for n in model.graph.node)
    repairs = [("lsq", prune_data, "lsq, pruning images"),
               ("lsq", repair_data, f"lsq, {args.repair_limit} training images")]
    if has_bn:
        repairs.insert(0, ("bn", repair_data, f"bn, {args.repair_limit} training images"))
    results = {"kind": "repair-benchmark", "version": 1, "model": args.model, "prune_data": args.prune_data,
               "repair_data": repair_data.to_dict(), "test_data": args.test_data, "runs": []}
    if args.resume and out.exists():
        results["runs"] = json.loads(out.read_text())["runs"]
    original = onnxcar.evaluate(model, test_data, runner=runner)
    results["original_test_top1"] = original.top1
    print(f"original: test top-1 {original.top1:.2%} on {original.n} images")
    done = {r["name"] for r in results["runs"]}
    chosen = [*(SINGLE if "single" in args.runs else []), *(GLOBAL if "global" in args.runs else [])]
    for run_name, run in chosen:
        if run_name in done or (args.only and args.only not in run_name):
            continue
        results["runs"].append(measure(model, run_name, run, prune_data, repairs, test_data, runner))
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(results, out)
    print_tables(results, [label for _, _, label in repairs])
    print(f"wrote {out}")


def measure(model, run_name: str, run: dict, prune_data, repairs, test_data, runner) -> dict:
    """Prunes once, then applies each repair to the pruned model; test top-1 of each."""
    kind, value = run["target"]
    target = onnxcar.Macs(value) if kind == "macs" else onnxcar.Ratio(value)
    data = None if run["criterion"] in DATA_FREE else onnxcar.Data(prune_data.path, preprocess="cifar10",
                                                                   limit=run.get("limit"))
    start = time.perf_counter()
    result = onnxcar.prune(model, target=target, criterion=run["criterion"], layers=run.get("layers", ()), data=data,
                           per_iter=run.get("per_iter", 100_000), runner=runner)
    pruning_s = time.perf_counter() - start
    kept = kept_after(model, result.removals)
    record = {"name": run_name, **run, "pruning_s": round(pruning_s, 1),
              "macs_kept": result.after.macs / result.before.macs,
              "test_top1": {"no repair": onnxcar.evaluate(result.model, test_data, runner=runner).top1}, "repairs": {}}
    print(f"{run_name}: {len(result.removals)} filters removed, {record['macs_kept']:.1%} of the MACs kept, "
          f"no repair {record['test_top1']['no repair']:.2%}", flush=True)
    for repair, data_spec, label in repairs:
        repaired, entry = repair_pruned(RepairConfig(repair, data_spec), model, result.model, kept, None, None, Task(),
                                        runner)
        record["test_top1"][label] = onnxcar.evaluate(repaired, test_data, runner=runner).top1
        record["repairs"][label] = {k: entry[k] for k in ("images", "seconds", "peak_bytes", "layers")}
        print(f"  {label}: {record['test_top1'][label]:.2%} ({entry['seconds']:.1f} s, "
              f"peak {entry['peak_bytes'] / 2**20:.0f} MiB)", flush=True)
    return record


def print_tables(results: dict, labels: list[str]) -> None:
    print(f"\noriginal test top-1: {results['original_test_top1']:.2%}\n")
    columns = ["no repair", *labels]
    print("| pruned (test top-1, %) | MACs kept | " + " | ".join(columns) + " |")
    print("| --- | --- |" + " --- |" * len(columns))
    for run in results["runs"]:
        cells = [f"{100 * run['test_top1'][c]:.2f}" if c in run["test_top1"] else "" for c in columns]
        print(f"| {run['name']} | {run['macs_kept']:.1%} | " + " | ".join(cells) + " |")
    print("\n| pruned | repair | images | seconds | peak MiB |\n| --- | --- | --- | --- | --- |")
    for run in results["runs"]:
        for label, entry in run["repairs"].items():
            print(f"| {run['name']} | {label} | {entry['images']} | {entry['seconds']:.1f} | "
                  f"{entry['peak_bytes'] / 2**20:.0f} |")


if __name__ == "__main__":
    main()
