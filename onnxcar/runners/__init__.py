"""Runners execute an ONNX model on numpy feeds: onnxruntime, or torch through the bridge."""

import onnx

from onnxcar.errors import OnnxcarError
from onnxcar.runners.config import RunnerConfig
from onnxcar.runners.ort import OrtRunner

RUNNERS = ("ort", "torch")
PRECISIONS = ("fp32", "tf32", "fp16")


def make_runner(model: onnx.ModelProto, config: RunnerConfig = RunnerConfig()):
    """An OrtRunner or a TorchRunner for ``model``, as ``config.runner`` says; both close on exit."""
    if config.runner not in RUNNERS:
        raise OnnxcarError(f"unknown runner {config.runner!r}; known: {', '.join(RUNNERS)}")
    if config.precision not in PRECISIONS:
        raise OnnxcarError(f"unknown precision {config.precision!r}; known: {', '.join(PRECISIONS)}")
    if config.runner == "ort":
        if config.precision != "fp32":
            raise OnnxcarError(f"precision {config.precision} needs the torch runner (--runner torch)")
        return OrtRunner(model, config)
    from onnxcar.runners.torch_runner import TorchRunner

    return TorchRunner(model, config)


__all__ = ["PRECISIONS", "RUNNERS", "RunnerConfig", "make_runner"]
