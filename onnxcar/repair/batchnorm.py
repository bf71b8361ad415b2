"""The ``bn`` repair: re-estimate the statistics of every BatchNorm left in the pruned model.

BatchNorms are re-estimated in stages in graph order, each on the network re-estimated so far,
as the mean and (population) variance of its input over the repair data, per channel.
"""

import time

import numpy as np
import onnx
from onnx import numpy_helper

from onnxcar.repair.consumers import initializer
from onnxcar.repair.registry import RepairInputs, RepairResult, register_repair
from onnxcar.repair.taps import Activations, stages


@register_repair("bn", help="re-estimate the statistics of the remaining BatchNorms on the repair data")
def reestimate_batchnorms(inputs: RepairInputs) -> RepairResult:
    model = onnx.ModelProto()
    model.CopyFrom(inputs.pruned)
    stored = {t.name for t in model.graph.initializer}
    norms = {n.output[0]: n for n in model.graph.node
             if n.op_type == "BatchNormalization" and all(name in stored for name in n.input[3:5])}
    activations = Activations(inputs.images, inputs.runner)
    layers, done, peak = [], 0, 0
    for stage in stages(model, list(norms)):
        start = time.perf_counter()
        nodes = [norms[name] for name in stage]
        moments = {n.output[0]: _Moments() for n in nodes}
        for _, values in activations.batches(model, [n.input[0] for n in nodes]):
            for node in nodes:
                moments[node.output[0]].add(values[node.input[0]])
        seconds = (time.perf_counter() - start) / len(nodes)
        peak = max(peak, sum(m.nbytes for m in moments.values()) + activations.nbytes)
        for node in nodes:
            mean, variance = moments[node.output[0]].mean_variance()
            before = initializer(model, node.input[3])
            _set(model, node.input[3], mean)
            _set(model, node.input[4], variance)
            layers.append({"layer": node.name or node.output[0], "op": node.op_type, "channels": int(mean.size),
                           "mean_shift": float(np.abs(mean - before).mean()), "seconds": round(seconds, 3)})
        done += len(nodes)
        inputs.progress("repair", done, len(norms))
    return RepairResult(model, layers, peak)


class _Moments:
    """Per-channel sums of x and x² (float64) over every axis but the channel axis 1."""

    def __init__(self):
        self.total = self.squares = 0.0
        self.count = 0

    @property
    def nbytes(self) -> int:
        return 2 * np.asarray(self.total).nbytes

    def add(self, x: np.ndarray) -> None:
        x = x.astype(np.float64)
        axes = (0, *range(2, x.ndim))
        self.total = self.total + x.sum(axes)
        self.squares = self.squares + (x * x).sum(axes)
        self.count += x.size // x.shape[1]

    def mean_variance(self) -> tuple[np.ndarray, np.ndarray]:
        mean = self.total / self.count
        return mean, np.maximum(self.squares / self.count - mean * mean, 0.0)


def _set(model: onnx.ModelProto, name: str, values: np.ndarray) -> None:
    for index, tensor in enumerate(model.graph.initializer):
        if tensor.name == name:
            dtype = numpy_helper.to_array(tensor).dtype
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(values.astype(dtype), name))
            return
