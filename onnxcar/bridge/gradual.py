"""Gradual magnitude pruning (Zhu and Gupta 2017): weights are pruned while the model trains, along a cubic ramp."""

from collections.abc import Mapping

import torch

from onnxcar.bridge.module import OnnxModule
from onnxcar.errors import OnnxcarError

RAMP_FRACTION = 0.5  # of the training steps; the rest trains at the final sparsity
UPDATE_EVERY = 32  # steps between mask updates on the ramp


class GradualPruning:
    """Masks whose sparsity follows ``final * (1 - (1 - t)**3)``, ``t`` the share of the ramp trained so far.

    Each update keeps the largest magnitudes of a weight (those pruned earlier are zero, so
    they stay pruned); a gradient hook and ``apply`` hold the pruned weights at zero.
    The final mask zeroes ``round(final * size)`` weights, as ``prune_smallest`` does.
    """

    def __init__(self, module: OnnxModule, targets: Mapping[str, float], ramp_steps: int):
        attrs = {onnx_name: attr for attr, onnx_name in module.onnx_names.items()}
        self.weights = []
        for name, final in targets.items():
            param = getattr(module, attrs.get(name, ""), None)
            if not isinstance(param, torch.nn.Parameter):
                raise OnnxcarError(f"the model has no float weight {name!r} to prune")
            keep = torch.ones_like(param)
            param.register_hook(lambda grad, keep=keep: grad * keep)
            self.weights.append((param, keep, final))
        self.ramp_steps = max(1, ramp_steps)
        self._level: int | None = None

    def complete_after(self, step: int) -> bool:
        """Whether the weights are at their final sparsity once ``step`` steps have run."""
        return step >= self.ramp_steps

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Recomputes the masks for training step ``step`` (0 = before the first) when the ramp has moved on."""
        level = self.ramp_steps if self.complete_after(step) else step - step % UPDATE_EVERY
        if level == self._level:
            return
        self._level = level
        t = level / self.ramp_steps
        for param, keep, final in self.weights:
            pruned = int(round(final * (1 - (1 - t) ** 3) * param.numel()))
            keep.zero_().view(-1)[param.abs().view(-1).topk(param.numel() - pruned).indices] = 1
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        """Sets the pruned weights to zero (after an optimiser step moved them)."""
        for param, keep, _ in self.weights:
            param.mul_(keep)
