"""Recipes: a TOML file naming a model, its data by role, the stages to run, the gates and the outputs.

    model = "model.onnx"
    [data.prune]
    path = "prune.npz"
    preprocess = "cifar10"
    [[stages]]
    kind = "prune"
    criterion = "car"
    layers = ["conv1"]
    ratio = 0.5
    [gates]
    max_top1_drop = 1.0
    [input_shapes]          # for a model whose height and width are symbolic
    x = [1, 3, 48, 192]

Relative paths are relative to the recipe's folder. Every key is checked up front; a mistake is
one error that names the key (or, for TOML syntax, the line).
"""

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from onnxcar.data import DataSpec
from onnxcar.data.options import data_spec
from onnxcar.pipeline.gates import GATES
from onnxcar.pipeline.schema import RecipeError, refine, take
from onnxcar.pipeline.stages import STAGES, Stage
from onnxcar.importance.backends import BACKENDS, BackendConfig
from onnxcar.runners.config import RunnerConfig

ROLES = ("prune", "train", "val", "test")
_TOP_LEVEL = {"model", "data", "stages", "gates", "runner", "backend", "outputs", "input_shapes"}
_DATA = {"path": "str", "preprocess": "str", "images_key": "str", "labels_key": "str", "no_labels": "bool",
         "resize": "int", "crop": "int", "mean": "floats", "std": "floats", "layout": "str", "input_name": "str",
         "limit": "int", "split": "float", "split_part": "str", "seed": "int", "archive_max_files": "int",
         "archive_max_bytes": "int"}
_RUNNER = {"runner": "str", "device": "str", "precision": "str", "threads": "int", "batch_size": "int"}
_OUTPUTS = {"model": "str", "report": "str"}
_BACKEND = {"kind": "str", "address": "str", "timeout_s": "float"}
# metrics every run measures at its end, whatever its stages
ALWAYS_MEASURED = ("params", "macs", "size_bytes", "size_ratio", "latency_ms")
CACHE = ".cache"  # the stage cache's folder inside the output folder
MARKER = ".onnxcar-run"  # marks a folder as an onnxcar run's output folder


@dataclass(frozen=True)
class Outputs:
    """File names of the final artifacts inside the output folder."""

    model: str = "model.onnx"
    report: str = "report.json"


@dataclass(frozen=True)
class Recipe:
    source: Path
    model: Path
    data: dict[str, DataSpec]
    stages: tuple[Stage, ...]
    gates: dict[str, float] = field(default_factory=dict)
    runner: RunnerConfig = RunnerConfig()
    outputs: Outputs = Outputs()
    input_shapes: dict[str, tuple[int, ...]] | None = None  # where the model leaves dims symbolic
    backend: BackendConfig = BackendConfig()

    def inputs(self) -> set[Path]:
        """Every file the recipe reads, itself included."""
        return {self.source.resolve(), self.model.resolve(), *(Path(spec.path).resolve() for spec in self.data.values())}


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Reads and validates the recipe at ``path``."""
    source = Path(path)
    name = str(source)
    try:
        with open(source, "rb") as f:
            table = tomllib.load(f)
    except OSError as err:
        raise RecipeError(f"cannot read the recipe {name}: {err.strerror or err}") from err
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise RecipeError(f"{name}: not valid TOML: {err}") from err
    unknown = sorted(set(table) - _TOP_LEVEL)
    if unknown:
        raise RecipeError(f"{name}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_TOP_LEVEL))})")
    if not isinstance(table.get("model"), str):
        raise RecipeError(f"{name}: model must be the path of an ONNX file")
    folder = source.parent
    model = _existing(folder, table["model"], name, "model", folders=False)
    data = _data(table.get("data", {}), folder, name)
    stages = _stages(table.get("stages"), name)
    gates = _gates(table.get("gates", {}), stages, name)
    runner = refine(name, "runner", lambda: RunnerConfig(**take(table.get("runner", {}), "runner", _RUNNER, name)))
    outputs = Outputs(**take(table.get("outputs", {}), "outputs", _OUTPUTS, name))
    backend = refine(name, "backend", lambda: BackendConfig(**take(table.get("backend", {}), "backend", _BACKEND, name)))
    BACKENDS.get(backend.kind)
    for key, value in vars(outputs).items():
        if not value or Path(value).name != value or value in (".", "..", CACHE, MARKER):
            raise RecipeError(f"{name}: outputs.{key} must be a file name inside the output folder "
                              f"(not {CACHE} or {MARKER}, which the run keeps there), got {value!r}")
    if outputs.model == outputs.report:
        raise RecipeError(f"{name}: outputs.model and outputs.report name the same file {outputs.model!r}")
    shapes = table.get("input_shapes")
    if shapes is not None:
        shapes = take(shapes, "input_shapes", {key: "sizes" for key in shapes} if isinstance(shapes, dict) else {},
                      name)
    return Recipe(source, model, data, stages, gates, runner, outputs, shapes, backend)


def _existing(folder: Path, value: str, name: str, key: str, *, folders: bool) -> Path:
    """The path ``value`` names, which must be a regular file (or, where ``folders``, a folder): never a
    FIFO or a device, which would block or never end."""
    path = folder / Path(value).expanduser()
    if not path.exists():
        raise RecipeError(f"{name}: {key}: {path} does not exist")
    if not (path.is_file() or folders and path.is_dir()):
        raise RecipeError(f"{name}: {key}: {path} is not a regular file{' or a folder' if folders else ''}")
    return path


def _data(tables, folder: Path, name: str) -> dict[str, DataSpec]:
    if not isinstance(tables, dict):
        raise RecipeError(f"{name}: data must hold tables [data.ROLE] (roles: {', '.join(ROLES)})")
    specs = {}
    for role, table in tables.items():
        if role not in ROLES:
            raise RecipeError(f"{name}: data.{role}: unknown role (known: {', '.join(ROLES)})")
        options = take(table, f"data.{role}", _DATA, name)
        if "path" not in options:
            raise RecipeError(f"{name}: data.{role}.path is missing")
        path = _existing(folder, options.pop("path"), name, f"data.{role}.path", folders=True)
        specs[role] = refine(name, f"data.{role}", lambda: data_spec(str(path), **options))
    return specs


def _stages(tables, name: str) -> tuple[Stage, ...]:
    if not isinstance(tables, list) or not tables:
        raise RecipeError(f"{name}: stages must be one or more [[stages]] tables")
    stages = []
    for index, table in enumerate(tables):
        where = f"stages[{index}]"
        if not isinstance(table, dict) or not isinstance(table.get("kind"), str):
            raise RecipeError(f"{name}: {where}.kind must name a stage kind ({', '.join(STAGES.names())})")
        options = dict(table)
        kind = refine(name, f"{where}.kind", lambda: STAGES.get(options.pop("kind")))
        checked = take(options, where, kind.options, name)
        stages.append(refine(name, where, lambda: kind.build(checked)))
    return tuple(stages)


def _gates(table, stages: tuple[Stage, ...], name: str) -> dict[str, float]:
    gates = take(table, "gates", {gate: "float" for gate in GATES}, name)
    produced = {*ALWAYS_MEASURED, *(metric for stage in stages for metric in stage.metrics)}
    for gate, limit in gates.items():
        if limit < 0 and not GATES[gate].signed:
            raise RecipeError(f"{name}: gates.{gate} must be 0 or more, got {limit!r}")
        if GATES[gate].metric not in produced:
            raise RecipeError(f"{name}: gates.{gate} reads {GATES[gate].metric}, which no stage measures "
                              "(add an evaluate stage)")
    return gates
