"""The ``lsq`` repair: refit every consumer of the pruned channels by ridge least squares.

Each consumer's weights and bias are refitted so that, on its input in the pruned network, it
reproduces its output in the original network (kept output channels only). Consumers are
refitted in stages in graph order, each on the network repaired so far, so a refit also absorbs
the error of the layers before it. No labels are needed.
"""

import logging
import time

import numpy as np
import onnx
from onnx import numpy_helper

from onnxcar.repair.consumers import Consumer, find_consumers, initializer
from onnxcar.repair.registry import RepairInputs, RepairResult, register_repair
from onnxcar.repair.ridge import FIT, HELDOUT, NormalEquations
from onnxcar.repair.rows import from_systems, input_rows, systems, target_rows, to_systems
from onnxcar.repair.taps import Activations, stages

log = logging.getLogger(__name__)


@register_repair("lsq", help="refit every layer that reads pruned channels by ridge least squares")
def refit_consumers(inputs: RepairInputs) -> RepairResult:
    """Refits every consumer of ``inputs.kept``'s tensors; keeps a consumer's pruned weights where
    the refit does not reconstruct the held-out rows better."""
    model = onnx.ModelProto()
    model.CopyFrom(inputs.pruned)
    consumers = {c.output: c for c in find_consumers(model, inputs.kept)}
    heldout = holdout_mask(len(next(iter(inputs.images.values()))), inputs.holdout, inputs.seed)
    pruned, original = Activations(inputs.images, inputs.runner), Activations(inputs.images, inputs.runner)
    layers, peak, done = [], 0, 0
    for stage in stages(model, list(consumers)):
        start = time.perf_counter()
        group = [consumers[name] for name in stage]
        equations = _accumulate(model, inputs.original, pruned, original, group, heldout)
        seconds = (time.perf_counter() - start) / len(group)
        peak = max(peak, sum(e.nbytes for e in equations.values()) + pruned.nbytes + original.nbytes)
        for consumer in group:
            layers.append(_refit(model, consumer, equations[consumer.output], seconds))
        done += len(group)
        inputs.progress("repair", done, len(consumers))
    return RepairResult(model, layers, peak)


def holdout_mask(count: int, fraction: float, seed: int) -> np.ndarray:
    """A seeded choice of ``fraction`` of ``count`` items (none for fewer than two items)."""
    held = int(round(count * fraction)) if count > 1 else 0
    mask = np.zeros(count, dtype=bool)
    mask[np.random.default_rng(seed).permutation(count)[:held]] = True
    return mask


def _accumulate(model: onnx.ModelProto, reference: onnx.ModelProto, pruned: Activations, original: Activations,
                group: list[Consumer], heldout: np.ndarray) -> dict[str, NormalEquations]:
    """The normal equations of each consumer of ``group``: inputs from ``model`` (pruned, repaired so
    far), targets from the ``reference`` (original) model, summed batch by batch."""
    equations: dict[str, NormalEquations] = {}
    pruned_inputs = pruned.batches(model, [c.data for c in group])
    original_outputs = original.batches(reference, [c.output for c in group])
    for (items, xs), (_, ys) in zip(pruned_inputs, original_outputs, strict=True):  # strict: both finish
        parts = heldout[items]
        for consumer in group:
            x, y = xs[consumer.data], ys[consumer.output]
            for part, chosen in ((FIT, ~parts), (HELDOUT, parts)):
                if not chosen.any():
                    continue
                rows = input_rows(consumer, _items(consumer, x, chosen))
                targets = target_rows(consumer, _items(consumer, y, chosen))
                system = equations.get(consumer.output)
                if system is None:
                    system = equations[consumer.output] = NormalEquations(systems(consumer), rows.shape[2],
                                                                          targets.shape[2])
                system.add(rows, targets, part)
    return equations


def _items(consumer: Consumer, values: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """The chosen items of a batch (a Gemm with transA holds them on its second axis)."""
    if consumer.op == "Gemm" and consumer.attrs.get("transA", 0):
        return values[:, chosen]
    return values[chosen]


def _refit(model: onnx.ModelProto, consumer: Consumer, equations: NormalEquations, seconds: float) -> dict:
    """Writes the consumer's refit into ``model`` unless it reconstructs the held-out rows worse
    than its pruned weights; returns the record the report keeps (``seconds``: its share of the
    stage's passes over the data, plus its solve)."""
    start = time.perf_counter()
    weight = initializer(model, consumer.weight)
    bias = None if consumer.bias is None else initializer(model, consumer.bias)
    unknowns, rows = equations.gram.shape[-1], equations.rows[FIT]
    if rows < unknowns:
        log.warning("%s: %d rows for %d unknowns; the refit may overfit (give more repair data)",
                    consumer.label, rows, unknowns)
    fit = equations.solve(to_systems(consumer, weight, bias))
    applied = fit.error is None or fit.error < fit.error_before
    if applied:
        _write(model, consumer, *from_systems(consumer, fit.solution, weight.shape))
    else:
        log.info("%s: the refit does not help on held-out rows; keeping its pruned weights", consumer.label)
    return {"layer": consumer.label, "op": consumer.op, "systems": equations.gram.shape[1], "unknowns": unknowns,
            "rows": rows, "heldout_rows": equations.rows[HELDOUT], "ridge": fit.ridge,
            "heldout_error_before": fit.error_before, "heldout_error_after": fit.error, "applied": applied,
            "seconds": round(seconds + time.perf_counter() - start, 3)}


def _write(model: onnx.ModelProto, consumer: Consumer, weight: np.ndarray, bias: np.ndarray | None) -> None:
    """Replaces the consumer's weight and bias initializers (adding a bias where it had none)."""
    _set_initializer(model, consumer.weight, weight)
    if bias is None:
        return
    if consumer.bias is not None:
        _set_initializer(model, consumer.bias, bias)
        return
    node = next(n for n in model.graph.node if n.output and n.output[0] == consumer.output)
    name = f"{consumer.weight}.refit_bias"
    model.graph.initializer.append(numpy_helper.from_array(bias, name))
    del node.input[2:]
    node.input.append(name)
    if consumer.op == "Gemm":
        _set_gemm_scales(node)


def _set_initializer(model: onnx.ModelProto, name: str, values: np.ndarray) -> None:
    for index, tensor in enumerate(model.graph.initializer):
        if tensor.name == name:
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(values.astype(
                numpy_helper.to_array(tensor).dtype), name))
            node = next((n for n in model.graph.node if name in n.input[1:]), None)
            if node is not None and node.op_type == "Gemm":
                _set_gemm_scales(node)
            return


def _set_gemm_scales(node: onnx.NodeProto) -> None:
    """alpha = beta = 1, the scales ``from_systems`` writes a Gemm's weights for."""
    for attribute in node.attribute:
        if attribute.name in ("alpha", "beta"):
            attribute.f = 1.0
