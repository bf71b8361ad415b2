"""The onnxruntime runner: a session with a clear lifecycle."""

import logging

import numpy as np
import onnx
import onnxruntime as ort

from onnxcar.errors import OnnxcarError
from onnxcar.runners import register_runner
from onnxcar.runners.base import ValueInfo
from onnxcar.runners.config import RunnerConfig

log = logging.getLogger(__name__)
ort.set_default_logger_severity(4)  # only fatal: onnxruntime errors become one-line OnnxcarErrors


def providers_for(device: str) -> list[str]:
    """The execution providers for ``device`` (auto, cpu or cuda)."""
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise OnnxcarError("device cuda needs onnxruntime-gpu with a working CUDA provider", arguments=("device",))
    return ["CPUExecutionProvider"]


@register_runner("ort", help="onnxruntime (the CUDA provider where onnxruntime-gpu is installed)")
class OrtRunner:
    """Runs an ONNX model in one onnxruntime session; use as a context manager or call close()."""

    def __init__(self, model: onnx.ModelProto, config: RunnerConfig = RunnerConfig()):
        self.config = config
        options = ort.SessionOptions()
        options.log_severity_level = 4
        if config.threads:
            options.intra_op_num_threads = config.threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                model.SerializeToString(), options, providers=providers_for(config.device)
            )
        except OnnxcarError:
            raise
        except Exception as err:
            raise OnnxcarError(f"onnxruntime cannot load the model: {str(err).strip().splitlines()[0][:300]}") from None
        self._inputs = [ValueInfo(i.name, list(i.shape), i.type) for i in self.session.get_inputs()]
        self._outputs = [ValueInfo(o.name, list(o.shape), o.type) for o in self.session.get_outputs()]
        log.debug("onnxruntime session on %s", self.session.get_providers()[0])

    def inputs(self) -> list[ValueInfo]:
        return list(self._inputs)

    def outputs(self) -> list[ValueInfo]:
        return list(self._outputs)

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> list[np.ndarray]:
        try:
            return self.session.run(outputs, feeds)
        except Exception as err:
            raise OnnxcarError(f"onnxruntime failed: {str(err).strip().splitlines()[0][:300]}") from None

    def close(self) -> None:
        self.session = None

    def __enter__(self) -> "OrtRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
