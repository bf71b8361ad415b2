"""The repair registry, and what a repair takes and returns."""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx

from onnxcar.graph import analyze
from onnxcar.progress import Progress, silent
from onnxcar.registry import Registry
from onnxcar.runners.config import RunnerConfig
from onnxcar.surgery.plan import Plan


@dataclass(frozen=True)
class RepairInputs:
    """What a repair may use.

    ``kept`` maps each tensor that lost channels to the indices (in the original numbering) of
    the channels it keeps; ``images`` feeds the model's image input (unlabelled repair data);
    ``holdout`` is the fraction of the images held out to choose a repair's settings.
    """

    original: onnx.ModelProto
    pruned: onnx.ModelProto
    kept: Mapping[str, np.ndarray]
    images: Mapping[str, np.ndarray]
    runner: RunnerConfig = RunnerConfig()
    holdout: float = 0.1
    seed: int = 0
    progress: Progress = silent


@dataclass
class RepairResult:
    """The repaired model, one entry per refitted layer, and the peak bytes of the repair's own arrays."""

    model: onnx.ModelProto
    layers: list[dict] = field(default_factory=list)
    peak_bytes: int = 0


@dataclass(frozen=True)
class Repair:
    """A registered repair."""

    name: str
    apply: Callable[[RepairInputs], RepairResult]
    needs_data: bool = True
    help: str = ""


def _builtins() -> None:
    from onnxcar.repair import batchnorm, lsq  # noqa: F401  (their decorators register)


REPAIRS: Registry[Repair] = Registry("repair", _builtins)


def register_repair(name: str, *, needs_data: bool = True, help: str = ""):
    """Registers the decorated function (RepairInputs -> RepairResult) as the repair ``name``."""

    def decorate(apply: Callable[[RepairInputs], RepairResult]):
        REPAIRS.add(name, Repair(name, apply, needs_data, help))
        return apply

    return decorate


@register_repair("none", needs_data=False, help="keep the pruned model as it is")
def _no_repair(inputs: RepairInputs) -> RepairResult:
    return RepairResult(inputs.pruned)


def run_repair(name: str, inputs: RepairInputs) -> RepairResult:
    """Applies the repair ``name``."""
    return REPAIRS.get(name).apply(inputs)


def kept_after(model: onnx.ModelProto, removals: Iterable) -> dict[str, np.ndarray]:
    """The kept channels of every tensor of ``model`` (the original) that ``removals`` (a
    :class:`~onnxcar.PruneResult`'s) take channels from: a repair's ``kept``."""
    analysis = analyze(model)
    by_id = {g.id: g for g in analysis.groups}
    return kept_channels(Plan(analysis, frozenset(int(by_id[r.group].channels[r.channel]) for r in removals)))


def kept_channels(plan: Plan) -> dict[str, np.ndarray]:
    """The kept channel indices of every tensor that ``plan`` takes channels from."""
    kept = {}
    for name, slot in plan.analysis.tracer.slots.items():
        keep = plan.keep(slot.atoms)
        if not keep.all():
            kept[name] = np.flatnonzero(keep)
    return kept
