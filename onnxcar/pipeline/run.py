"""Runs a recipe: checks everything up front, then each stage, reusing finished stages from a cache.

A stage's output is cached under a key made of its input model's content, its settings, the
content of the data it reads and the runner settings; a rerun skips finished stages whose
entries verify (see ``cache``), and a killed run resumes inside the stage it was in (pruning
journals, fine-tuning checkpoints).
"""

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from onnxcar.data import DataSpec
from onnxcar.errors import OnnxcarError
from onnxcar.graph import analyze
from onnxcar.graph.cost import plan_cost
from onnxcar.graph.shapes import require_input_shapes, resolve_input_shapes, tensor_shapes
from onnxcar.io import atomic_write, load_model, save_model
from onnxcar.pipeline.cache import read_entry, write_entry
from onnxcar.latency import measure_latency
from onnxcar.pipeline.gates import GateResult, check_gates
from onnxcar.pipeline.recipe import CACHE, MARKER, Recipe
from onnxcar.pipeline.schema import refine
from onnxcar.pipeline.stages import Stage, StageContext, StageOutput
from onnxcar.progress import Progress, silent
from onnxcar.report import dumps, write_json
from onnxcar.surgery.plan import Plan

log = logging.getLogger(__name__)
REPORT_VERSION = 1


@dataclass
class StageRecord:
    kind: str
    settings: dict
    cached: bool
    seconds: float
    report: dict
    metrics: dict

    def to_dict(self) -> dict:
        return {"kind": self.kind, "settings": self.settings, "cached": self.cached, "seconds": round(self.seconds, 3),
                "report": self.report, "metrics": self.metrics}


@dataclass
class PipelineResult:
    """What a recipe run produced: the final model's path, each stage, the metrics and the gates."""

    recipe: Recipe
    model_path: Path
    report_path: Path
    stages: list[StageRecord]
    metrics: dict
    gates: list[GateResult]
    seconds: float
    dry_run: bool = False
    plan: list[dict] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)  # what goes with the final model, by suffix

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    @property
    def report(self) -> dict:
        return {
            "kind": "pipeline", "version": REPORT_VERSION, "recipe": str(self.recipe.source),
            "model": str(self.recipe.model), "output": str(self.model_path),
            "files": {suffix: str(path) for suffix, path in self.files.items()}, "passed": self.passed,
            "stages": [s.to_dict() for s in self.stages], "metrics": self.metrics,
            "gates": [g.to_dict() for g in self.gates], "seconds": round(self.seconds, 3),
        }


def plan(recipe: Recipe) -> list[dict]:
    """The stages in order, with what each reads: the dry run's output."""
    return [{"stage": i, "kind": s.kind, "data": list(s.roles), "settings": s.settings()}
            for i, s in enumerate(recipe.stages)]


def check_recipe(recipe: Recipe, output_dir: Path, *, force: bool = False) -> onnx.ModelProto:
    """Everything that can fail before long work: the output folder, the model, each stage against
    the model and the data it reads. Returns the loaded model."""
    _check_output_dir(recipe, output_dir, force=force)
    source = str(recipe.source)
    model = refine(source, "model", lambda: load_model(recipe.model))
    shapes = refine(source, "input_shapes", lambda: resolve_input_shapes(model, recipe.input_shapes))
    for index, stage in enumerate(recipe.stages):
        where = f"stages[{index}] ({stage.kind})"
        refine(source, where, lambda: stage.check(model, recipe.data))
        if getattr(stage, "needs_input_shapes", False):
            refine(source, where, lambda: require_input_shapes(model, shapes, "checking the pruned model"))
    for gate in _SIZED_GATES.intersection(recipe.gates):
        refine(source, f"gates.{gate}",
               lambda: require_input_shapes(model, shapes, "measuring the final model", data=False))
    return model


_SIZED_GATES = {"max_macs", "max_latency_ms"}  # gates whose metric needs the size of every input


def _check_output_dir(recipe: Recipe, output_dir: Path, *, force: bool) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise OnnxcarError(f"the output folder {output_dir} is a file")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not (output_dir / MARKER).exists() and not force:
        raise OnnxcarError(f"{output_dir} holds files of something else: choose an empty or new folder, or force",
                           arguments=("output_dir", "force"))
    inputs = recipe.inputs()
    for name in (recipe.outputs.model, recipe.outputs.report):
        if (output_dir / name).resolve() in inputs:
            raise OnnxcarError(f"{recipe.source}: outputs: {output_dir / name} is also an input of the recipe")
        if (output_dir / name).is_dir():
            raise OnnxcarError(f"{recipe.source}: outputs: {output_dir / name} is a folder")


