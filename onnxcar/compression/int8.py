"""The int8 baseline users would reach for: onnxruntime.quantization's static QDQ quantization, per channel,
calibrated on onnxcar data through a CalibrationDataReader."""

import tempfile
from pathlib import Path

import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from onnxcar.data import Dataset
from onnxcar.errors import OnnxcarError


class DatasetReader(CalibrationDataReader):
    """Feeds a data set's images to onnxruntime's calibration in batches."""

    def __init__(self, input_name: str, data: Dataset, batch_size: int):
        self._batches = ({input_name: images} for images, _ in data.batches(batch_size))

    def get_next(self) -> dict | None:
        return next(self._batches, None)


def quantize_int8(model: onnx.ModelProto, calibration: Dataset, *, batch_size: int = 64) -> onnx.ModelProto:
    """``model`` quantized as onnxruntime recommends: ``quant_pre_process`` (shape inference, graph
    optimisation), then ``quantize_static`` in QDQ format, int8 weights per output channel, uint8
    activations, min-max calibration on ``calibration``."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise OnnxcarError(f"int8 calibration needs a model with one input; this one has {inputs}")
    with tempfile.TemporaryDirectory() as folder:
        source, prepared, output = (Path(folder) / name for name in ("float.onnx", "prepared.onnx", "int8.onnx"))
        onnx.save(model, source)
        quant_pre_process(source, prepared)
        quantize_static(prepared, output, DatasetReader(inputs[0], calibration, batch_size),
                        quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QUInt8)
        return onnx.load(output)
