"""The library's entry points: what the ``onnxcar`` commands do, as functions with typed results.

Every function takes a model as a path or an ``onnx.ModelProto`` and data as a
:class:`~onnxcar.data.DataSpec` (``onnxcar.Data``)::

    import onnxcar

    data = onnxcar.Data("prune.npz", preprocess="cifar10")
    result = onnxcar.prune("m.onnx", data=data, criterion="car", target=onnxcar.Ratio(0.5), layers=["conv1"])
    result.save("m_pruned.onnx")          # the model, and its report as m_pruned.json
"""

import dataclasses
import os
import pathlib
from dataclasses import dataclass

import numpy as np
import onnx

from onnxcar.data import DataSpec, load_dataset
from onnxcar.graph import analyze
from onnxcar.graph.registry import custom_ops_without_handler
from onnxcar.graph.shapes import InputShapes, check_data_shapes, declared_shapes, resolve_input_shapes, sized_inputs
from onnxcar.importance import CRITERIA, make_importance
from onnxcar.importance.backends import BackendConfig
from onnxcar.importance.batch import Batch, evaluate as evaluate_batch, make_batch, open_scorer
from onnxcar.tasks import Task
from onnxcar.io import load_model
from onnxcar.progress import Progress, silent
from onnxcar.pruning.config import PruneConfig
from onnxcar.pruning.run import PruneResult, prune_model
from onnxcar.pruning.targets import Target
from onnxcar.repair.step import RepairConfig
from onnxcar.report import inspect_report
from onnxcar.runners.config import RunnerConfig

ModelLike = str | os.PathLike | onnx.ModelProto


def _model(model: ModelLike) -> tuple[onnx.ModelProto, str | None]:
    """The model and the path it came from (None for an in-memory model)."""
    if isinstance(model, onnx.ModelProto):
        return model, None
    return load_model(model), os.fspath(model)


@dataclass(frozen=True)
class Inspection:
    """The channel groups of a model, with each group's share of parameters and MACs.

    ``macs`` (and each group's ``macs_share``) is None while an input's size is unknown;
    ``input_shapes`` holds the shape each input was counted at (None where unknown);
    ``custom_ops`` names (``domain::OpType``) the ops of other domains that no handler covers,
    which block their groups and which shape inference cannot size past.
    ``unsupported`` says why integer-quantized ops are not pruned (None without any).
    """

    model: str | None
    params: int
    macs: int | None
    groups: list[dict]
    input_shapes: dict[str, list[int] | None] = dataclasses.field(default_factory=dict)
    custom_ops: list[str] = dataclasses.field(default_factory=list)
    unsupported: str | None = None

    @property
    def prunable(self) -> list[dict]:
        return [g for g in self.groups if g["prunable"]]

    def to_dict(self) -> dict:
        return {"model": self.model, "params": self.params, "macs": self.macs, "input_shapes": self.input_shapes,
                "custom_ops": self.custom_ops, "groups": self.groups, "unsupported": self.unsupported}


def inspect(model: ModelLike, *, input_shapes: InputShapes | None = None) -> Inspection:
    """Lists the channel groups of ``model``: what can be pruned, and at what share of the cost.

    MACs are counted at ``input_shapes`` (``{"x": (1, 3, 48, 192)}``), which a model whose
    height and width are symbolic needs; without them, its MACs are None (unknown).

    >>> [g["layers"] for g in onnxcar.inspect("m.onnx").prunable]
    [['conv1'], ['conv2']]
    """
    proto, source = _model(model)
    report = inspect_report(analyze(proto, sized_inputs(proto, input_shapes)), input_shapes)
    return Inspection(source, report["params"], report["macs"], report["groups"], report["input_shapes"],
                      custom_ops_without_handler(proto), report["unsupported"])


@dataclass(frozen=True)
class Evaluation:
    """Top-1 and top-5 accuracy (classification), mean squared error (regression), or the task's metric
    ``score`` named ``metric`` (``miou``, ``sequence_accuracy``, ``relative_error``...) on ``n`` samples."""

    task: str
    n: int
    top1: float | None = None
    top5: float | None = None
    mse: float | None = None
    metric: str | None = None
    score: float | None = None

    def to_dict(self) -> dict:
        if self.task == "regression":
            return {"mse": self.mse, "n": self.n}
        if self.task == "classification":
            return {"top1": self.top1, "top5": self.top5, "n": self.n}
        return {self.metric: self.score, "n": self.n}


def _bind(model: onnx.ModelProto, data: DataSpec, task: Task, runner: RunnerConfig,
          input_shapes: InputShapes | None) -> Batch:
    """The data, read and checked against the model and ``input_shapes`` (labelled by the model
    itself when it has no labels)."""
    resolve_input_shapes(model, input_shapes)  # their names and static dims, before the data is read
    return make_batch(model, load_dataset(data), task, runner, input_shapes)


