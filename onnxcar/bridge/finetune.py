"""Fine-tuning an ONNX model through the torch bridge; the best epoch's weights go back into the graph.

This module holds the training loop. The config, augmentation, checkpoints, losses, data
checks and optimiser set-up live in sibling modules; ``__all__`` re-exports the public names.
"""

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import Callable

import numpy as np

import onnx
import torch

from onnxcar.artifacts import save_with_report
from onnxcar.bridge.augment import augment, augment_layout
from onnxcar.bridge.checkpoint import checkpoint_path, fingerprint, load_checkpoint, save_checkpoint, unusable
from onnxcar.bridge.finetune_config import FinetuneConfig
from onnxcar.bridge.finetune_data import check_data, targets, to_tensor
from onnxcar.bridge.finetune_optim import freeze_zeros, make_optimizer, make_scheduler, trainable
from onnxcar.bridge.gradual import RAMP_FRACTION, GradualPruning
from onnxcar.bridge.losses import classification_loss, distill_weight, regression_loss
from onnxcar.bridge.module import OnnxModule
from onnxcar.bridge.shared_weights import tie_weights
from onnxcar.bridge.writeback import write_back
from onnxcar.data import Dataset
from onnxcar.errors import OnnxcarError
from onnxcar.runners.torch_runner import torch_device

