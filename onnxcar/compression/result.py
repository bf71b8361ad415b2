"""What a compression run returns, and how it saves itself."""

import os
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from onnxcar.artifacts import output_paths, save_with_report
from onnxcar.compression.layers import WeightLayer
from onnxcar.compression.sensitivity import Sensitivity
from onnxcar.compression.sizes import SizeTable
from onnxcar.errors import OnnxcarError
from onnxcar.io import atomic_write, check_output_path

STAGES = ("retrain", "quantize")  # the fine-tuning stages, and the suffixes of their checkpoints


@dataclass(frozen=True)
class CompressResult:
    """The runnable model, the container that restores it, and what every stage did;
    ``save`` writes the model, the container and the report, then deletes the run's checkpoints."""

    model: onnx.ModelProto
    container: bytes
    sizes: SizeTable
    layers: list[WeightLayer]
    sparsity: dict[str, float]  # by layer name
    bits: dict[str, int]
    accuracy: list[dict]  # per stage: {"stage", "val", "test"} top-1
    sensitivity: Sensitivity | None
    finetuning: dict[str, dict]  # stage: fine-tuning summary
    timings: dict[str, float]
    settings: dict = field(default_factory=dict)  # model, original, teacher, config and data: for the report
    checkpoint: Path | None = None

    @property
    def report(self) -> dict:
        return {
            "kind": "compress", "version": 1, **self.settings, "layers": [layer.to_dict() for layer in self.layers],
            "sparsity": self.sparsity, "bits": self.bits, "accuracy": self.accuracy,
            "sensitivity": self.sensitivity.to_dict() if self.sensitivity else None, "finetuning": self.finetuning,
            "sizes": self.sizes.to_dict(), "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
        }

    def save(self, path: str | os.PathLike, *, container: str | os.PathLike | None = None,
             force: bool = False) -> tuple[Path, Path, Path]:
        """Writes the runnable model to ``path``, the container (default: ``path`` with .onnxz) and the
        report (``path`` with .json); returns the three paths."""
        source = self.settings.get("model")
        model_path, report_path = output_paths(path, force=force, source=source)
        container_path = check_output_path(container or model_path.with_suffix(".onnxz"), force=force, source=source)
        if container_path.resolve() in (model_path.resolve(), report_path.resolve()):
            raise OnnxcarError(f"the container would overwrite {container_path}: give it another path",
                               arguments=("container",))
        atomic_write(container_path, lambda f: f.write(self.container))
        save_with_report(self.model, {**self.report, "container": str(container_path)}, model_path, report_path,
                         force=force, source=source)
        for stage in checkpoint_paths(self.checkpoint).values() if self.checkpoint else ():
            stage.unlink(missing_ok=True)
        return model_path, container_path, report_path


def checkpoint_paths(prefix: Path) -> dict[str, Path]:
    """Where each fine-tuning stage of a run keeps its checkpoint: ``PREFIX.retrain.ckpt``, ``PREFIX.quantize.ckpt``."""
    return {stage: prefix.with_name(f"{prefix.name}.{stage}.ckpt") for stage in STAGES}
