"""Per-layer pruning sensitivity: pruning-set accuracy after removing growing shares of each layer's filters.

Each selected group is pruned on its own, from the unpruned model, by the greedy driver
(Abbasi-Asl and Yu 2017) up to the largest step; the smaller steps are prefixes of that
removal order. CAR/RAR record the metric of every removal they choose, so reading a step
costs nothing more; the other criteria rank without the metric, which is measured at the
steps only.
"""

from dataclasses import dataclass

import onnx

from onnxcar.data import DataSpec, load_dataset
from onnxcar.errors import OnnxcarError
from onnxcar.graph import analyze
from onnxcar.graph.analysis import Analysis, Group
from onnxcar.importance import DataScorer, make_importance
from onnxcar.importance.batch import make_batch
from onnxcar.tasks import Task
from onnxcar.progress import Progress, silent
from onnxcar.pruning.driver import greedy, select_groups
from onnxcar.pruning.targets import Ratio
from onnxcar.runners.config import RunnerConfig

REPORT_KIND, REPORT_VERSION = "sensitivity", 1
DEFAULT_STEPS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class SensitivityConfig:
    """Which layers to scan, by which criterion, at which shares of their filters."""

    criterion: str = "l1"
    steps: tuple[float, ...] = DEFAULT_STEPS
    layers: tuple[str, ...] = ()  # empty: every prunable group
    per_iter: int = 1
    seed: int = 0
    task: str = "classification"

    def __post_init__(self) -> None:
        if not self.steps or any(not 0 < s < 1 for s in self.steps):
            raise OnnxcarError(f"steps must be fractions strictly between 0 and 1, got {list(self.steps)}")
        object.__setattr__(self, "steps", tuple(sorted(set(self.steps))))
        if self.per_iter < 1:
            raise OnnxcarError(f"per_iter must be at least 1, got {self.per_iter}")

    def to_dict(self) -> dict:
        return {"criterion": self.criterion, "steps": list(self.steps), "layers": list(self.layers),
                "per_iter": self.per_iter, "seed": self.seed, "task": self.task}


@dataclass(frozen=True)
class SensitivityPoint:
    """The metric after removing ``removed`` filters (``fraction`` of the layer, rounded down)."""

    fraction: float
    removed: int
    metric: float

    def to_dict(self) -> dict:
        return {"fraction": self.fraction, "removed": self.removed, "metric": self.metric}


@dataclass(frozen=True)
class LayerSensitivity:
    """One layer's scan: its filter count, the criterion's removal order and the metric at each step."""

    layer: str
    filters: int
    order: tuple[int, ...]
    points: tuple[SensitivityPoint, ...]

    def to_dict(self) -> dict:
        return {"layer": self.layer, "filters": self.filters, "order": list(self.order),
                "points": [p.to_dict() for p in self.points]}


@dataclass(frozen=True)
class SensitivityResult:
    """Every scanned layer, and the unpruned model's metric (accuracy, or MSE for regression)."""

    config: SensitivityConfig
    original_metric: float
    layers: tuple[LayerSensitivity, ...]

    def to_dict(self) -> dict:
        return {"kind": REPORT_KIND, "version": REPORT_VERSION, "config": self.config.to_dict(),
                "original_metric": self.original_metric, "layers": [layer.to_dict() for layer in self.layers]}


def sensitivity(
    model: onnx.ModelProto,
    config: SensitivityConfig,
    data: DataSpec,
    runner: RunnerConfig = RunnerConfig(),
    progress: Progress = silent,
) -> SensitivityResult:
    """Scans each selected layer of ``model`` on the pruning set ``data``."""
    task = Task(config.task)
    batch = make_batch(model, load_dataset(data), task, runner)
    scorer = DataScorer(batch, batch.task, runner)
    try:
        return scan(analyze(model), config, scorer, progress)
    finally:
        scorer.close()


def scan(analysis: Analysis, config: SensitivityConfig, scorer: DataScorer, progress: Progress = silent) -> SensitivityResult:
    """The scan on an analysed model, with the pruning set held by ``scorer``."""
    importance = make_importance(config.criterion, scorer, config.seed)
    groups = select_groups(analysis, config.layers)
    counts = {g.id: [Ratio(step).removals(g.size) for step in config.steps] for g in groups}
    total, done = sum(max(c) for c in counts.values()), 0
    original = scorer.metric(analysis, groups[0], frozenset())
    layers = []
    for group in groups:
        name = analysis.layer_name(group.producers[0])
        order = []
        for removal in greedy(analysis, group, importance, max(counts[group.id]), per_iter=config.per_iter):
            order.append(removal.channel)
            done += 1
            progress("sensitivity", done, total, name)
        points = tuple(
            SensitivityPoint(step, count, _metric(scorer, analysis, group, order[:count]))
            for step, count in zip(config.steps, counts[group.id])
            if count <= len(order)  # the greedy loop stops where only last channels of tensors remain
        )
        layers.append(LayerSensitivity(name, group.size, tuple(order), points))
    return SensitivityResult(config, original, tuple(layers))


def _metric(scorer: DataScorer, analysis: Analysis, group: Group, channels: list[int]) -> float:
    return scorer.metric(analysis, group, frozenset(group.channel_ids(channels)))