__all__ = ["FinetuneConfig", "FinetuneResult", "augment", "checkpoint_path", "finetune"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneResult:
    """The model holding the best epoch's weights, and one record per epoch (epoch 0: before training);
    ``save`` writes it and its report, then deletes the run's checkpoint."""

    model: onnx.ModelProto
    history: list[dict]
    best_epoch: int
    metric: str  # "top1" (higher is better) or "mse"
    seconds: float
    settings: dict = field(default_factory=dict)  # config, data, val_data, teacher: for the report
    source: str | None = None
    checkpoint: Path | None = None

    @property
    def before(self) -> float:
        return self.history[0]["val"]

    @property
    def after(self) -> float:
        return self.history[self.best_epoch]["val"]

    def summary(self) -> dict:
        return {
            "metric": self.metric, "before": self.before, "after": self.after, "best_epoch": self.best_epoch,
            "history": self.history, "seconds": round(self.seconds, 3),
        }

    @property
    def report(self) -> dict:
        return {"kind": "finetune", "version": 1, "model": self.source, **self.settings, **self.summary()}

    def save(self, path: str | Path, *, force: bool = False) -> tuple[Path, Path]:
        """Writes the model to ``path`` and the report beside it (.json); returns both paths."""
        paths = save_with_report(self.model, self.report, path, force=force, source=self.source)
        if self.checkpoint is not None:
            self.checkpoint.unlink(missing_ok=True)
        return paths


def finetune(
    model: onnx.ModelProto,
    train: Dataset,
    val: Dataset,
    config: FinetuneConfig,
    *,
    teacher: onnx.ModelProto | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
    on_batch: Callable[[int, int, int], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    shared: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    prune_to: Mapping[str, float] | None = None,
) -> FinetuneResult:
    """Trains ``model``'s float weights on ``train``; returns the graph with the weights of the best epoch on ``val``.

    Classification minimises cross-entropy, mixed with distillation from ``teacher``
    (distillation alone when ``train`` has no labels; ``val`` without labels is scored
    against the teacher's top-1). Regression minimises MSE. ``checkpoint`` is saved
    after every epoch; ``resume`` continues from it. ``on_batch(epoch, step, steps)``
    and ``on_epoch(record)`` report progress. ``shared`` maps weight initializers to
    (centroids, index) pairs: those weights are tied to their centroids, which train
    instead (trained quantization, see ``shared_weights``). ``prune_to`` maps weight
    initializers to the sparsity they reach gradually while training (see ``gradual``);
    then only epochs at that sparsity can be the best.
    """
    start = time.perf_counter()
    trainer = _Trainer(model, train, val, config, teacher, shared or {}, prune_to or {})
    run_id = fingerprint(model, teacher, train, val, config, shared or {}, prune_to or {})
    if checkpoint is not None and checkpoint.exists():
        if not resume:
            raise OnnxcarError(f"{checkpoint} exists from an earlier run: resume it, or start afresh",
                               arguments=("resume", "force"))
        trainer.load(load_checkpoint(checkpoint, run_id), checkpoint)
    for epoch in range(len(trainer.history), config.epochs + 1):  # epoch 0: the model before training
        began = time.perf_counter()
        lr = trainer.optimizer.param_groups[0]["lr"] if epoch else None
        loss = trainer.train_epoch(epoch, on_batch) if epoch else None
        record = {"epoch": epoch, "train_loss": loss, "lr": lr, "val": trainer.evaluate(),
                  "seconds": round(time.perf_counter() - began, 3)}
        trainer.add(record)
        if checkpoint is not None:
            save_checkpoint(checkpoint, trainer.state(run_id))
        if on_epoch:
            on_epoch(record)
    if trainer.best_state is None:
        raise OnnxcarError("no epoch gave a finite validation metric: lower the learning rate", arguments=("lr",))
    trainer.module.load_state_dict(trainer.best_state)
    return FinetuneResult(write_back(model, trainer.module), trainer.history, trainer.best_epoch, trainer.metric,
                          time.perf_counter() - start, checkpoint=checkpoint)


class _Trainer:
    """The module, optimiser, schedule, data, RNG and history of one fine-tuning run."""

    def __init__(self, model, train: Dataset, val: Dataset, config: FinetuneConfig, teacher, shared, prune_to):
        check_data(model, train, config.task, "training data")
        check_data(model, val, config.task, "validation data")
        if teacher is not None:
            check_data(teacher, val, config.task, "validation data for the teacher")
        if len(train) < 2:
            raise OnnxcarError("fine-tuning needs at least 2 training samples")
        self.config = config
        self.regression = config.task == "regression"
        self.metric = "mse" if self.regression else "top1"
        self.device = torch_device(config.device)
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.module = OnnxModule(model).to(self.device)
        tie_weights(self.module, shared)
        self.teacher = None if teacher is None else OnnxModule(teacher).to(self.device).eval()
        self.distill = distill_weight(config, train.labels is not None, teacher is not None)
        params = trainable(self.module)
        self.masks = freeze_zeros(params) if config.keep_sparsity else []
        self.steps_per_epoch = len(_batches(torch.arange(len(train)), config.batch_size))
        self.pruning = GradualPruning(self.module, prune_to, round(RAMP_FRACTION * config.epochs
                                                                   * self.steps_per_epoch)) if prune_to else None
        self.optimizer = make_optimizer(params, config)
        self.scheduler = make_scheduler(self.optimizer, config)
        self.layout = augment_layout(train) if config.augment else None
        if config.augment and self.layout is None:
            log.warning("augmentation off: inputs shaped %s are not (N, C, H, W) or (N, H, W, C) images",
                        train.images.shape)
        self.train_x = to_tensor(train.images)
        self.train_y = None if train.labels is None else targets(train)
        self.val_x = to_tensor(val.images)
        if val.labels is None and self.teacher is None:
            raise OnnxcarError("the validation data has no labels: give a teacher to measure agreement",
                               arguments=("teacher",))
        self.val_y = self._teacher_labels(self.val_x) if val.labels is None else targets(val)
        self.history: list[dict] = []
        self.best_state: dict | None = None
        self.best_epoch = 0

    def train_epoch(self, epoch: int, on_batch) -> float:
        """One pass over shuffled training batches; returns the mean loss."""
        self.module.train()
        order = torch.randperm(len(self.train_x), generator=self.generator)
        batches = _batches(order, self.config.batch_size)
        total = 0.0
        for step, index in enumerate(batches, 1):
            if self.pruning:
                self.pruning.update((epoch - 1) * len(batches) + step - 1)
            x = self.train_x[index]
            if self.layout:
                x = augment(x, self.layout, self.generator)
            x = x.to(self.device)
            loss = self._loss(_first(self.module(x)).reshape(len(x), -1), x, index)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            with torch.no_grad():
                for param, keep in self.masks:
                    param.mul_(keep)
            if self.pruning:
                self.pruning.apply()
            total += float(loss.detach()) * len(index)
            if on_batch:
                on_batch(epoch, step, len(batches))
        self.scheduler.step()
        if self.pruning:
            self.pruning.update(epoch * len(batches))
        mean = total / sum(len(b) for b in batches)
        if not math.isfinite(mean):
            raise OnnxcarError(f"training diverged in epoch {epoch} (loss {mean}): lower the learning rate",
                               arguments=("lr",))
        return mean

    def _loss(self, logits, x, index):
        if self.regression:
            return regression_loss(logits, self.train_y[index])
        labels = self.train_y[index] if self.distill < 1 else None
        soft = self._teacher_logits(x) if self.distill > 0 else None
        return classification_loss(logits, labels, soft, self.distill, self.config.temperature)

    @torch.no_grad()
    def _teacher_logits(self, x):
        return _first(self.teacher(x)).reshape(len(x), -1)

    @torch.no_grad()
    def _teacher_labels(self, images):
        batches = images.split(self.config.batch_size)
        return torch.cat([self._teacher_logits(x.to(self.device)).argmax(dim=1).cpu() for x in batches])

    @torch.no_grad()
    def evaluate(self) -> float:
        """Validation top-1 accuracy, or MSE, in eval mode."""
        self.module.eval()
        logits = torch.cat([
            _first(self.module(x.to(self.device))).reshape(len(x), -1).cpu().double()
            for x in self.val_x.split(self.config.batch_size)
        ])
        if self.regression:
            return float(((logits - self.val_y.double().reshape(logits.shape)) ** 2).mean())
        return float((logits.argmax(dim=1) == self.val_y).double().mean())

    def add(self, record: dict) -> None:
        """Appends ``record``; keeps the weights of the best trained epoch (ties: the earliest) among those
        at the final sparsity when pruning gradually."""
        self.history.append(record)
        pruned = self.pruning is None or self.pruning.complete_after(record["epoch"] * self.steps_per_epoch)
        if record["epoch"] > 0 and pruned and self._better(record["val"]):
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()}
            self.best_epoch = record["epoch"]

    def _better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best_state is None:
            return True
        best = self.history[self.best_epoch]["val"]
        return value < best if self.regression else value > best

    def state(self, run_id: str) -> dict:
        """Everything a resumed run needs, as tensors and plain containers (torch.load weights_only)."""
        return {
            "run": run_id,
            "model": {k: v.detach().cpu() for k, v in self.module.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "best_state": self.best_state,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "generator": self.generator.get_state(),
        }

    def load(self, state: dict, path: Path) -> None:
        """Restores a checkpoint that load_checkpoint accepted; OnnxcarError when its contents do not fit this run."""
        try:
            self.module.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"])
            if state["cuda_rng"]:
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            self.generator.set_state(state["generator"])
        except (RuntimeError, ValueError, TypeError, KeyError, IndexError) as err:
            raise unusable(path, err) from err
        self.best_state, self.best_epoch, self.history = state["best_state"], state["best_epoch"], state["history"]


def _batches(order: torch.Tensor, size: int) -> list[torch.Tensor]:
    """``order`` split into batches of ``size``, without a last batch of one (BatchNorm needs 2 samples)."""
    return [b for b in order.split(size) if len(b) > 1]


def _first(outputs):
    """The first graph output of a forward pass (the logits or predictions)."""
    return outputs[0] if isinstance(outputs, tuple) else outputs
