"""The pruning methods ``peers.py`` puts side by side, each landing on a MACs budget.

A method turns ``(bench, budget)`` into a pruned ONNX model: onnxcar's criteria, read from its
registry (layer-uniform and global), onnxsim 0.8.1's structured pruning (L2 and Wanda, with
its ridge repair), and Torch-Pruning 1.6.1's MetaPruner on the torch module of the same
network (global magnitude, Taylor and LAMP). A method whose knob is a sparsity or a ratio
bisects it to the largest model within the budget, as measured by onnxcar on the ONNX file.
"""

from __future__ import annotations

import copy
import io
import importlib.util
import time
from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx

import onnxcar
from onnxcar.graph import analyze
from onnxcar.graph.cost import plan_cost
from onnxcar.importance.registry import CRITERIA
from onnxcar.surgery.plan import make_plan

PEERS = {"onnxsim": "onnxsim", "torch-pruning": "torch_pruning"}  # peer name -> module it needs
Removal = namedtuple("Removal", "group channel")


@dataclass
class Bench:
    """One model's benchmark inputs: the original, its data, and its torch twin."""

    name: str
    original: onnx.ModelProto
    macs: int
    prune_data: onnxcar.Data
    images: np.ndarray  # the pruning set, preprocessed (NCHW float32): calibration for the peers
    labels: np.ndarray
    torch_module: Callable[[], object] | None  # a fresh torch module with the original's weights
    per_iter: int = 4
    repair_images: np.ndarray | None = None  # unlabelled images for onnxcar's repairs (None: the pruning set)
    _ratios: dict[float, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.repair_images is None:
            self.repair_images = self.images

    @property
    def input_name(self) -> str:
        return self.original.graph.input[0].name

    @property
    def output_name(self) -> str:
        return self.original.graph.output[0].name

    def feeds(self, batch: int = 100) -> list[dict[str, np.ndarray]]:
        return [{self.input_name: self.images[i:i + batch]} for i in range(0, len(self.images), batch)]


@dataclass(frozen=True)
class Landed:
    """A pruned model, the knob value that produced it, whether it is within the budget, the seconds
    its pruning took, and those of the whole search for the knob (bisection included)."""

    model: onnx.ModelProto
    knob: str
    value: float | None
    reached: bool
    seconds: float
    search_seconds: float
    removals: list[list[int]] = field(default_factory=list)  # onnxcar's (group, channel): what its repairs need


@dataclass(frozen=True)
class Method:
    """A named way to prune to a budget, with the tool's own repairs: name -> function of the bench, the
    pruned model and the removals it recorded."""

    name: str
    tool: str
    prune: Callable[[Bench, float], Landed]
    repairs: dict[str, Callable[[Bench, onnx.ModelProto, list], onnx.ModelProto]] = field(default_factory=dict)


def macs_of(model: onnx.ModelProto) -> int:
    return onnxcar.inspect(model).macs


def land(run: Callable[[float], onnx.ModelProto], target: float, knob: str, hi: float, steps: int = 10) -> Landed:
    """Bisects ``run``'s knob in [0, hi] for the largest model with at most ``target`` MACs.

    A tool may prune less at a high knob than at a lower one (Torch-Pruning skips a group it
    would empty), so the upper end steps down from ``hi`` until one value is within the budget.
    """
    start, seconds = time.perf_counter(), {}

    def timed(value: float) -> onnx.ModelProto:
        began = time.perf_counter()
        model = run(value)
        seconds[value] = time.perf_counter() - began
        return model

    for top in (hi * (1 - k / 10) for k in range(6)):
        model = timed(top)
        if macs_of(model) <= target:
            break
    else:
        return Landed(model, knob, top, False, seconds[top], time.perf_counter() - start)
    lo, best = 0.0, (top, model)
    for _ in range(steps):
        mid = (lo + best[0]) / 2
        candidate = timed(mid)
        if macs_of(candidate) <= target:
            best = (mid, candidate)
        else:
            lo = mid
    return Landed(best[1], knob, best[0], True, seconds[best[0]], time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------- onnxcar

def _repairs() -> dict[str, Callable]:
    """onnxcar's registered repairs, each refitting on the repair data (default: the pruning images)."""
    from onnxcar.repair import REPAIRS, RepairInputs, kept_after, run_repair

    def repair(name: str):
        def apply(bench: Bench, model: onnx.ModelProto, removals: list) -> onnx.ModelProto:
            kept = kept_after(bench.original, [Removal(g, c) for g, c in removals])
            return run_repair(name, RepairInputs(bench.original, model, kept, {bench.input_name: bench.repair_images})).model

        return apply

    return {name: repair(name) for name in REPAIRS.names() if name != "none"}


def uniform_ratio(bench: Bench, budget: float) -> float:
    """The smallest per-layer ratio whose uniform pruning fits the budget.

    Which filters go does not change the MACs, so each trial ratio is costed on a plan that
    removes the first ``floor(ratio * n)`` channels of every prunable group, without surgery.
    """
    if budget not in bench._ratios:
        analysis = analyze(bench.original)
        groups = [g for g in analysis.groups if g.prunable]

        def macs(ratio: float) -> int:
            removed = set()
            for group in groups:
                removed |= group.channel_ids(range(onnxcar.Ratio(ratio).removals(group.size)))
            return plan_cost(make_plan(analysis, removed)).macs

        lo, hi = 0.0, 0.95
        for _ in range(16):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if macs(mid) <= budget * bench.macs else (mid, hi)
        bench._ratios[budget] = hi
    return bench._ratios[budget]


def landed_by_onnxcar(bench: Bench, budget: float, result, knob: str, value: float, seconds: float) -> Landed:
    return Landed(result.model, knob, value, result.after.macs <= budget * bench.macs, seconds, seconds,
                  [[r.group, r.channel] for r in result.removals])


def onnxcar_uniform(criterion: str) -> Method:
    def prune(bench: Bench, budget: float) -> Landed:
        ratio = uniform_ratio(bench, budget)
        start = time.perf_counter()
        result = onnxcar.prune(bench.original, target=onnxcar.Ratio(ratio), criterion=criterion,
                               data=bench.prune_data, per_iter=bench.per_iter)
        return landed_by_onnxcar(bench, budget, result, "ratio", ratio, time.perf_counter() - start)

    return Method(f"onnxcar {criterion} uniform", "onnxcar", prune, _repairs())


def onnxcar_global(criterion: str) -> Method:
    def prune(bench: Bench, budget: float) -> Landed:
        start = time.perf_counter()
        result = onnxcar.prune(bench.original, target=onnxcar.Macs(budget), criterion=criterion,
                               data=bench.prune_data, per_iter=bench.per_iter)
        return landed_by_onnxcar(bench, budget, result, "target_macs", budget, time.perf_counter() - start)

    return Method(f"onnxcar {criterion} global", "onnxcar", prune, _repairs())


def onnxcar_methods() -> list[Method]:
    criteria = [c.name for c in CRITERIA if c.task in (None, "classification")]
    return [make(c) for c in criteria for make in (onnxcar_uniform, onnxcar_global)]


# ---------------------------------------------------------------------------------------------- onnxsim

def onnxsim_method(importance: str, global_sparsity: bool) -> Method:
    import onnxsim

    def run(bench: Bench, sparsity: float) -> onnx.ModelProto:
        model = copy.deepcopy(bench.original)
        if importance == "wanda":
            return onnxsim.apply_structured_wanda_pruning(model, calibration_data=bench.feeds(), sparsity=sparsity,
                                                          global_sparsity=global_sparsity)
        return onnxsim.apply_structured_pruning(model, sparsity=sparsity, importance_norm="l2",
                                                global_sparsity=global_sparsity)

    def ridge(bench: Bench, model: onnx.ModelProto, removals: list) -> onnx.ModelProto:
        return onnxsim.apply_pruning_finetune(bench.original, model, calibration_data=bench.feeds())

    scope = "global" if global_sparsity else "uniform"
    return Method(f"onnxsim {importance} {scope}", "onnxsim",
                  lambda bench, budget: land(lambda s: run(bench, s), budget * bench.macs, "sparsity", 0.95),
                  {"ridge": ridge})


def onnxsim_methods() -> list[Method]:
    return [onnxsim_method(imp, g) for imp in ("l2", "wanda") for g in (False, True)]


# ---------------------------------------------------------------------------------------- Torch-Pruning

def torch_pruning_method(importance: str) -> Method:
    def run(bench: Bench, ratio: float) -> onnx.ModelProto:
        import torch
        import torch_pruning as tp

        module = bench.torch_module().eval()
        example = torch.from_numpy(bench.images[:1])
        make = {"magnitude": lambda: tp.importance.GroupMagnitudeImportance(p=2),
                "taylor": tp.importance.GroupTaylorImportance,
                "lamp": lambda: tp.importance.LAMPImportance(p=2)}[importance]
        classifier = [m for m in module.modules() if isinstance(m, torch.nn.Linear)][-1]
        pruner = tp.pruner.MetaPruner(module, example, importance=make(), pruning_ratio=ratio,
                                      global_pruning=True, ignored_layers=[classifier])
        if importance == "taylor":
            module.zero_grad()
            loss_fn = torch.nn.CrossEntropyLoss()
            for feed, start in zip(bench.feeds(), range(0, len(bench.labels), 100)):
                labels = torch.from_numpy(bench.labels[start:start + 100].astype(np.int64))
                loss_fn(module(torch.from_numpy(feed[bench.input_name])), labels).backward()
        pruner.step()
        return export(bench, module)

    return Method(f"torch-pruning {importance} global", "torch-pruning",
                  lambda bench, budget: land(lambda r: run(bench, r), budget * bench.macs, "pruning_ratio", 0.95))


def export(bench: Bench, module) -> onnx.ModelProto:
    """The torch module as ONNX (opset 17, dynamic batch), with the original's input and output names."""
    import torch

    buffer = io.BytesIO()
    torch.onnx.export(module.eval(), (torch.from_numpy(bench.images[:1]),), buffer, dynamo=False,
                      opset_version=17, input_names=[bench.input_name], output_names=[bench.output_name],
                      dynamic_axes={bench.input_name: {0: "batch"}, bench.output_name: {0: "batch"}})
    return onnx.load_from_string(buffer.getvalue())


def torch_pruning_methods() -> list[Method]:
    return [torch_pruning_method(imp) for imp in ("magnitude", "taylor", "lamp")]


def available_peers() -> tuple[list[str], list[str]]:
    """The peers whose packages import, and those missing."""
    found = [p for p, module in PEERS.items() if importlib.util.find_spec(module) is not None]
    return found, [p for p in PEERS if p not in found]


def all_methods(peers: list[str]) -> list[Method]:
    methods = onnxcar_methods()
    if "onnxsim" in peers:
        methods += onnxsim_methods()
    if "torch-pruning" in peers:
        methods += torch_pruning_methods()
    return methods