def evaluate(model: ModelLike, data: DataSpec, *, task: str = "classification", runner: RunnerConfig = RunnerConfig(),
             input_shapes: InputShapes | None = None, progress: Progress = silent) -> Evaluation:
    """Measures ``model`` on ``data`` (whose items must have the ``input_shapes``, when given).

    >>> onnxcar.evaluate("m.onnx", onnxcar.Data("test.npz", preprocess="cifar10")).top1
    0.8189
    """
    proto, _ = _model(model)
    kind = Task(task)
    result = evaluate_batch(proto, _bind(proto, data, kind, runner, input_shapes), runner, progress)
    if kind.kind in ("classification", "regression"):
        return Evaluation(task=kind.kind, **result)
    return Evaluation(task=kind.kind, n=result["n"], metric=kind.metric_name, score=result[kind.metric_name])


@dataclass(frozen=True)
class Scores:
    """Every filter's score under each criterion, for one layer; low scores are pruned first."""

    layer: str
    task: str
    base: float  # the model's pruning-set accuracy (or MSE)
    by_criterion: dict[str, np.ndarray]
    blocked: str | None = None  # why the layer cannot be pruned; None when it can
    tie_break: str = "index"
    tie: np.ndarray | None = None  # the growth of the tie-break key beside CAR (classification, not index)

    @property
    def index(self) -> str:
        """The data-driven index of the task: ``car`` or ``rar``."""
        return "car" if Task(self.task).higher_is_better else "rar"

    def to_dict(self) -> dict:
        base_key = "base_top1" if self.task == "classification" else f"base_{Task(self.task).metric_name}"
        columns = dict(self.by_criterion, **({} if self.tie is None else {"tie": self.tie}))
        size = len(next(iter(columns.values())))
        filters = [{"index": i, **{name: float(v[i]) for name, v in columns.items()}} for i in range(size)]
        return {"kind": "score", "version": 1, "layer": self.layer, base_key: self.base, "tie_break": self.tie_break,
                "filters": filters}


def score(model: ModelLike, data: DataSpec, layer: str, *, task: str = "classification", seed: int = 0,
          tie_break: str = "loss", runner: RunnerConfig = RunnerConfig(), backend: BackendConfig = BackendConfig(),
          input_shapes: InputShapes | None = None, progress: Progress = silent) -> Scores:
    """Scores each filter of ``layer`` by every registered criterion that fits the task; for
    classification, ``tie`` holds the growth of the ``tie_break`` key that orders filters of equal CAR.
    The data's items must have the ``input_shapes``, when given. ``backend`` evaluates the candidates
    (``BackendConfig("ray", address)`` on a Ray cluster).

    >>> scores = onnxcar.score("m.onnx", data, "conv1")
    >>> scores.by_criterion["car"].argmin()      # the filter CAR would remove first
    """
    proto, _ = _model(model)
    kind = Task(task)
    resolve_input_shapes(proto, input_shapes)  # their names and static dims, before the data is read
    analysis = analyze(proto)
    group = analysis.group(layer)
    names = [c.name for c in CRITERIA if c.task in (None, kind.kind)]
    columns, tie = {}, None
    with open_scorer(proto, data, kind, runner, backend, input_shapes=input_shapes, progress=progress) as scorer:
        for name in names:
            keys = np.asarray(make_importance(name, scorer, seed, tie_break)(analysis, group, frozenset()), np.float64)
            columns[name] = keys if keys.ndim == 1 else keys[:, 0]
            if keys.ndim == 2:
                tie = keys[:, 1]
        base = scorer.metric(analysis, group, frozenset())
    return Scores(analysis.layer_name(group.producers[0]), kind.kind, base, columns, "; ".join(group.reasons) or None,
                  tie_break, tie)


