"""Trained quantization (Han et al. 2016): weights tied to shared centroids, so fine-tuning trains the centroids."""

from collections.abc import Mapping

import numpy as np
import torch
from torch.nn.utils import parametrize

from onnxcar.bridge.module import OnnxModule
from onnxcar.errors import OnnxcarError


class SharedWeights(torch.nn.Module):
    """A weight tensor computed as ``centroids[index]`` where ``index >= 0`` and +0.0 elsewhere.

    Autograd sums the gradients of all the weights that share a centroid into that
    centroid's gradient, as trained quantization prescribes; pruned weights stay zero.
    """

    def __init__(self, centroids: np.ndarray, index: np.ndarray):
        super().__init__()
        self.centroids = torch.nn.Parameter(torch.as_tensor(np.asarray(centroids, dtype=np.float32)))
        self.register_buffer("index", torch.as_tensor(np.maximum(index, 0).astype(np.int64)), persistent=False)
        self.register_buffer("kept", torch.as_tensor(np.asarray(index) >= 0), persistent=False)

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        if not self.centroids.numel():
            return torch.zeros_like(original)
        return torch.where(self.kept, self.centroids[self.index], torch.zeros((), dtype=self.centroids.dtype,
                                                                                device=self.centroids.device))


def tie_weights(module: OnnxModule, shared: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Replaces each initializer named in ``shared`` by ``SharedWeights(centroids, index)``: the old parameter
    becomes a frozen buffer and the centroids become the parameters that train."""
    attrs = {onnx_name: attr for attr, onnx_name in module.onnx_names.items()}
    for name, (centroids, index) in shared.items():
        attr = attrs.get(name)
        if attr is None or not isinstance(getattr(module, attr), torch.nn.Parameter):
            raise OnnxcarError(f"the model has no float weight {name!r} to share")
        original = getattr(module, attr)
        if tuple(original.shape) != tuple(np.shape(index)):
            raise OnnxcarError(f"weight {name!r} has shape {tuple(original.shape)}, its centroid indices "
                               f"{tuple(np.shape(index))}")
        delattr(module, attr)
        module.register_buffer(attr, original.detach().requires_grad_(False))
        parametrize.register_parametrization(module, attr, SharedWeights(centroids, index).to(original.device))
