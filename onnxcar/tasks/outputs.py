"""Tasks that compare every output with targets: regression (squared error) and fidelity (relative error)."""

import numpy as np

from onnxcar.tasks import TaskRule, register_task


class _AllOutputs(TaskRule):
    """Reads every output, batch axis first, flattened per sample and joined: ``[N, sum of sizes]``."""

    higher_is_better = False

    def view(self, outputs, axes, sizes):
        axes = axes or (0,) * len(outputs)
        flat = [np.moveaxis(o, a, 0).reshape(o.shape[a], -1) for o, a in zip(outputs, axes)]
        return np.concatenate(flat, axis=1) if len(flat) > 1 else flat[0]


@register_task("regression")
class Regression(_AllOutputs):
    """Per-sample mean squared error over all outputs, against float targets (or the original model's outputs)."""

    help = "mean squared error of all outputs"
    metric = "mse"
    agreement_only = False

    def outcomes(self, view, targets, sizes):
        diff = view.astype(np.float64) - targets.reshape(len(targets), -1)
        return np.mean(diff * diff, axis=1)


@register_task("fidelity")
class Fidelity(_AllOutputs):
    """Per-sample relative squared error against the original model, averaged over outputs so each counts
    alike whatever its scale: mean over outputs k of ``|a_k - t_k|^2 / (|t_k|^2 + tiny)``. Any model."""

    help = "relative error of every output against the original model's, any model"
    metric = "relative_error"

    def outcomes(self, view, targets, sizes):
        bounds = np.cumsum((0, *sizes)) if sizes else np.array([0, view.shape[1]])
        errors = []
        for start, stop in zip(bounds[:-1], bounds[1:]):
            a, t = view[:, start:stop].astype(np.float64), targets[:, start:stop].astype(np.float64)
            energy = np.sum(t * t, axis=1) + np.finfo(np.float32).tiny
            errors.append(np.sum((a - t) ** 2, axis=1) / energy)
        return np.mean(errors, axis=0)
