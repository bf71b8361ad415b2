"""Torch bridge: run an ONNX graph as a trainable torch module and write weights back.

Importing this package does not import torch; the names below load it on first use.
"""

import importlib

from onnxcar.errors import OnnxcarError

_LAZY = {
    "OnnxModule": "onnxcar.bridge.module",
    "to_onnx_initializers": "onnxcar.bridge.writeback",
    "write_back": "onnxcar.bridge.writeback",
}
__all__ = ["OnnxModule", "require_torch", "to_onnx_initializers", "write_back"]


def require_torch(feature: str = "the torch bridge"):
    """Return the torch module, or raise OnnxcarError saying how to install it."""
    try:
        import torch
    except ImportError as exc:
        raise OnnxcarError(f"{feature} needs torch: pip install 'onnxcar[torch]'") from exc
    return torch


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    require_torch()
    return getattr(importlib.import_module(_LAZY[name]), name)
