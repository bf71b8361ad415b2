"""The built-in stage kinds prune, finetune and evaluate (compress has a module of its own)."""

import dataclasses
from dataclasses import dataclass

import onnx

import onnxcar
from onnxcar.data import DataSpec, load_dataset
from onnxcar.graph import analyze
from onnxcar.importance import CRITERIA
from onnxcar.importance.batch import make_batch
from onnxcar.tasks import Task
from onnxcar.pipeline.stages import StageContext, StageOutput, register_stage, require_roles, small
from onnxcar.pruning.config import PruneConfig
from onnxcar.pruning.driver import select_groups
from onnxcar.pruning.targets import MaxDrop, target_from
from onnxcar.repair import REPAIRS
from onnxcar.runners.config import RunnerConfig


def check_data(model: onnx.ModelProto, spec: DataSpec, task: str) -> None:
    """Reads a few items of ``spec`` and checks them against ``model``'s input and output."""
    make_batch(model, load_dataset(small(spec)), Task(task), RunnerConfig(device="cpu"))


@dataclass(frozen=True)
class PruneStage:
    config: PruneConfig
    task: str = "classification"
    repair: str = "none"
    repair_role: str = "prune"  # the data role the repair reads
    repair_limit: int | None = None
    kind = "prune"
    metrics = ("pruning_metric",)

    @property
    def scoring_roles(self) -> tuple[str, ...]:
        needs_data = CRITERIA.get(self.config.criterion).needs_data or isinstance(self.config.target, MaxDrop)
        return ("prune",) if needs_data else ()

    @property
    def roles(self) -> tuple[str, ...]:
        repairing = (self.repair_role,) if REPAIRS.get(self.repair).needs_data else ()
        return tuple(dict.fromkeys((*self.scoring_roles, *repairing)))

    @property
    def needs_input_shapes(self) -> bool:
        """Whether its check of the pruned model makes test inputs with no data to size them."""
        return self.config.verify and not self.scoring_roles

    def settings(self) -> dict:
        return {"config": self.config.to_dict(), "task": self.task, "repair": self.repair,
                "repair_data": self.repair_role, "repair_limit": self.repair_limit}

    def check(self, model: onnx.ModelProto, data: dict[str, DataSpec]) -> None:
        require_roles(self, data)
        select_groups(analyze(model), self.config.layers)
        if "prune" in self.scoring_roles:
            check_data(model, data["prune"], self.task)

    def run(self, model: onnx.ModelProto, context: StageContext) -> StageOutput:
        c = self.config
        repair_data = context.data.get(self.repair_role) if self.repair != "none" else None
        if repair_data is not None and self.repair_limit is not None:
            repair_data = dataclasses.replace(repair_data, limit=self.repair_limit)
        result = onnxcar.prune(model, target=c.target, criterion=c.criterion, layers=c.layers,
                               data=context.data.get("prune") if self.scoring_roles else None, per_iter=c.per_iter,
                               seed=c.seed, verify=c.verify, scope=c.scope, task=self.task, runner=context.runner,
                               backend=context.backend, input_shapes=context.input_shapes,
                               journal=context.workdir / "prune.journal", resume=True, repair=self.repair,
                               repair_data=repair_data, progress=context.progress)
        result.journal.close(remove=True)
        return StageOutput(result.model, result.report, {"pruning_metric": result.final_metric})


@register_stage("prune", {"criterion": "str", "layers": "strs", "ratio": "float", "count": "int",
                          "max_drop": "float", "target_macs": "float", "target_params": "float", "global": "bool",
                          "per_iter": "int", "random_seed": "int", "verify": "bool", "task": "str", "repair": "str",
                          "repair_data": "str", "repair_limit": "int"})