def run_recipe(recipe: Recipe, output_dir: str | Path, *, dry_run: bool = False, force: bool = False,
               progress: Progress = silent) -> PipelineResult:
    """Runs ``recipe`` into ``output_dir``: the final model, ``report.json``, and the stage cache.

    ``dry_run`` checks everything and returns the plan without running a stage. Gates that fail
    are in the result (``passed`` is False); the artifacts are written all the same.
    """
    start = time.perf_counter()
    output_dir = Path(output_dir)
    original = check_recipe(recipe, output_dir, force=force)
    model_path, report_path = output_dir / recipe.outputs.model, output_dir / recipe.outputs.report
    if dry_run:
        return PipelineResult(recipe, model_path, report_path, [], {}, [], time.perf_counter() - start, True,
                              plan(recipe))
    cache = output_dir / CACHE
    cache.mkdir(parents=True, exist_ok=True)
    (output_dir / MARKER).touch()
    roles_read = {role for stage in recipe.stages for role in stage.roles}
    fingerprints = {role: data_fingerprint(spec) for role, spec in recipe.data.items() if role in roles_read}
    model, records, metrics, files = original, [], {}, {}
    total = len(recipe.stages)
    for index, stage in enumerate(recipe.stages):
        progress("recipe", index, total, f"stage {index} ({stage.kind})")
        key = _stage_key(model, stage, recipe, fingerprints)
        record, output, output_files = _run_stage(index, stage, key, model, recipe, original, cache, progress)
        if output is not model or output_files:  # a new model: files of an earlier one no longer go with it
            files = output_files
        model = output
        records.append(record)
        metrics.update(record.metrics)
    progress("recipe", total, total, "measuring")
    save_model(model, model_path, force=True)
    paths = {suffix: model_path.with_suffix(f".{suffix}") for suffix in files}
    for suffix, data in files.items():
        atomic_write(paths[suffix], lambda f, data=data: f.write(data))
    metrics.update(_measured(original, model, len(files["onnxz"]) if "onnxz" in files else model.ByteSize(), recipe))
    gates = check_gates(recipe.gates, metrics)
    result = PipelineResult(recipe, model_path, report_path, records, metrics, gates, time.perf_counter() - start,
                            files=paths)
    write_json(result.report, report_path)
    return result


def _run_stage(index: int, stage: Stage, key: str, model: onnx.ModelProto, recipe: Recipe,
               original: onnx.ModelProto, cache: Path,
               progress: Progress) -> tuple[StageRecord, onnx.ModelProto, dict[str, bytes]]:
    """Runs one stage, or takes its output (model, record and files) from the cache."""
    stem = cache / f"{index:02d}-{stage.kind}-{key[:16]}"
    entry = read_entry(stem, key)
    if entry is not None:
        record = StageRecord(**{**entry.record, "cached": True})
        return record, model if entry.model is None else entry.model, entry.files
    workdir = stem.with_suffix(".work")
    workdir.mkdir(exist_ok=True)
    began = time.perf_counter()
    context = StageContext(recipe.data, recipe.runner, original, workdir, progress, recipe.input_shapes,
                           recipe.backend)
    output: StageOutput = stage.run(model, context)
    record = StageRecord(stage.kind, stage.settings(), False, time.perf_counter() - began, output.report,
                         output.metrics)
    unchanged = output.model is model  # an evaluation: nothing new to keep
    write_entry(stem, key, record.to_dict(), None if unchanged else output.model, output.files)
    shutil.rmtree(workdir, ignore_errors=True)
    return record, output.model, output.files


def _stage_key(model: onnx.ModelProto, stage: Stage, recipe: Recipe, fingerprints: dict[str, str]) -> str:
    digest = hashlib.sha256(model.SerializeToString())
    settings = {"kind": stage.kind, "settings": stage.settings(), "runner": recipe.runner.to_dict(),
                "data": {role: [recipe.data[role].to_dict(), fingerprints[role]] for role in stage.roles},
                "input_shapes": recipe.input_shapes}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def data_fingerprint(spec: DataSpec) -> str:
    """The content hash of the file, or of every file under the folder, that ``spec`` reads."""
    path = Path(spec.path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode() + b"\0")
        with open(file, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def _measured(original: onnx.ModelProto, model: onnx.ModelProto, size: int, recipe: Recipe) -> dict:
    """The metrics every run measures on its final model, whose artifact is ``size`` bytes."""
    cost = plan_cost(Plan(analyze(model), frozenset()),
                     tensor_shapes(model, resolve_input_shapes(model, recipe.input_shapes)))
    measured = {"params": cost.params, "macs": cost.macs, "size_bytes": size,
                "original_size_bytes": original.ByteSize(), "size_ratio": original.ByteSize() / size}
    if "max_latency_ms" in recipe.gates:
        latency = measure_latency(model, batch=1, threads=recipe.runner.threads, input_shapes=recipe.input_shapes)
        measured.update(latency_ms=latency.median_ms, latency=latency.to_dict())
    return measured
