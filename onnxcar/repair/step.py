"""A repair as a step of a pruning run: its settings, its data, and its report entry."""

import dataclasses
import logging
import time
from dataclasses import dataclass

import numpy as np
import onnx

from onnxcar.data import DataSpec, load_dataset, validate_for_model
from onnxcar.errors import DataError, OnnxcarError, VerificationError
from onnxcar.importance.batch import evaluate
from onnxcar.importance.data import Batch
from onnxcar.importance.evaluator import Task
from onnxcar.progress import Progress, silent
from onnxcar.repair.registry import REPAIRS, RepairInputs, run_repair
from onnxcar.runners import make_runner
from onnxcar.runners.config import RunnerConfig

FINITE_CHECK_ITEMS = 16
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RepairConfig:
    """Which repair runs after surgery (a name in ``REPAIRS``), on which data (None: the pruning
    data), holding out ``holdout`` of it to choose the repair's settings."""

    name: str = "none"
    data: DataSpec | None = None
    holdout: float = 0.1

    def __post_init__(self) -> None:
        REPAIRS.get(self.name)  # an unknown name fails here, before any work
        if not 0.0 <= self.holdout < 1.0:
            raise OnnxcarError(f"holdout must be a fraction in [0, 1), got {self.holdout}", arguments=("holdout",))

    @property
    def active(self) -> bool:
        return self.name != "none"

    def check(self, data: DataSpec | None) -> None:
        """Refuses a repair that needs data when neither its own data nor the pruning ``data`` is given."""
        if REPAIRS.get(self.name).needs_data and self.data is None and data is None:
            raise OnnxcarError(f"the {self.name} repair needs data: give repair_data or data",
                               arguments=("repair_data", "data"))

    def to_dict(self) -> dict:
        return {"name": self.name, "data": None if self.data is None else self.data.to_dict(), "holdout": self.holdout}


def repair_pruned(config: RepairConfig, original: onnx.ModelProto, pruned: onnx.ModelProto, kept: dict,
                  data: DataSpec | None, evaluation: Batch | None, task: Task, runner: RunnerConfig, *, seed: int = 0,
                  progress: Progress = silent) -> tuple[onnx.ModelProto, dict]:
    """Repairs ``pruned`` and checks that it runs with finite outputs; returns it and its report entry
    (the metric on ``evaluation``, the pruning set, before and after the repair). Where the repair
    makes that metric worse, returns ``pruned`` instead (the entry's ``kept`` is then False)."""
    spec = config.data or data
    images = _images(original, spec, runner) if spec is not None else {}
    before = _metric(pruned, evaluation, task, runner)
    start = time.perf_counter()
    result = run_repair(config.name, RepairInputs(original, pruned, kept, images, runner, config.holdout, seed,
                                                  progress))
    seconds = time.perf_counter() - start
    check_finite(result.model, images, runner)
    after = _metric(result.model, evaluation, task, runner)
    worse = None not in (before, after) and (after < before if task.higher_is_better else after > before)
    if worse:
        log.warning("the %s repair worsens the pruning-set metric (%.4g -> %.4g): keeping the pruned model",
                    config.name, before, after)
    entry = {**config.to_dict(), "data": None if spec is None else spec.to_dict(),
             "images": len(next(iter(images.values()))) if images else 0, "metric_before": before,
             "metric_after": after, "kept": not worse, "seconds": round(seconds, 3), "peak_bytes": result.peak_bytes,
             "layers": result.layers}
    return (pruned if worse else result.model), entry


def _images(model: onnx.ModelProto, spec: DataSpec, runner: RunnerConfig) -> dict[str, np.ndarray]:
    """The repair data (labels unread), checked against the model's image input."""
    dataset = load_dataset(dataclasses.replace(spec, labels_key=None))
    with make_runner(model, runner) as session:
        inputs = session.inputs()
    name = spec.preprocess.input_name or (inputs[0].name if len(inputs) == 1 else None)
    found = next((i for i in inputs if i.name == name), None)
    if found is None:
        raise DataError(f"choose the input the repair images feed among {[i.name for i in inputs]}",
                        arguments=("input_name",))
    validate_for_model(dataset, list(found.shape), found.type, None)
    return {name: dataset.images}


def _metric(model: onnx.ModelProto, batch: Batch | None, task: Task, runner: RunnerConfig) -> float | None:
    if batch is None:
        return None
    result = evaluate(model, batch, runner)
    return result["top1"] if task.kind == "classification" else result[task.metric_name]


def check_finite(model: onnx.ModelProto, images: dict[str, np.ndarray], runner: RunnerConfig) -> None:
    """Raises VerificationError unless the repaired model runs on a few items and gives finite outputs."""
    if not images:
        return
    with make_runner(model, runner) as session:
        outputs = session.run({k: v[:FINITE_CHECK_ITEMS] for k, v in images.items()})
    if not all(np.isfinite(o).all() for o in outputs):
        raise VerificationError("the repaired model gives non-finite outputs")
