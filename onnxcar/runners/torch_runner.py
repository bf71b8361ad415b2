"""The torch runner: OrtRunner's interface on the torch bridge, for GPUs and reduced precision."""

import contextlib

import numpy as np
import onnx

from onnxcar.bridge import require_torch
from onnxcar.errors import OnnxcarError
from onnxcar.runners import register_runner
from onnxcar.runners.base import ValueInfo, graph_signature
from onnxcar.runners.config import RunnerConfig

def torch_device(name: str):
    """The torch device for ``name`` (auto: cuda when torch sees a GPU, else cpu)."""
    torch = require_torch(f"device {name} with torch")
    if name not in ("auto", "cpu", "cuda"):
        raise OnnxcarError(f"unknown device {name!r}; known: auto, cpu, cuda")
    if name != "cpu" and torch.cuda.is_available():
        return torch.device("cuda")
    if name == "cuda":
        raise OnnxcarError("device cuda needs a CUDA build of torch and a visible GPU", arguments=("device",))
    return torch.device("cpu")


@register_runner("torch", precisions=("fp32", "tf32", "fp16"), help="torch through the bridge (needs torch)")
class TorchRunner:
    """Runs an ONNX model with the torch bridge in eval mode; use as a context manager or call close().

    ``config.precision``: fp32 keeps CUDA matmuls and convolutions in IEEE float32, tf32 lets
    them use TensorFloat-32 (both the same on CPU); fp16 runs the module and its float inputs
    in half precision and returns float32.
    """

    def __init__(self, model: onnx.ModelProto, config: RunnerConfig = RunnerConfig()):
        torch = require_torch("the torch runner")
        from onnxcar.bridge.module import OnnxModule

        self.config = config
        self.device = torch_device(config.device)
        if config.threads:
            torch.set_num_threads(config.threads)
        module = OnnxModule(model).eval()
        self._half = config.precision == "fp16"
        self.module = (module.half() if self._half else module).to(self.device)
        self._inputs, self._outputs = graph_signature(model)
        self.input_names = list(module.input_names)
        self.output_names = list(module.output_names)

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> list[np.ndarray]:
        """The graph outputs ``outputs`` (default: all), in that order, for ``feeds``."""
        import torch

        names = list(outputs) if outputs else self.output_names
        unknown = [n for n in names if n not in self.output_names]
        missing = [n for n in self.input_names if n not in feeds]
        if unknown or missing:
            what = f"{unknown} are not graph outputs" if unknown else f"no feeds for inputs {missing}"
            raise OnnxcarError(f"the torch runner cannot run: {what}")
        try:
            with torch.inference_mode(), self._float32_math():
                values = self.module(*(self._tensor(feeds[n]) for n in self.input_names))
        except OnnxcarError:
            raise
        except Exception as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            hint = "; not every op of this model runs in half precision: use fp32 or tf32" if self._half else ""
            raise OnnxcarError(f"torch failed ({self.config.precision} on {self.device.type}): {first}{hint}") from None
        by_name = dict(zip(self.output_names, values if isinstance(values, tuple) else (values,)))
        return [by_name[n].float().cpu().numpy() if self._half and by_name[n].is_floating_point()
                else by_name[n].cpu().numpy() for n in names]

    def _tensor(self, array: np.ndarray):
        import torch

        tensor = torch.from_numpy(np.require(array, requirements=["C", "W"])).to(self.device)
        return tensor.half() if self._half and tensor.is_floating_point() else tensor

    def _float32_math(self):
        """On CUDA, float32 matmuls and convolutions in TF32 (precision tf32) or IEEE (otherwise)."""
        if self.device.type != "cuda":
            return contextlib.nullcontext()
        return _cuda_fp32_precision("tf32" if self.config.precision == "tf32" else "ieee")

    def close(self) -> None:
        self.module = None

    def inputs(self) -> list[ValueInfo]:
        return list(self._inputs)

    def outputs(self) -> list[ValueInfo]:
        return list(self._outputs)

    def __enter__(self) -> "TorchRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def _cuda_fp32_precision(value: str):
    """Sets cuBLAS matmul and cuDNN conv float32 precision to ``value`` for the block, then restores it."""
    import torch

    backends = (torch.backends.cuda.matmul, torch.backends.cudnn.conv)
    saved = [b.fp32_precision for b in backends]
    for backend in backends:
        backend.fp32_precision = value
    try:
        yield
    finally:
        for backend, old in zip(backends, saved):
            backend.fp32_precision = old
