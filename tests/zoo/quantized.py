"""The shipped AlexNet-style CIFAR-10 sample, quantized by onnxruntime's ``quantize_static``.

``quantized_sample(images=200)`` -> onnx.ModelProto: QDQ format, int8 weights per output
channel (``per_channel=True``), int8 activations, calibrated (MinMax) on the first
``images`` of ``samples/cifar10_prune_1000.npz`` after the ``cifar10`` preprocessing.
Every Conv and Gemm then reads its weight from a DequantizeLinear of int8 integers with one
scale and zero point per output channel, its bias from an int32 DequantizeLinear, and every
activation passes a QuantizeLinear/DequantizeLinear pair. Cached per process; each call
returns a fresh copy.
"""

from __future__ import annotations

import functools
import logging
import tempfile
from pathlib import Path

import onnx

__all__ = ["quantized_sample", "SAMPLES"]

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@functools.lru_cache(maxsize=None)
def _quantized_bytes(images: int) -> bytes:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from onnxcar.data import DataSpec, Preprocess, load_dataset

    spec = DataSpec(SAMPLES / "cifar10_prune_1000.npz", preprocess=Preprocess.preset("cifar10"))
    calibration = load_dataset(spec).images[:images]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": calibration[i : i + 50]} for i in range(0, len(calibration), 50)])

        def get_next(self):
            return next(self.batches, None)

    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # it advises pre-processing on every call
    try:
        with tempfile.TemporaryDirectory() as folder:
            output = Path(folder) / "quantized.onnx"
            quantize_static(str(SAMPLES / "alexnet_cifar10.onnx"), str(output), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QInt8)
            return output.read_bytes()
    finally:
        logging.getLogger().setLevel(quiet)


def quantized_sample(images: int = 200) -> onnx.ModelProto:
    """The sample model quantized with ``quantize_static`` (see the module docstring)."""
    return onnx.load_from_string(_quantized_bytes(images))
