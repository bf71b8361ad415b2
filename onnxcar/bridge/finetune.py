"""Fine-tuning an ONNX model through the torch bridge; the best epoch's weights go back into the graph."""

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from onnxcar.bridge.module import OnnxModule
from onnxcar.bridge.writeback import write_back
from onnxcar.data import Dataset, validate_for_model
from onnxcar.errors import OnnxcarError
from onnxcar.runners.torch_runner import GraphSignature, torch_device

log = logging.getLogger(__name__)

PAD = 4  # pixels of zero padding around an image before its random crop
_CHOICES = {"optimizer": ("sgd", "adamw"), "schedule": ("cosine", "step"), "task": ("classification", "regression")}


@dataclass(frozen=True)
class FinetuneConfig:
    """How to fine-tune.

    ``schedule`` cosine anneals the learning rate to 0 over ``epochs``; step divides it
    by 10 every third of them. ``momentum`` is SGD's (Nesterov); AdamW has its own.
    ``augment`` pads images by PAD pixels, crops at random and flips half of them.
    ``keep_sparsity`` keeps every weight that starts at exactly zero at zero.
    ``distill_weight`` and ``temperature`` apply when a teacher is given.
    """

    epochs: int = 10
    lr: float = 0.01
    batch_size: int = 64
    optimizer: str = "sgd"
    schedule: str = "cosine"
    weight_decay: float = 5e-4
    momentum: float = 0.9
    augment: bool = True
    keep_sparsity: bool = False
    distill_weight: float = 0.5
    temperature: float = 4.0
    device: str = "auto"
    seed: int = 0
    task: str = "classification"

    def __post_init__(self):
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise OnnxcarError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        checks = {
            "epochs must be at least 1": self.epochs >= 1,
            "batch size must be at least 2 (BatchNorm trains on batch statistics)": self.batch_size >= 2,
            "the learning rate must be positive": self.lr > 0,
            "weight decay must not be negative": self.weight_decay >= 0,
            "momentum must be in [0, 1)": 0 <= self.momentum < 1,
            "the distillation weight must be in [0, 1]": 0 <= self.distill_weight <= 1,
            "the temperature must be positive": self.temperature > 0,
        }
        failed = [message for message, ok in checks.items() if not ok]
        if failed:
            raise OnnxcarError(failed[0])

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FinetuneResult:
    """The model holding the best epoch's weights, and one record per epoch (epoch 0: before training)."""

    model: onnx.ModelProto
    history: list[dict]
    best_epoch: int
    metric: str  # "top1" (higher is better) or "mse"
    seconds: float

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


def checkpoint_path(output: Path) -> Path:
    return output.with_name(output.name + ".ckpt")


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
) -> FinetuneResult:
    """Trains ``model``'s float weights on ``train``; returns the graph with the weights of the best epoch on ``val``.

    Classification minimises cross-entropy, mixed with distillation from ``teacher``
    (distillation alone when ``train`` has no labels; ``val`` without labels is scored
    against the teacher's top-1). Regression minimises MSE. ``checkpoint`` is saved
    after every epoch; ``resume`` continues from it. ``on_batch(epoch, step, steps)``
    and ``on_epoch(record)`` report progress.
    """
    start = time.perf_counter()
    trainer = _Trainer(model, train, val, config, teacher)
    run_id = _fingerprint(model, teacher, train, val, config)
    if checkpoint is not None and checkpoint.exists():
        if not resume:
            raise OnnxcarError(f"{checkpoint} exists from an earlier run: pass --resume to continue it, or --force")
        trainer.load(_load_checkpoint(checkpoint, run_id))
    for epoch in range(len(trainer.history), config.epochs + 1):  # epoch 0: the model before training
        began = time.perf_counter()
        lr = trainer.optimizer.param_groups[0]["lr"] if epoch else None
        loss = trainer.train_epoch(epoch, on_batch) if epoch else None
        record = {"epoch": epoch, "train_loss": loss, "lr": lr, "val": trainer.evaluate(),
                  "seconds": round(time.perf_counter() - began, 3)}
        trainer.add(record)
        if checkpoint is not None:
            _save_checkpoint(checkpoint, trainer.state(run_id))
        if on_epoch:
            on_epoch(record)
    if trainer.best_state is None:
        raise OnnxcarError("no epoch gave a finite validation metric: lower --lr")
    trainer.module.load_state_dict(trainer.best_state)
    return FinetuneResult(write_back(model, trainer.module), trainer.history, trainer.best_epoch, trainer.metric,
                          time.perf_counter() - start)


