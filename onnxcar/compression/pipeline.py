"""Deep Compression (Han et al. 2016) after filter pruning: weight pruning, weight sharing, trained quantization,
entropy coding, each stage measured; the result is a runnable model and the container that restores it."""

import logging
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from onnxcar.api import ModelLike, _model as load_model_like
from onnxcar.bridge.finetune_config import FinetuneConfig
from onnxcar.bridge.writeback import set_initializers
from onnxcar.compression.config import CompressConfig
from onnxcar.compression.container import MAX_MODEL_BYTES, pack, unpack
from onnxcar.compression.kmeans import Codebook, share_weights
from onnxcar.compression.layers import WeightLayer, weight_layers
from onnxcar.compression.magnitude import prune_smallest
from onnxcar.compression.result import CompressResult, checkpoint_paths
from onnxcar.compression.sensitivity import scan
from onnxcar.compression.sizes import size_table
from onnxcar.data import DataSpec, load_dataset
from onnxcar.errors import VerificationError
from onnxcar.importance.batch import evaluate, make_batch
from onnxcar.tasks import Task
from onnxcar.progress import Progress, silent

log = logging.getLogger(__name__)

def select_layers(model: onnx.ModelProto, config: CompressConfig) -> list[WeightLayer]:
    """The layers ``config`` compresses, after checking that its per-layer settings name only those (or kinds)."""
    layers = weight_layers(model, config.layers)
    for values, what in ((config.sparsity, "sparsity"), (config.bits, "bits"), (config.index_bits, "index_bits")):
        if values is not None:
            values.check(layers, what)
    return layers


def compress(model: ModelLike, config: CompressConfig, data: DataSpec, *, val: DataSpec | None = None,
             test: DataSpec | None = None, original: ModelLike | None = None, teacher: ModelLike | None = None,
             checkpoint: str | os.PathLike | None = None, resume: bool = False,
             progress: Progress = silent) -> CompressResult:
    """Compresses ``model``'s weight layers; ``original`` is the model before filter pruning (default: ``model``).

    ``data`` trains the fine-tuning stages, distilling from ``teacher`` when given; ``val``
    (default ``data``) picks their best epoch, runs the sensitivity scan and is measured
    after every stage, as ``test`` is when given. ``checkpoint`` is the prefix of the
    fine-tuning checkpoints (see ``checkpoint_paths``); ``resume`` continues from them, and
    ``result.save`` deletes them.

    >>> result = onnxcar.compress("pruned.onnx", onnxcar.CompressConfig(sparsity=onnxcar.LayerValues(0.8)), train,
    ...                            val=prune_set, original="model.onnx")
    >>> result.sizes.totals()[0].ratio, result.save("small.onnx")
    """
    proto, source = load_model_like(model)
    layers = select_layers(proto, config)
    (original_proto, original_source), (teacher_proto, teacher_source) = (
        (None, None) if m is None else load_model_like(m) for m in (original, teacher))
    settings = {"model": source, "original": original_source or source, "teacher": teacher_source,
                "config": config.to_dict(), "data": data.to_dict(), "val_data": (val or data).to_dict(),
                "test_data": None if test is None else test.to_dict()}
    prefix = None if checkpoint is None else Path(checkpoint)
    train = load_dataset(data)
    run = _Run(proto, config, train, train if val is None else load_dataset(val),
               None if test is None else load_dataset(test), teacher_proto, prefix, resume, progress)
    weights = {layer.tensor: _array(proto, layer.tensor) for layer in layers}
    run.measure("input", proto)

    sensitivity = None
    if config.max_drop is not None:
        began = time.perf_counter()
        sensitivity = scan(proto, layers, weights, run.val_top1, config.max_drop, config.scan_step, progress)
        run.timings["sensitivity_scan"] = time.perf_counter() - began
        sparsity = sensitivity.sparsity
    else:
        sparsity = {layer.name: config.sparsity.get(layer, "sparsity", fallback=0.0) for layer in layers}
    targets = {layer.tensor: sparsity[layer.name] for layer in layers}
    if config.gradual:
        trained = run.finetune("retrain", proto, config.retrain, prune_to=targets)
        current = set_initializers(trained, {name: prune_smallest(_array(trained, name), s)  # exactly as scheduled
                                             for name, s in targets.items()})
        run.measure("gradual pruning with retraining", current)
    else:
        current = set_initializers(proto, {name: prune_smallest(weights[name], s) for name, s in targets.items()})
        run.measure("weight pruning", current)
        if config.retrain is not None:
            current = run.finetune("retrain", current, replace(config.retrain, keep_sparsity=True))
            run.measure("retraining", current)

    bits = {layer.name: int(config.bits.get(layer, "bits")) for layer in layers}
    began = time.perf_counter()
    codebooks = {}
    for number, layer in enumerate(layers):
        progress("weight sharing", number, len(layers), layer.name)
        codebooks[layer.tensor] = share_weights(_array(current, layer.tensor), bits[layer.name], config.codebook_dtype)
    progress("weight sharing", len(layers), len(layers), "")
    run.timings["weight_sharing"] = time.perf_counter() - began
    current = _materialise(current, codebooks)
    run.measure("weight sharing", current)
    if config.finetune is not None:
        trained = run.finetune("quantize", current, config.finetune,
                               shared={name: (c.centroids, c.index) for name, c in codebooks.items()})
        codebooks = {name: c.refit(_array(trained, name), config.codebook_dtype, f"weight {name!r}")
                     for name, c in codebooks.items()}
        current = _materialise(trained, codebooks)
        run.measure("trained quantization", current)

    began = time.perf_counter()
    widths = {layer.tensor: int(config.index_bits.get(layer, "index_bits")) for layer in layers}
    packed = pack(current, widths)
    if unpack(packed.data, max_decoded_bytes=MAX_MODEL_BYTES).SerializeToString() != current.SerializeToString():
        raise VerificationError("the container does not restore the compressed model bit for bit")
    run.timings["entropy_coding"] = time.perf_counter() - began
    return CompressResult(
        model=current, container=packed.data, sizes=size_table(packed, layers, original_proto or proto),
        layers=layers, sparsity=sparsity, bits=bits, accuracy=run.accuracy, sensitivity=sensitivity,
        finetuning=run.summaries, timings=run.timings, settings=settings, checkpoint=prefix,
    )


