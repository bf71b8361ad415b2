"""Pipeline stages: what each ``[[stages]]`` kind does to the model. New kinds register here.

A stage kind declares its options (with the CLI's names) and a builder; the built stage
checks itself against a model before any long work, and runs on the model of the stage
before it::

    @register_stage("quantize", {"bits": "int"})
    def _quantize(options: dict) -> Stage: ...
"""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import onnx

from onnxcar.data import DataSpec
from onnxcar.errors import OnnxcarError
from onnxcar.progress import Progress
from onnxcar.registry import Registry
from onnxcar.importance.backends import BackendConfig
from onnxcar.runners.config import RunnerConfig


@dataclass
class StageContext:
    """What a running stage may use: data by role, the runner, the recipe's original model, and a
    work folder that survives a kill (for journals and checkpoints) until the stage completes."""

    data: dict[str, DataSpec]
    runner: RunnerConfig
    original: onnx.ModelProto
    workdir: Path
    progress: Progress
    input_shapes: dict[str, tuple[int, ...]] | None = None  # the recipe's, where the model leaves dims symbolic
    backend: BackendConfig = BackendConfig()  # where candidate evaluation runs (results do not depend on it)


@dataclass
class StageOutput:
    """A stage's model, its report, the metrics gates may read (``top1_drop``...), and files that go
    with the model (by suffix: ``{"onnxz": container}``) while no later stage changes it."""

    model: onnx.ModelProto
    report: dict
    metrics: dict = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


class Stage(Protocol):
    kind: str
    roles: tuple[str, ...]  # the data roles it reads
    metrics: tuple[str, ...]  # the metrics its output holds, for checking gates up front

    def settings(self) -> dict:
        """Everything that changes the stage's output (its cache key) as JSON."""
        ...

    def check(self, model: onnx.ModelProto, data: dict[str, DataSpec]) -> None:
        """Raises an OnnxcarError if the stage cannot run on ``model`` with ``data``."""
        ...

    def run(self, model: onnx.ModelProto, context: StageContext) -> StageOutput: ...


@dataclass(frozen=True)
class StageKind:
    name: str
    options: dict[str, str]  # option name -> type name (see schema.TYPES)
    build: Callable[[dict], Stage]


def _builtins() -> None:
    from onnxcar.pipeline import builtin_stages, compress_stage  # noqa: F401  (their decorators register)


STAGES: Registry[StageKind] = Registry("stage kind", _builtins)


def register_stage(name: str, options: dict[str, str]):
    """Registers the decorated builder (options -> Stage) as the stage kind ``name``."""

    def decorate(build: Callable[[dict], Stage]):
        STAGES.add(name, StageKind(name, options, build))
        return build

    return decorate


def require_roles(stage: Stage, data: dict[str, DataSpec]) -> None:
    missing = [role for role in stage.roles if role not in data]
    if missing:
        raise OnnxcarError(f"the {stage.kind} stage reads data.{missing[0]}, which the recipe does not define")


def small(spec: DataSpec, count: int = 16) -> DataSpec:
    """At most ``count`` of the items ``spec`` selects: enough to check that the data fits a model."""
    return dataclasses.replace(spec, limit=min(spec.limit or count, count))