def _prune(options: dict) -> PruneStage:
    target = target_from(options.get("ratio"), options.get("count"), options.get("max_drop"),
                         options.get("target_macs"), options.get("target_params"))
    criterion = options.get("criterion", "l1")
    CRITERIA.get(criterion)
    task = options.get("task", "regression" if criterion == "rar" else "classification")
    config = PruneConfig(criterion, target, options.get("layers", ()), options.get("per_iter", 1),
                         options.get("random_seed", 0), options.get("verify", True),
                         scope="global" if options.get("global") else "layer")
    repair = options.get("repair", "none")
    REPAIRS.get(repair)
    return PruneStage(config, Task(task).kind, repair, options.get("repair_data", "prune"), options.get("repair_limit"))


@dataclass(frozen=True)
class FinetuneStage:
    config: object  # onnxcar.bridge.finetune_config.FinetuneConfig
    teacher: str | None  # "original", a model path, or None
    kind = "finetune"
    roles = ("train", "val")
    metrics = ("val_before", "val_after")

    def settings(self) -> dict:
        return {"config": self.config.to_dict(), "teacher": self.teacher}

    def check(self, model: onnx.ModelProto, data: dict[str, DataSpec]) -> None:
        from onnxcar.bridge import require_torch

        require_torch("the finetune stage")
        require_roles(self, data)
        for role in self.roles:
            check_data(model, data[role], self.config.task)

    def run(self, model: onnx.ModelProto, context: StageContext) -> StageOutput:
        teacher = context.original if self.teacher == "original" else self.teacher
        checkpoint = context.workdir / "finetune.ckpt"
        result = onnxcar.finetune(model, context.data["train"], context.data["val"], self.config, teacher=teacher,
                                  checkpoint=checkpoint, resume=True, progress=context.progress)
        checkpoint.unlink(missing_ok=True)
        return StageOutput(result.model, result.summary(), {"val_before": result.before, "val_after": result.after})


@register_stage("finetune", {"epochs": "int", "lr": "float", "batch_size": "int", "optimizer": "str",
                             "schedule": "str", "weight_decay": "float", "momentum": "float", "augment": "bool",
                             "keep_sparsity": "bool", "teacher": "str", "distill_weight": "float",
                             "temperature": "float", "device": "str", "seed": "int", "task": "str"})
def _finetune(options: dict) -> FinetuneStage:
    from onnxcar.bridge.finetune_config import FinetuneConfig

    settings = {k: v for k, v in options.items() if k != "teacher"}
    return FinetuneStage(FinetuneConfig(**settings), options.get("teacher"))


@dataclass(frozen=True)
class EvaluateStage:
    role: str = "test"
    task: str = "classification"
    kind = "evaluate"

    @property
    def roles(self) -> tuple[str, ...]:
        return (self.role,)

    @property
    def metrics(self) -> tuple[str, ...]:
        if self.task == "classification":
            return ("top1", "original_top1", "top1_drop")
        name = Task(self.task).metric_name
        return (name, f"original_{name}")

    def settings(self) -> dict:
        return {"data": self.role, "task": self.task}

    def check(self, model: onnx.ModelProto, data: dict[str, DataSpec]) -> None:
        require_roles(self, data)
        check_data(model, data[self.role], self.task)

    def run(self, model: onnx.ModelProto, context: StageContext) -> StageOutput:
        spec = context.data[self.role]
        now = onnxcar.evaluate(model, spec, task=self.task, runner=context.runner, progress=context.progress)
        before = onnxcar.evaluate(context.original, spec, task=self.task, runner=context.runner,
                                  progress=context.progress)
        if self.task == "classification":
            metrics = {"top1": now.top1, "original_top1": before.top1,
                       "top1_drop": 100.0 * (before.top1 - now.top1)}
        else:
            name = Task(self.task).metric_name
            metrics = {name: now.to_dict()[name], f"original_{name}": before.to_dict()[name]}
        return StageOutput(model, {"model": now.to_dict(), "original": before.to_dict()}, metrics)


@register_stage("evaluate", {"data": "str", "task": "str"})
def _evaluate(options: dict) -> EvaluateStage:
    return EvaluateStage(options.get("data", "test"), Task(options.get("task", "classification")).kind)