class _Run:
    """The data, measurements, timings and fine-tuning stages of one compression run."""

    def __init__(self, model, config: CompressConfig, data, val, test, teacher, checkpoint, resume, progress):
        self.config, self.data, self.val, self.teacher = config, data, val, teacher
        self.resume, self.progress = resume, progress
        self.task = Task()
        self.val_batch = make_batch(model, val, self.task, config.runner)
        self.test_batch = None if test is None else make_batch(model, test, self.task, config.runner)
        self.checkpoints = checkpoint_paths(checkpoint) if checkpoint is not None else {}
        self.accuracy: list[dict] = []
        self.summaries: dict[str, dict] = {}
        self.timings: dict[str, float] = {}

    def val_top1(self, model: onnx.ModelProto) -> float:
        return evaluate(model, self.val_batch, self.config.runner)["top1"]

    def measure(self, stage: str, model: onnx.ModelProto) -> None:
        """Records validation (and test) top-1 of ``model`` after ``stage``."""
        began = time.perf_counter()
        record = {"stage": stage}
        for name, batch in (("val", self.val_batch), ("test", self.test_batch)):
            if batch is not None:
                bar = _relabelled(self.progress, f"{stage}: {name} top-1")
                record[name] = evaluate(model, batch, self.config.runner, bar)["top1"]
        log.info("after %s: %s", stage, record)
        self.accuracy.append(record)
        self.timings["evaluation"] = self.timings.get("evaluation", 0.0) + time.perf_counter() - began

    def finetune(self, stage: str, model: onnx.ModelProto, config: FinetuneConfig, shared=None,
                 prune_to=None) -> onnx.ModelProto:
        """Fine-tunes through the torch bridge (torch is imported here, only when a run fine-tunes); the
        model of the best epoch on the validation data, or ``model`` itself when no epoch beat it (never
        when pruning gradually: ``model`` is then still dense)."""
        from onnxcar.bridge import require_torch

        require_torch(f"the {stage} stage")
        from onnxcar.bridge.finetune import finetune

        def on_batch(epoch: int, step: int, steps: int) -> None:
            self.progress(f"{stage} epoch {epoch}/{config.epochs}", step, steps)

        def on_epoch(record: dict) -> None:
            log.info("%s epoch %d: %s", stage, record["epoch"], record)

        result = finetune(model, self.data, self.val, config, teacher=self.teacher,
                          checkpoint=self.checkpoints.get(stage), resume=self.resume, on_batch=on_batch,
                          on_epoch=on_epoch, shared=shared, prune_to=prune_to)
        kept = bool(prune_to) or result.after > result.before
        self.summaries[stage] = {**result.summary(), "kept": "best epoch" if kept else "input"}
        self.timings[stage] = result.seconds
        if not kept:
            log.warning("%s: no epoch beat the model before training (val %.4f); it is kept", stage, result.before)
        return result.model if kept else model


def _array(model: onnx.ModelProto, name: str) -> np.ndarray:
    return numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == name))


def _materialise(model: onnx.ModelProto, codebooks: dict[str, Codebook]) -> onnx.ModelProto:
    """``model`` with each coded weight set to its codebook's values."""
    return set_initializers(model, {name: codebook.weights() for name, codebook in codebooks.items()})


def _relabelled(progress: Progress, label: str) -> Progress:
    """``progress`` with every report under ``label``."""
    return lambda task, done, total, status="": progress(label, done, total, status)
