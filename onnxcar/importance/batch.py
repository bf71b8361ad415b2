"""Binds a data set to a model: validated inputs, and targets (labels or agreement labels)."""

import contextlib
import logging
from collections.abc import Iterator

import numpy as np
import onnx

from onnxcar.data import Dataset, DataSpec, load_dataset, validate_for_model
from onnxcar.errors import DataError
from onnxcar.graph.shapes import InputShapes, check_data_shapes
from onnxcar.importance.backends import BackendConfig, open_backend
from onnxcar.importance.data import Batch, DataScorer
from onnxcar.progress import Progress, silent
from onnxcar.runners.config import RunnerConfig
from onnxcar.runners import make_runner
from onnxcar.tasks import Task, bind_task

log = logging.getLogger(__name__)


def make_batch(model: onnx.ModelProto, dataset: Dataset, task: Task, config: RunnerConfig,
               input_shapes: InputShapes | None = None) -> Batch:
    """Checks ``dataset`` against ``model`` (and against ``input_shapes``, when given) and binds ``task``
    to the model's outputs (see :func:`~onnxcar.tasks.bind_task`) before any long work, and labels it
    if it has no labels.

    Without labels (and always for the tasks that compare with the original model), the original
    model's outputs, as the task reads them, are the targets (agreement mode): its top-1 predictions
    for classification, its outputs for regression and fidelity, its per-pixel labels for
    segmentation, its decodes for ctc.
    """
    with make_runner(model, config) as runner:
        session_inputs = runner.inputs()
        name = dataset.spec.preprocess.input_name or (session_inputs[0].name if len(session_inputs) == 1 else None)
        if name is None:
            raise DataError(f"the model has inputs {[i.name for i in session_inputs]}: choose the one the images feed",
                            arguments=("input_name",))
        model_input = next((i for i in session_inputs if i.name == name), None)
        if model_input is None:
            raise DataError(f"the model has no input {name!r}; inputs: {[i.name for i in session_inputs]}",
                            arguments=("input_name",))
        output = runner.outputs()[0]
        width = output.shape[-1] if output.shape and isinstance(output.shape[-1], int) else None
        if task.rule.agreement_only and dataset.labels is not None:
            raise DataError(f"the {task.kind} task compares with the original model's outputs: give the data "
                            f"without labels", arguments=("no_labels", "task"))
        validate_for_model(dataset, list(model_input.shape), model_input.type, width, task.kind)
        check_data_shapes(input_shapes, {name: dataset.images.shape})
        free_batch = not (model_input.shape and isinstance(model_input.shape[0], int) and model_input.shape[0] > 0)
        task = bind_task(task, runner.run({name: dataset.images[:1]}),
                         runner.run({name: dataset.images[:2]}) if len(dataset) > 1 and free_batch else None)
        inputs = {name: dataset.images}
        if dataset.labels is not None:
            return Batch(inputs, dataset.labels, task)
        views = [task.view(runner.run({name: dataset.images[i : i + config.batch_size]}))
                 for i in range(0, len(dataset), config.batch_size)]
        log.info("no labels: the original model's outputs, as the %s task reads them, are the targets "
                 "(agreement mode)", task.kind)
        return Batch(inputs, np.concatenate([task.rule.targets(view) for view in views]), task)


@contextlib.contextmanager
def open_scorer(model: onnx.ModelProto, data: DataSpec | None, task: Task, runner: RunnerConfig,
                backend: BackendConfig = BackendConfig(), *, input_shapes: InputShapes | None = None,
                keep_groups: bool = False, progress: Progress = silent) -> Iterator[DataScorer | None]:
    """The pruning-set scorer of ``data`` (None without data), checked against ``input_shapes`` when
    given. Its backend connects before the data is read, so a cluster that cannot be reached fails
    before any work; both close on exit."""
    if data is None:
        yield None
        return
    evaluation = open_backend(backend)
    scorer = None
    try:
        batch = make_batch(model, load_dataset(data), task, runner, input_shapes)
        scorer = DataScorer(batch, batch.task, runner,
                            progress=progress, keep_groups=keep_groups, backend=evaluation)
        yield scorer
    finally:
        if scorer is not None:
            scorer.close()
        evaluation.close()


def evaluate(model: onnx.ModelProto, batch: Batch, config: RunnerConfig, progress: Progress = silent) -> dict:
    """The task's metric of ``model`` on ``batch`` (top-1 and top-5 accuracy for classification)."""
    (name, images), = batch.inputs.items()
    task, views = batch.task, []
    with make_runner(model, config) as runner:
        for start in range(0, len(images), config.batch_size):
            views.append(task.view(runner.run({name: images[start : start + config.batch_size]})))
            progress("evaluating", min(start + config.batch_size, len(images)), len(images))
    view = np.concatenate(views)
    if task.kind != "classification":
        return {task.metric_name: float(task.outcomes(view, batch.targets).mean()), "n": len(images)}
    top5 = np.argsort(-view, axis=1, kind="stable")[:, :5]
    return {
        "top1": float(np.mean(top5[:, 0] == batch.targets)),
        "top5": float(np.mean(np.any(top5 == batch.targets[:, None], axis=1))),
        "n": len(images),
    }
