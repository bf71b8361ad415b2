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
from onnxcar.importance.evaluator import Task
from onnxcar.progress import Progress, silent
from onnxcar.runners.config import RunnerConfig
from onnxcar.runners import make_runner

log = logging.getLogger(__name__)


def make_batch(model: onnx.ModelProto, dataset: Dataset, task: Task, config: RunnerConfig,
               input_shapes: InputShapes | None = None) -> Batch:
    """Checks ``dataset`` against ``model`` (and against ``input_shapes``, when given) before any
    long work, and labels it if it has no labels.

    Without labels, the original model's outputs are the targets (agreement mode): its top-1
    predictions for classification, its (first) output itself for regression, so RAR scores
    the squared error against what the unpruned model computes.
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
        validate_for_model(dataset, list(model_input.shape), model_input.type, width, task.kind)
        check_data_shapes(input_shapes, {name: dataset.images.shape})
        inputs = {name: dataset.images}
        if dataset.labels is not None:
            return Batch(inputs, dataset.labels)
        outputs = np.concatenate([
            runner.run({name: dataset.images[i : i + config.batch_size]})[0]
            for i in range(0, len(dataset), config.batch_size)
        ])
        if task.kind == "regression":
            log.info("no targets: using the original model's outputs (agreement mode, squared error)")
            return Batch(inputs, outputs)
        log.info("no labels: using the original model's top-1 predictions (agreement mode)")
        return Batch(inputs, outputs.reshape(len(dataset), -1).argmax(axis=1).astype(np.int64))


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
        scorer = DataScorer(make_batch(model, load_dataset(data), task, runner, input_shapes), task, runner,
                            progress=progress, keep_groups=keep_groups, backend=evaluation)
        yield scorer
    finally:
        if scorer is not None:
            scorer.close()
        evaluation.close()


def evaluate(model: onnx.ModelProto, batch: Batch, task: Task, config: RunnerConfig, progress: Progress = silent) -> dict:
    """Top-1 and top-5 accuracy (classification) or MSE (regression) of ``model`` on ``batch``."""
    (name, images), = batch.inputs.items()
    outputs = []
    with make_runner(model, config) as runner:
        for start in range(0, len(images), config.batch_size):
            outputs.append(runner.run({name: images[start : start + config.batch_size]})[0])
            progress("evaluating", min(start + config.batch_size, len(images)), len(images))
    logits = np.concatenate(outputs).reshape(len(images), -1)
    if task.kind == "regression":
        return {"mse": float(task.outcomes(logits, batch.targets).mean()), "n": len(images)}
    top5 = np.argsort(-logits, axis=1, kind="stable")[:, :5]
    return {
        "top1": float(np.mean(top5[:, 0] == batch.targets)),
        "top5": float(np.mean(np.any(top5 == batch.targets[:, None], axis=1))),
        "n": len(images),
    }
