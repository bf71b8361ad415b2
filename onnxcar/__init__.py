"""onnxcar: greedy filter pruning of ONNX CNNs by classification accuracy reduction (CAR).

The functions below are the library's entry points; ``onnxcar --help`` lists the same jobs
as commands. See the README's "Python API" section.
"""

__version__ = "0.1.0"

from onnxcar.api import Evaluation, Inspection, Scores, evaluate, finetune, inspect, prune, score  # noqa: E402
from onnxcar.compression import CompressConfig, CompressResult, LayerValues, compress  # noqa: E402
from onnxcar.data import DataSpec, Preprocess  # noqa: E402
from onnxcar.errors import (  # noqa: E402
    DataError, GateError, ModelError, OnnxcarError, UnsupportedOpError, VerificationError,
)
from onnxcar.graph.registry import register_handler  # noqa: E402
from onnxcar.importance import register_criterion  # noqa: E402
from onnxcar.importance.backends import BackendConfig, register_backend  # noqa: E402
from onnxcar.pruning.run import PruneResult  # noqa: E402
from onnxcar.pruning.targets import Count, Macs, MaxDrop, Params, Ratio  # noqa: E402
from onnxcar.repair import register_repair  # noqa: E402
from onnxcar.runners import RunnerConfig, register_runner  # noqa: E402

Data = DataSpec
"""What data to read and how to preprocess it: ``onnxcar.Data("prune.npz", preprocess="cifar10")``."""

__all__ = [
    "BackendConfig", "CompressConfig", "CompressResult", "Count", "Data", "DataError", "DataSpec", "Evaluation", "GateError", "Inspection", "LayerValues", "Macs", "MaxDrop", "ModelError",
    "OnnxcarError", "Params", "Preprocess", "PruneResult", "Ratio", "RunnerConfig", "Scores", "UnsupportedOpError",
    "VerificationError", "__version__", "compress", "evaluate", "finetune", "inspect", "prune", "register_backend", "register_criterion",
    "register_handler", "register_repair", "register_runner", "score",
]
