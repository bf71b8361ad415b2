"""How much of each zoo model onnxcar can prune, checked by removal against masking.

For every model it counts the Conv and ConvTranspose layers whose output channels can be
removed (a producer, or a depthwise layer they pass through, in a prunable group), the
blocked ones whose group reaches a graph output (``@out``: the output's layout) and the
other blocked ones; it removes half of every prunable group, checks the removed model against the
masked one at batch 1 and 2 (``max err``: the worst error over what the tolerance allows;
<= 1 passes) and times analysis and surgery. After the table, every blocked layer that does
not reach an output is listed with its reason. Models: the torch exports of tests/zoo
(TorchScript and dynamo), the YOLO-style detector and U-Net-style segmenter of
tests/zoo/detection.py, the shipped sample and its quantize_static (QDQ, int8 per channel)
version, and with ``--classic`` the classic models of the onnx wheel. Run from the
repository root:

    PYTHONPATH=. python benchmarks/zoo_coverage.py [--classic]
"""

import argparse
import time

import numpy as np

from onnxcar.errors import OnnxcarError
from onnxcar.graph import Role, analyze
from onnxcar.io import load_model
from onnxcar.surgery import make_plan, mask_channels, remove_channels, verify_equal
from tests.zoo import classic, detection, exported
from tests.zoo.quantized import SAMPLES, quantized_sample

_LAYERS = ("Conv", "ConvTranspose")


def coverage(name: str, model, notes: list[str]) -> str:
    """One table row; appends to ``notes`` each layer blocked short of an output, with its reason."""
    start = time.perf_counter()
    analysis = analyze(model)
    analysed = time.perf_counter() - start
    layers = {n.name for n in analysis.graph.nodes if n.op in _LAYERS}
    roles = (Role.PRODUCER, Role.THROUGH)
    prunable = {m.node for g in analysis.groups if g.prunable for m in g.members if m.role in roles} & layers
    at_output = {m.node for g in analysis.groups if any("graph output" in r for r in g.reasons)
                 for m in g.members if m.role is Role.PRODUCER} & layers - prunable
    other = sorted(layers - prunable - at_output)
    notes.extend(f"{name}: {analysis.layer_name(node)}: {_reason(analysis, node)}" for node in other)
    removed: set[int] = set()
    for group in analysis.groups:
        if group.prunable:
            for index in range(group.size // 2):
                if analysis.feasible(removed | group.channel_ids([index])):
                    removed |= group.channel_ids([index])
    plan = make_plan(analysis, removed)
    start = time.perf_counter()
    pruned = remove_channels(plan)
    surgery = time.perf_counter() - start
    try:
        check = f"{verify_equal(mask_channels(plan), pruned, batch_sizes=(1, 2)).max_scaled_error:8.2g}"
    except OnnxcarError as err:
        check = "  FAILED"
        notes.append(f"{name}: removed != masked: {err}")
    groups = sum(g.prunable for g in analysis.groups)
    return (f"{name:34s} {len(prunable):4d}/{len(layers):<4d} {len(prunable) / max(len(layers), 1):5.0%} "
            f"{len(at_output):5d} {len(other):5d} {groups:4d}/{len(analysis.groups):<4d} {check} "
            f"{analysed:8.2f} {surgery:8.2f}")


def _reason(analysis, node_name: str) -> str:
    """Why a layer's filters cannot go: its group's first reason, or what blocked its output."""
    group = next((g for g in analysis.groups if node_name in g.producers), None)
    if group is not None:
        return group.reasons[0]
    output = next(n for n in analysis.graph.nodes if n.name == node_name).outputs[0]
    slot = analysis.tracer.slots.get(output.name)
    blocks = analysis.tracer.blocks if slot is not None else []
    return next((reason for atoms, reason in blocks if np.isin(slot.atoms, atoms).any()), "no channel group")


def models(with_classic: bool):
    """(row name, model loader) for every benchmarked model."""
    for name in exported.NAMES + exported.LARGE:
        for exporter in exported.EXPORTERS if name in exported.NAMES else ("torchscript",):
            yield f"{name} ({exporter})", lambda n=name, e=exporter: exported.export(n, exporter=e, fold_bn=False)
    for name in detection.NAMES:
        for exporter in exported.EXPORTERS:
            yield f"{name} ({exporter})", lambda n=name, e=exporter: detection.export(n, exporter=e)
    yield "alexnet_cifar10 (sample)", lambda: load_model(SAMPLES / "alexnet_cifar10.onnx")
    yield "alexnet_cifar10 (QDQ int8)", quantized_sample
    if with_classic:
        for name in classic.CLASSIC_NAMES:
            yield f"{name} (onnx wheel)", lambda n=name: classic.load_classic(n, dynamic_batch=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classic", action="store_true", help="also the classic models of the onnx wheel (slow)")
    args = parser.parse_args()
    print(f"{'model':34s} {'prunable convs':>15s} {'@out':>5s} {'other':>5s} {'groups':>9s} {'max err':>8s} "
          f"{'analysis s':>8s} {'surgery s':>8s}")
    notes: list[str] = []
    for name, load in models(args.classic):
        print(coverage(name, load(), notes), flush=True)
    print("\nblocked short of an output, or failed:" if notes else "\nno layer is blocked short of an output")
    for line in notes:
        print(f"  {line}")


if __name__ == "__main__":
    main()