class _Trainer:
    """The module, optimiser, schedule, data, RNG and history of one fine-tuning run."""

    def __init__(self, model, train: Dataset, val: Dataset, config: FinetuneConfig, teacher):
        _check_data(model, train, config.task, "training data")
        _check_data(model, val, config.task, "validation data")
        if teacher is not None:
            _check_data(teacher, val, config.task, "validation data for the teacher")
        if len(train) < 2:
            raise OnnxcarError("fine-tuning needs at least 2 training samples")
        self.config = config
        self.regression = config.task == "regression"
        self.metric = "mse" if self.regression else "top1"
        self.device = torch_device(config.device)
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.module = OnnxModule(model).to(self.device)
        self.teacher = None if teacher is None else OnnxModule(teacher).to(self.device).eval()
        self.distill = _distill_weight(config, train.labels is not None, teacher is not None)
        params = _trainable(self.module)
        self.masks = _freeze_zeros(params) if config.keep_sparsity else []
        self.optimizer = _optimizer(params, config)
        self.scheduler = _scheduler(self.optimizer, config)
        self.layout = _augment_layout(train) if config.augment else None
        self.train_x = _tensor(train.images)
        self.train_y = None if train.labels is None else _targets(train)
        self.val_x = _tensor(val.images)
        if val.labels is None and self.teacher is None:
            raise OnnxcarError("the validation data has no labels: give a teacher (--teacher) to measure agreement")
        self.val_y = self._teacher_labels(self.val_x) if val.labels is None else _targets(val)
        self.history: list[dict] = []
        self.best_state: dict | None = None
        self.best_epoch = 0

    def train_epoch(self, epoch: int, on_batch) -> float:
        """One pass over shuffled training batches; returns the mean loss."""
        self.module.train()
        order = torch.randperm(len(self.train_x), generator=self.generator)
        batches = [b for b in order.split(self.config.batch_size) if len(b) > 1]  # BatchNorm needs 2 samples
        total = 0.0
        for step, index in enumerate(batches, 1):
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
            total += float(loss.detach()) * len(index)
            if on_batch:
                on_batch(epoch, step, len(batches))
        self.scheduler.step()
        mean = total / sum(len(b) for b in batches)
        if not math.isfinite(mean):
            raise OnnxcarError(f"training diverged in epoch {epoch} (loss {mean}): lower --lr")
        return mean

    def _loss(self, logits, x, index):
        if self.regression:
            return F.mse_loss(logits, self.train_y[index].to(self.device, logits.dtype).reshape(logits.shape))
        loss = 0.0
        if self.distill < 1:
            loss = (1 - self.distill) * F.cross_entropy(logits, self.train_y[index].to(self.device))
        if self.distill > 0:
            soft = self._teacher_logits(x)
            if soft.shape != logits.shape:
                raise OnnxcarError(f"the teacher gives {soft.shape[1]} outputs per sample, the model {logits.shape[1]}")
            t = self.config.temperature
            kl = F.kl_div(F.log_softmax(logits / t, dim=1), F.log_softmax(soft / t, dim=1),
                          reduction="batchmean", log_target=True)
            loss = loss + self.distill * t * t * kl
        return loss

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
        """Appends ``record``; keeps the weights of the best trained epoch (ties: the earliest)."""
        self.history.append(record)
        if record["epoch"] > 0 and self._better(record["val"]):
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

    def load(self, state: dict) -> None:
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.best_state, self.best_epoch, self.history = state["best_state"], state["best_epoch"], state["history"]
        torch.set_rng_state(state["rng"])
        if state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.generator.set_state(state["generator"])


def augment(images: torch.Tensor, layout: str, generator: torch.Generator) -> torch.Tensor:
    """Per image: zero-pad by PAD pixels, crop back to size at a random offset, flip horizontally half the time."""
    nchw = images if layout == "NCHW" else images.permute(0, 3, 1, 2)
    n, _, h, w = nchw.shape
    padded = F.pad(nchw, (PAD,) * 4)
    dy, dx = torch.randint(0, 2 * PAD + 1, (2, n, 1, 1), generator=generator)
    flip = torch.rand(n, 1, 1, generator=generator) < 0.5
    rows = dy + torch.arange(h).view(1, h, 1)
    cols = dx + torch.arange(w).view(1, 1, w)
    cols = torch.where(flip, cols.flip(2), cols)
    out = padded[torch.arange(n).view(n, 1, 1), :, rows, cols]  # advanced indices first: N, H, W, C
    return out if layout == "NHWC" else out.permute(0, 3, 1, 2)


