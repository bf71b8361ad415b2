"""The paper's comparison on the sample: prune half of one conv layer by each criterion, no fine-tuning.

For each layer and criterion it runs the greedy driver on the pruning set, then measures the
pruned model's top-1 on the test set, and prints a Markdown table. The pruning-set curves
(accuracy against filters removed) and the table go to a JSON file.

    python benchmarks/compare_criteria.py --prune-data PRUNE.npz --test-data TEST.npz [--out samples/car_vs_baselines.json]
"""

import argparse
import json
import pathlib
import time

import onnxcar
from onnxcar.io import load_model, save_model

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
    parser.add_argument("--out", default="samples/car_vs_baselines.json")
    parser.add_argument("--save-dir", help="also write each pruned model here as <layer>_<criterion>.onnx")
    args = parser.parse_args()

    model = load_model(args.model)
    runner = onnxcar.RunnerConfig(device="cpu")
    prune_data = onnxcar.Data(args.prune_data, preprocess="cifar10", limit=args.prune_images)
    test_data = onnxcar.Data(args.test_data, preprocess="cifar10")
    original = onnxcar.evaluate(model, test_data, runner=runner)
    prune_images = onnxcar.evaluate(model, prune_data, runner=runner).n
    print(f"original: test top-1 {original.top1:.2%} on {original.n} images; pruning set {prune_images} images")
    results = {"original_test_top1": original.top1, "ratio": args.ratio, "per_iter": args.per_iter,
               "prune_images": prune_images, "test_images": original.n, "runs": []}
    criteria = args.criteria.split(",")
    for layer in args.layers.split(","):
        for criterion in criteria:
            start = time.perf_counter()
            result = onnxcar.prune(model, data=prune_data, criterion=criterion, target=onnxcar.Ratio(args.ratio),
                                   layers=[layer], per_iter=args.per_iter, runner=runner)
            top1 = onnxcar.evaluate(result.model, test_data, runner=runner).top1
            if args.save_dir:
                save_model(result.model, pathlib.Path(args.save_dir) / f"{layer}_{criterion}.onnx", force=True)
            results["runs"].append({"layer": layer, "criterion": criterion, "test_top1": top1,
                                    "removed": len(result.removals), "curve": result.report["curves"][layer],
                                    "seconds": round(time.perf_counter() - start, 1)})
            print(f"  {layer} {criterion:8s} removed {len(result.removals):3d}: test top-1 {top1:.2%} "
                  f"(pruning set {result.final_metric:.2%}) in {time.perf_counter() - start:.0f} s", flush=True)
    print(markdown_table(results, criteria))
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
        f.write("\n")


def markdown_table(results: dict, criteria: list[str]) -> str:
    layers = list(dict.fromkeys(r["layer"] for r in results["runs"]))
    top1 = {(r["layer"], r["criterion"]): r["test_top1"] for r in results["runs"]}
    lines = ["| criterion | " + " | ".join(f"{layer}: test top-1" for layer in layers) + " |",
             "| --- |" + " --- |" * len(layers)]
    for criterion in criteria:
        lines.append(f"| {criterion} | " + " | ".join(f"{top1[(layer, criterion)]:.2%}" for layer in layers) + " |")
    for layer in layers:
        best = max(top1[(layer, c)] for c in criteria if c != "car")
        lines.append(f"\n{layer}: CAR minus the best baseline = {100 * (top1[(layer, 'car')] - best):+.1f} points")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
