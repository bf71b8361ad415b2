"""CAR's tie-break on the sample: test top-1 and cost with ``--tie-break index`` and ``loss``.

For each layer (half of its filters removed by greedy CAR) and each labelling of the pruning
set (its labels, and agreement with the original model's top-1, where accuracy saturates),
it prunes with ``index`` and with ``loss``, measures test top-1, counts the picks a tie in CAR
left to the tie-break (for ``index`` by a third run that settles ties without changing the
picks) and prints the ratio of the two pruning times. Both sides run in this process on the
same data. Run from the repository root:

    python benchmarks/tie_break.py [--prune-data samples/cifar10_prune_1000.npz] [--per-iter 4]
"""

import argparse
import json
import time

import onnxcar
from onnxcar.graph import analyze
from onnxcar.importance.batch import make_batch
from onnxcar.importance.data import DataScorer, ReductionIndex
from onnxcar.tasks import Task
from onnxcar.data import load_dataset
from onnxcar.io import load_model
from onnxcar.pruning.driver import greedy


def ties_under_index(model, data, layer: str, per_iter: int, runner) -> int:
    """Picks of the ``index`` run that a tie in CAR decided: the same greedy loop, ties settled."""
    analysis = analyze(model)
    group = analysis.group(layer)
    scorer = DataScorer(make_batch(model, load_dataset(data), Task(), runner), Task(), runner)
    index = ReductionIndex(scorer, "index", count_ties=True)
    removals = list(greedy(analysis, group, index, group.size // 2, per_iter=per_iter, scorer=scorer))
    scorer.close()
    return sum(bool(r.tied) for r in removals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="samples/alexnet_cifar10.onnx")
    parser.add_argument("--prune-data", default="samples/cifar10_prune_1000.npz")
    parser.add_argument("--test-data", default="samples/cifar10_test_2000.npz")
    parser.add_argument("--layers", default="conv1,conv2")
    parser.add_argument("--per-iter", type=int, default=4)
    parser.add_argument("--out", help="also write the rows as JSON")
    args = parser.parse_args()
    model = load_model(args.model)
    runner = onnxcar.RunnerConfig(device="cpu")
    test = onnxcar.Data(args.test_data, preprocess="cifar10")
    print(f"original test top-1 {onnxcar.evaluate(model, test, runner=runner).top1:.2%}")
    rows = []
    for layer in args.layers.split(","):
        for labels in ("labels", "agreement"):
            data = onnxcar.Data(args.prune_data, preprocess="cifar10", labels_key=None if labels == "agreement"
                                else "labels")
            row = {"layer": layer, "labels": labels, "per_iter": args.per_iter}
            for tie_break in ("index", "loss"):
                start = time.perf_counter()
                result = onnxcar.prune(model, data=data, criterion="car", target=onnxcar.Ratio(0.5), layers=[layer],
                                       per_iter=args.per_iter, tie_break=tie_break, verify=False, runner=runner)
                row[f"{tie_break}_s"] = round(time.perf_counter() - start, 1)
                row[f"{tie_break}_test_top1"] = onnxcar.evaluate(result.model, test, runner=runner).top1
                row[f"{tie_break}_ties"] = result.ties_decided
                row[f"{tie_break}_picks"] = len(result.removals)
            row["index_ties"] = ties_under_index(model, data, layer, args.per_iter, runner)
            row["cost_ratio"] = round(row["loss_s"] / row["index_s"], 2)
            rows.append(row)
            print(f"{layer} {labels:9s} index: {row['index_test_top1']:.2%} ({row['index_ties']}/{row['index_picks']} "
                  f"picks tied, {row['index_s']} s)  loss: {row['loss_test_top1']:.2%} ({row['loss_ties']}/"
                  f"{row['loss_picks']} tied, {row['loss_s']} s)  loss/index time {row['cost_ratio']}x", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