def _augment_layout(ds: Dataset) -> str | None:
    """NCHW or NHWC for 4-D image data, else None (augmentation off, with a warning)."""
    shape = ds.images.shape
    if len(shape) != 4:
        log.warning("augmentation off: inputs shaped %s are not (N, C, H, W) or (N, H, W, C) images", shape)
        return None
    if not ds.spec.preprocess.passthrough:
        return ds.spec.preprocess.layout
    return "NHWC" if shape[3] in (1, 3) and shape[1] not in (1, 3) else "NCHW"


def _check_data(model: onnx.ModelProto, ds: Dataset, task: str, what: str) -> None:
    """Raises OnnxcarError unless ``ds`` fits the model's only input and, when labelled, its output."""
    signature = GraphSignature(model.graph)
    inputs = signature.get_inputs()
    if len(inputs) != 1:
        raise OnnxcarError(f"fine-tuning needs a model with one input; this one has {[i.name for i in inputs]}")
    shape = signature.get_outputs()[0].shape
    width = shape[-1] if shape and isinstance(shape[-1], int) and shape[-1] > 0 else None
    try:
        validate_for_model(ds, inputs[0].shape, inputs[0].type, width, task)
    except OnnxcarError as err:
        raise OnnxcarError(f"{what}: {err}") from None


def _distill_weight(config: FinetuneConfig, labelled: bool, has_teacher: bool) -> float:
    if not has_teacher:
        if not labelled:
            raise OnnxcarError("the training data has no labels: give a teacher (--teacher) to distil from")
        return 0.0
    if config.task == "regression":
        raise OnnxcarError("distillation (--teacher) is for classification")
    return config.distill_weight if labelled else 1.0


def _trainable(module: OnnxModule) -> list[torch.nn.Parameter]:
    """The parameters that train: float initializers of more than one entry.

    Single values (clip bounds, epsilons, exponents, scale constants) stay fixed.
    """
    params = []
    for param in module.parameters():
        param.requires_grad_(param.numel() > 1)
        if param.requires_grad:
            params.append(param)
    if not params:
        raise OnnxcarError("the model has no float weights to train")
    return params


def _freeze_zeros(params: list[torch.nn.Parameter]) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
    """(parameter, mask of its nonzero entries) for each parameter holding zeros; a hook masks their gradients."""
    masks = []
    for param in params:
        keep = (param.detach() != 0).to(param.dtype)
        if bool((keep == 0).any()):
            param.register_hook(lambda grad, keep=keep: grad * keep)
            masks.append((param, keep))
    return masks


def _optimizer(params: list[torch.nn.Parameter], config: FinetuneConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0,
                           weight_decay=config.weight_decay)


def _scheduler(optimizer: torch.optim.Optimizer, config: FinetuneConfig):
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, config.epochs // 3), gamma=0.1)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.require(array, requirements=["C", "W"]))


def _targets(ds: Dataset) -> torch.Tensor:
    """Class ids (int64) or regression targets (float)."""
    labels = ds.labels if ds.labels.dtype.kind == "f" else ds.labels.astype(np.int64)
    return _tensor(labels)


def _first(outputs):
    """The first graph output of a forward pass (the logits or predictions)."""
    return outputs[0] if isinstance(outputs, tuple) else outputs


def _fingerprint(model, teacher, train: Dataset, val: Dataset, config: FinetuneConfig) -> str:
    """Identifies a run: the model and teacher bytes, the data specs and sizes, and the config."""
    digest = hashlib.sha256(model.SerializeToString())
    if teacher is not None:
        digest.update(teacher.SerializeToString())
    settings = {"config": config.to_dict(), "train": train.spec.to_dict(), "val": val.spec.to_dict(),
                "sizes": [len(train), len(val)]}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


def _save_checkpoint(path: Path, state: dict) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def _load_checkpoint(path: Path, run_id: str) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise OnnxcarError(f"cannot read checkpoint {path}: {first}; delete it to start afresh") from None
    if not isinstance(state, dict) or state.get("run") != run_id:
        raise OnnxcarError(f"{path} belongs to a different model, data or settings; delete it to start afresh")
    return state
