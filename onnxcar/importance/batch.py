"""Binds a data set to a model: validated inputs, and targets (labels or agreement labels)."""

import contextlib
import logging
from collections.abc import Iterator

import numpy as np
import onnx

from onnxcar.data import Dataset, DataSpec, load_dataset, validate_for_model
from onnxcar.errors import DataError
from onnxcar.importance.backends import BackendConfig, open_backend
from onnxcar.importance.data import Batch, DataScorer
from onnxcar.importance.evaluator import Task
from onnxcar.progress import Progress, silent
from onnxcar.runners.config import RunnerConfig
from onnxcar.runners import make_runner

log = logging.getLogger(__name__)


def make_batch(model: onnx.ModelProto, dataset: Dataset, task: Task, config: RunnerConfig) -> Batch:
    """Checks ``dataset`` against ``model`` before any long work, and labels it if it has no labels.

    Without labels, the original model's top-1 predictions are the labels (agreement mode).
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
        inputs = {name: dataset.images}
        if dataset.labels is not None:
            return Batch(inputs, dataset.labels)
        if task.kind != "classification":
            raise DataError("regression needs targets in the data", arguments=("labels_key",))
        log.info("no labels: using the original model's top-1 predictions (agreement mode)")
        predictions = [
            runner.run({name: dataset.images[i : i + config.batch_size]})[0].reshape(-1, width or 1).argmax(axis=1)
            for i in range(0, len(dataset), config.batch_size)
        ]
        return Batch(inputs, np.concatenate(predictions).astype(np.int64))


@contextlib.contextmanager
def open_scorer(model: onnx.ModelProto, data: DataSpec | None, task: Task, runner: RunnerConfig,
                backend: BackendConfig = BackendConfig(), *, keep_groups: bool = False,
                progress: Progress = silent) -> Iterator[DataScorer | None]:
    """The pruning-set scorer of ``data`` (None without data). Its backend connects before the data
    is read, so a cluster that cannot be reached fails before any work; both close on exit."""
    if data is None:
        yield None
        return
    evaluation = open_backend(backend)
    scorer = None
    try:
        scorer = DataScorer(make_batch(model, load_dataset(data), task, runner), task, runner, progress=progress,
                            keep_groups=keep_groups, backend=evaluation)
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
