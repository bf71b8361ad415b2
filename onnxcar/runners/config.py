"""Settings shared by every runner."""

from dataclasses import asdict, dataclass

from onnxcar.errors import OnnxcarError


@dataclass(frozen=True)
class RunnerConfig:
    """Where and how a runner executes a model."""

    device: str = "auto"  # auto, cpu or cuda
    threads: int = 0  # 0: the backend's default
    batch_size: int = 256
    precision: str = "fp32"  # fp32, tf32 or fp16 (tf32 and fp16: torch runner only)
    runner: str = "ort"  # ort (onnxruntime) or torch (the torch bridge)

    def __post_init__(self):
        if self.threads < 0:
            raise OnnxcarError(f"threads must be 0 (the backend's default) or more, got {self.threads}",
                               arguments=("threads",))
        if self.batch_size < 1:
            raise OnnxcarError(f"batch_size must be at least 1, got {self.batch_size}", arguments=("batch_size",))

    def to_dict(self) -> dict:
        return asdict(self)
