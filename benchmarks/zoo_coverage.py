"""How much of each zoo model onnxcar can prune, and how long analysis and surgery take.

For every test-zoo model (exported and classic) it prints the Conv layers whose filters are
prunable, the prunable groups, and the seconds spent analysing the graph and removing half
of every prunable group. Run from the repository root:

    PYTHONPATH=. python benchmarks/zoo_coverage.py [--classic]
"""

import argparse
import time


from onnxcar.graph import Role, analyze
from onnxcar.surgery import make_plan, remove_channels
from tests.zoo import classic, exported


def coverage(name: str, model) -> str:
    start = time.perf_counter()
    analysis = analyze(model)
    analysed = time.perf_counter() - start
    convs = {n.name for n in analysis.graph.nodes if n.op == "Conv"}
    prunable = {m.node for g in analysis.groups if g.prunable for m in g.members if m.role is Role.PRODUCER} & convs
    removed: set[int] = set()
    for group in analysis.groups:
        if group.prunable:
            for index in range(group.size // 2):
                if analysis.feasible(removed | group.channel_ids([index])):
                    removed |= group.channel_ids([index])
    start = time.perf_counter()
    remove_channels(make_plan(analysis, removed))
    surgery = time.perf_counter() - start
    groups = sum(g.prunable for g in analysis.groups)
    return (f"{name:34s} {len(prunable):4d}/{len(convs):<4d} {len(prunable) / max(len(convs), 1):6.0%} "
            f"{groups:4d}/{len(analysis.groups):<4d} {analysed:8.2f} {surgery:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classic", action="store_true", help="also the classic models of the onnx wheel (slow)")
    args = parser.parse_args()
    print(f"{'model':34s} {'prunable convs':>14s} {'groups':>9s} {'analysis s':>10s} {'surgery s':>9s}")
    for name in exported.NAMES + exported.LARGE:
        for exporter in ("torchscript", "dynamo") if name in exported.NAMES else ("torchscript",):
            print(coverage(f"{name} ({exporter})", exported.export(name, exporter=exporter, fold_bn=False)), flush=True)
    if args.classic:
        for name in classic.CLASSIC_NAMES:
            print(coverage(f"{name} (onnx wheel)", classic.load_classic(name, dynamic_batch=True)), flush=True)


if __name__ == "__main__":
    main()
