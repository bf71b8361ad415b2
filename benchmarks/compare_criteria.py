"""The paper's comparison on the sample: prune half of one conv layer by each criterion, no fine-tuning.

For each layer and criterion it runs the greedy driver on the pruning set, then measures the
pruned model's top-1 on the test set, and prints a Markdown table. The JSON file (a
``comparison`` report, which ``onnxcar report`` draws) holds each run's removal order and its
accuracy curve against filters removed on the pruning set (and on the test set with --test-curve-every).

    python benchmarks/compare_criteria.py --prune-data PRUNE.npz --test-data TEST.npz [--out samples/car_vs_baselines.json]
"""

import argparse
import json
import pathlib
import time

import onnxcar
from onnxcar.data import load_dataset
from onnxcar.graph import analyze
from onnxcar.importance import DataScorer
from onnxcar.importance.batch import make_batch
from onnxcar.tasks import Task
from onnxcar.io import load_model, save_model
from onnxcar.report import write_json
from onnxcar.runners.config import RunnerConfig

CRITERIA = ("car", "l1", "l2", "mean-act", "apoz", "random")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="samples/alexnet_cifar10.onnx")
    parser.add_argument("--prune-data", default="samples/cifar10_prune_1000.npz")
    parser.add_argument("--test-data", default="samples/cifar10_test_2000.npz")
    parser.add_argument("--prune-images", type=int, default=None, help="seeded stratified subset of the pruning set")
    parser.add_argument("--layers", default="conv1,conv2")
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--criteria", default=",".join(CRITERIA))
    parser.add_argument("--per-iter", type=int, default=1)
    parser.add_argument("--tie-break", default="index", choices=("index", "loss", "margin"),
                        help="CAR's order among filters of equal score (index: the paper's, and these runs')")
    parser.add_argument("--out", default="samples/car_vs_baselines.json")
    parser.add_argument("--save-dir", help="also write each pruned model here as <layer>_<criterion>.onnx")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs already in --out (same settings) and do only the missing ones")
    parser.add_argument("--test-curve-every", type=int, default=0,
                        help="also measure test top-1 after every N-th removal (0: only at the end); "
                             "with --resume, also for the runs already done")
    args = parser.parse_args()

    model = load_model(args.model)
    runner = onnxcar.RunnerConfig(device="cpu")
    prune_data = onnxcar.Data(args.prune_data, preprocess="cifar10", limit=args.prune_images)
    test_data = onnxcar.Data(args.test_data, preprocess="cifar10")
    test_set = make_batch(model, load_dataset(test_data), Task(), runner) if args.test_curve_every else None
    original = onnxcar.evaluate(model, test_data, runner=runner)
    prune_images = onnxcar.evaluate(model, prune_data, runner=runner).n
    print(f"original: test top-1 {original.top1:.2%} on {original.n} images; pruning set {prune_images} images")
    results = {"kind": "comparison", "version": 1, "model": args.model, "data": prune_data.to_dict(),
               "test_data": args.test_data, "original_test_top1": original.top1, "ratio": args.ratio,
               "per_iter": args.per_iter, "tie_break": args.tie_break, "prune_images": prune_images,
               "test_images": original.n, "runs": []}
    if args.resume and pathlib.Path(args.out).exists():
        results["runs"] = resumed_runs(pathlib.Path(args.out), results)
    criteria = args.criteria.split(",")
    done = {(r["layer"], r["criterion"]) for r in results["runs"]}
    for run in results["runs"] if args.test_curve_every else ():  # resumed runs get their missing test curves
        if "test_curve" not in run and "channels" in run:
            run["test_curve"] = test_curve(model, run["layer"], run["channels"], args.test_curve_every, test_set, runner)
            write_json(results, pathlib.Path(args.out))
    for criterion in criteria:  # criterion-major, and saved after every run, so a cut-short run keeps the first criteria
        for layer in args.layers.split(","):
            if (layer, criterion) in done:
                continue
            start = time.perf_counter()
            result = onnxcar.prune(model, data=prune_data, criterion=criterion, target=onnxcar.Ratio(args.ratio),
                                   layers=[layer], per_iter=args.per_iter, tie_break=args.tie_break, runner=runner)
            top1 = onnxcar.evaluate(result.model, test_data, runner=runner).top1
            channels = [r.channel for r in result.removals]
            if args.save_dir:
                save_model(result.model, pathlib.Path(args.save_dir) / f"{layer}_{criterion}.onnx", force=True)
            entry = {"layer": layer, "criterion": criterion, "test_top1": top1, "removed": len(result.removals),
                     "curve": result.report["curves"][layer], "channels": channels}
            if args.test_curve_every:
                entry["test_curve"] = test_curve(model, layer, channels, args.test_curve_every, test_set, runner)
            results["runs"].append({**entry, "seconds": round(time.perf_counter() - start, 1)})
            write_json(results, pathlib.Path(args.out))
            print(f"  {layer} {criterion:8s} removed {len(result.removals):3d}: test top-1 {top1:.2%} "
                  f"(pruning set {result.final_metric:.2%}) in {time.perf_counter() - start:.0f} s", flush=True)
    print(markdown_table(results, criteria))


def resumed_runs(path: pathlib.Path, results: dict) -> list[dict]:
    """The runs of an earlier, cut-short comparison with the same settings."""
    earlier = json.loads(path.read_text())
    earlier.setdefault("tie_break", "index")  # comparisons made before the option used the index order
    for key in ("model", "data", "test_data", "ratio", "per_iter", "tie_break", "prune_images", "test_images"):
        if earlier.get(key) != json.loads(json.dumps(results[key])):
            raise SystemExit(f"{path} was made with another {key} ({earlier.get(key)!r}): cannot resume it")
    return earlier["runs"]


def test_curve(model, layer: str, channels: list[int], every: int, test_set, runner: RunnerConfig) -> list[list]:
    """Test-set top-1 after removing the first k filters of ``channels``, every ``every`` filters and at the end."""
    analysis = analyze(model)
    group, scorer = analysis.group(layer), DataScorer(test_set, Task(), runner)
    steps = sorted({*range(0, len(channels), every), len(channels)})
    curve = [[k, scorer.metric(analysis, group, frozenset(group.channel_ids(channels[:k])))] for k in steps]
    scorer.close()
    return curve


def markdown_table(results: dict, criteria: list[str]) -> str:
    layers = list(dict.fromkeys(r["layer"] for r in results["runs"]))
    top1 = {(r["layer"], r["criterion"]): r["test_top1"] for r in results["runs"]}
    lines = ["| criterion | " + " | ".join(f"{layer}: test top-1" for layer in layers) + " |",
             "| --- |" + " --- |" * len(layers)]
    for criterion in criteria:
        lines.append(f"| {criterion} | " + " | ".join(f"{top1[(layer, criterion)]:.2%}" for layer in layers) + " |")
    for layer in layers if "car" in criteria else ():
        best = max(top1[(layer, c)] for c in criteria if c != "car")
        lines.append(f"\n{layer}: CAR minus the best baseline = {100 * (top1[(layer, 'car')] - best):+.1f} points")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