def prune(
    model: ModelLike,
    *,
    target: Target,
    criterion: str = "l1",
    layers: tuple[str, ...] | list[str] = (),
    data: DataSpec | None = None,
    input_shapes: InputShapes | None = None,
    per_iter: int = 1,
    seed: int = 0,
    verify: bool = True,
    tolerance: float | None = None,
    tie_break: str = "loss",
    scope: str = "layer",
    task: str = "classification",
    runner: RunnerConfig = RunnerConfig(),
    backend: BackendConfig = BackendConfig(),
    journal: str | os.PathLike | None = None,
    resume: bool = False,
    force: bool = False,
    repair: str = "none",
    repair_data: DataSpec | None = None,
    progress: Progress = silent,
) -> PruneResult:
    """Removes filters from ``model`` by ``criterion`` until ``target`` (Ratio, Count, MaxDrop, Macs or
    Params) is met.

    Layers are pruned one after another (default: every prunable group); within a layer, each
    iteration rescores the remaining filters on the network pruned so far and removes the
    ``per_iter`` lowest. With ``scope="global"``, which ``Macs`` and ``Params`` budgets imply,
    one loop runs over the filters of every selected layer: each iteration removes the filters
    of least score per MAC (or parameter) saved, or of least score under a count target. Among channels of equal CAR, ``tie_break`` ``loss`` prefers the one whose
    removal grows the pruning set's cross-entropy least, ``margin`` the one that shrinks the mean
    top-1 margin least, ``index`` the lowest index. Data-driven criteria (car, rar, mean-act, apoz)
    need ``data``; ``backend`` evaluates their candidates (``BackendConfig("ray", address)`` on a Ray
    cluster, with the same picks). The removed model is checked against the masked original unless ``verify``
    is False: on seeded random inputs at ``input_shapes`` (``{"x": (1, 3, 48, 192)}``; by default
    the data's shape, else the declared one), and on real items of ``data``. A model whose height
    and width are symbolic needs ``data`` or ``input_shapes`` for that check, and for its MACs
    (None without them). Outputs match within :class:`~onnxcar.surgery.Tolerance` (relative to each
    output's scale, with an absolute floor for float rounding); ``tolerance`` sets all three terms.
    With ``journal``, each iteration is appended to that file as it completes, and ``resume=True``
    continues a killed run from it to the same result (``force=True`` starts afresh over it);
    ``result.save`` deletes it. After the check, ``repair`` (``lsq``: refit every
    layer that reads pruned channels by ridge least squares; ``bn``: re-estimate the BatchNorm
    statistics; ``none``) restores accuracy without training, on ``repair_data`` (unlabelled; default:
    ``data``); the report gives the pruning-set metric before and after it.

    >>> result = onnxcar.prune("m.onnx", target=onnxcar.Ratio(0.5), criterion="l1")
    >>> result.after.params / result.before.params
    0.52
    >>> onnxcar.prune("m.onnx", data=data, criterion="car", target=onnxcar.Macs(0.5)).after.macs
    """
    proto, source = _model(model)
    config = PruneConfig(criterion, target, tuple(layers), per_iter, seed, verify, tie_break, scope, tolerance)
    return prune_model(proto, config, data=data, input_shapes=input_shapes, task=task, runner=runner, backend=backend,
                       journal=None if journal is None else pathlib.Path(journal), resume=resume, force=force,
                       source=source, repair=RepairConfig(repair, repair_data), progress=progress)


def finetune(model: ModelLike, data: DataSpec, val: DataSpec, config=None, *, teacher: ModelLike | None = None,
             checkpoint: str | os.PathLike | None = None, resume: bool = False,
             input_shapes: InputShapes | None = None, progress: Progress = silent):
    """Fine-tunes ``model`` through the torch bridge (needs torch) and returns a
    :class:`~onnxcar.bridge.finetune.FinetuneResult` holding the weights of the best epoch on ``val``.

    ``config`` is a :class:`~onnxcar.bridge.finetune_config.FinetuneConfig` (default settings
    when None). ``checkpoint`` is saved after every epoch; ``resume`` continues from it, and
    ``result.save`` deletes it. The items of ``data`` and ``val`` must have the ``input_shapes``,
    when given; a model whose height and width are symbolic trains at the data's size.

    >>> result = onnxcar.finetune("pruned.onnx", train, val, onnxcar.FinetuneConfig(epochs=3))
    >>> result.after, result.save("tuned.onnx")
    """
    from onnxcar.bridge import require_torch

    require_torch("fine-tuning")
    from onnxcar.bridge.finetune import FinetuneConfig, finetune as run_finetune

    proto, source = _model(model)
    teacher_model, teacher_source = (None, None) if teacher is None else _model(teacher)
    config = config or FinetuneConfig()
    resolve_input_shapes(proto, input_shapes)  # their names and static dims, before the data is read
    train_set, val_set = load_dataset(data), load_dataset(val)
    for dataset in (train_set, val_set):
        check_data_shapes(input_shapes, {name: dataset.images.shape for name in declared_shapes(proto)})
    steps_of: dict[int, int] = {}

    def on_batch(epoch: int, step: int, steps: int) -> None:
        steps_of[epoch] = steps
        progress(f"epoch {epoch}/{config.epochs}", step, steps)

    def on_epoch(record: dict) -> None:
        epoch = record["epoch"]
        if epoch in steps_of:
            progress(f"epoch {epoch}/{config.epochs}", steps_of[epoch], steps_of[epoch],
                     f"loss {record['train_loss']:.4f}  val {record['val']:.4f}")

    result = run_finetune(proto, train_set, val_set, config, teacher=teacher_model,
                          checkpoint=None if checkpoint is None else pathlib.Path(checkpoint), resume=resume,
                          on_batch=on_batch, on_epoch=on_epoch)
    settings = {"config": config.to_dict(), "data": data.to_dict(), "val_data": val.to_dict(),
                "teacher": teacher_source,
                "input_shapes": None if input_shapes is None else {n: list(v) for n, v in input_shapes.items()}}
    return dataclasses.replace(result, settings=settings, source=source)
