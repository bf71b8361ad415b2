"""The compress stage: Deep Compression of the model so far; its container becomes the recipe's artifact."""

from dataclasses import dataclass

import onnx

import onnxcar
from onnxcar.bridge.finetune_config import FinetuneConfig
from onnxcar.compression import CompressConfig, LayerValues
from onnxcar.compression.config import DEFAULT_BITS, DEFAULT_INDEX_BITS
from onnxcar.compression.pipeline import select_layers
from onnxcar.data import DataSpec
from onnxcar.pipeline.builtin_stages import check_data
from onnxcar.pipeline.stages import StageContext, StageOutput, register_stage, require_roles


@dataclass(frozen=True)
class CompressStage:
    config: CompressConfig
    teacher: str | None  # "original", a model path, or None
    kind = "compress"
    roles = ("train", "val")
    metrics = ("compressed_val_top1",)

    def settings(self) -> dict:
        return {"config": self.config.to_dict(), "teacher": self.teacher}

    def check(self, model: onnx.ModelProto, data: dict[str, DataSpec]) -> None:
        if self.config.retrain or self.config.finetune:
            from onnxcar.bridge import require_torch

            require_torch("the compress stage's fine-tuning")
        require_roles(self, data)
        select_layers(model, self.config)
        for role in self.roles:
            check_data(model, data[role], "classification")

    def run(self, model: onnx.ModelProto, context: StageContext) -> StageOutput:
        teacher = context.original if self.teacher == "original" else self.teacher
        result = onnxcar.compress(model, self.config, context.data["train"], val=context.data["val"],
                                  original=context.original, teacher=teacher, checkpoint=context.workdir / "compress",
                                  resume=True, progress=context.progress)
        return StageOutput(result.model, result.report, {"compressed_val_top1": result.accuracy[-1]["val"]},
                           files={"onnxz": result.container})


@register_stage("compress", {"sparsity": "values", "max_drop": "float", "scan_step": "float", "bits": "values",
                             "index_bits": "values", "codebook_dtype": "str", "layers": "strs", "retrain_epochs": "int",
                             "retrain_lr": "float", "gradual": "bool", "finetune_epochs": "int", "finetune_lr": "float",
                             "batch_size": "int", "teacher": "str", "seed": "int"})
def _compress(options: dict) -> CompressStage:
    def tuning(epochs_key: str, lr_key: str, lr: float) -> FinetuneConfig | None:
        epochs = options.get(epochs_key, 0)
        return FinetuneConfig(epochs=epochs, lr=options.get(lr_key, lr), batch_size=options.get("batch_size", 64),
                              seed=options.get("seed", 0)) if epochs else None

    def values(key: str, base: LayerValues | None) -> LayerValues | None:
        return base if key not in options else LayerValues.parse(str(options[key]), key, base)

    config = CompressConfig(
        sparsity=values("sparsity", None), max_drop=options.get("max_drop"), bits=values("bits", DEFAULT_BITS),
        index_bits=values("index_bits", DEFAULT_INDEX_BITS), layers=options.get("layers", ()),
        scan_step=options.get("scan_step", 0.05), codebook_dtype=options.get("codebook_dtype", "float16"),
        retrain=tuning("retrain_epochs", "retrain_lr", 0.01), gradual=options.get("gradual", False),
        finetune=tuning("finetune_epochs", "finetune_lr", 0.001),
    )
    return CompressStage(config, options.get("teacher"))
