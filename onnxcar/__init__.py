"""onnxcar: greedy filter pruning of ONNX CNNs by classification accuracy reduction."""

from onnxcar.errors import OnnxcarError

__version__ = "0.1.0"
__all__ = ["OnnxcarError", "__version__"]
