"""Per-layer sparsity from an accuracy budget: a sensitivity scan (Han et al. 2015, Fig. 5), then one budget for all.

Each layer alone is pruned at growing sparsity (steps of ``step``) until the accuracy falls
more than ``max_drop`` points below the unpruned model's: that is its sensitivity curve.
For a per-layer budget ``b``, each layer takes the highest sparsity whose curve stays within
``b`` points all the way. Pruned together, the layers' losses add up, so ``b`` starts at
``max_drop`` and is bisected down until the model pruned at every layer's choice stays within
``max_drop`` points as well.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx

from onnxcar.bridge.writeback import set_initializers
from onnxcar.compression.layers import WeightLayer
from onnxcar.compression.magnitude import prune_smallest
from onnxcar.progress import Progress, silent

BISECTIONS = 6


@dataclass(frozen=True)
class Sensitivity:
    """The scan's curves (layer: [[sparsity, accuracy], ...]), the budget chosen and what it gave."""

    base: float
    curves: dict[str, list[list[float]]]
    budget: float  # points per layer
    sparsity: dict[str, float]  # by layer name
    accuracy: float  # of the model pruned at every chosen sparsity

    def to_dict(self) -> dict:
        return {"base": self.base, "curves": self.curves, "budget_points": self.budget, "sparsity": self.sparsity,
                "accuracy": self.accuracy}


def scan(model: onnx.ModelProto, layers: list[WeightLayer], weights: dict[str, np.ndarray],
         accuracy: Callable[[onnx.ModelProto], float], max_drop: float, step: float,
         progress: Progress = silent) -> Sensitivity:
    """Chooses each layer's sparsity so that the pruned model loses at most ``max_drop`` points of ``accuracy``."""
    grid = [round(step * i, 6) for i in range(1, int(round(1 / step)))]
    base = accuracy(model)
    floor = base - max_drop / 100

    def pruned(sparsity: dict[str, float]) -> onnx.ModelProto:
        return set_initializers(model, {layer.tensor: prune_smallest(weights[layer.tensor], sparsity[layer.name])
                                        for layer in layers if sparsity[layer.name]})

    curves: dict[str, list[list[float]]] = {}
    for number, layer in enumerate(layers):
        curve = curves[layer.name] = [[0.0, base]]
        for sparsity in grid:
            progress("sensitivity scan", number * len(grid) + len(curve) - 1, len(layers) * len(grid), layer.name)
            curve.append([sparsity, accuracy(pruned({l.name: sparsity if l is layer else 0.0 for l in layers}))])
            if curve[-1][1] < floor:
                break
    progress("sensitivity scan", len(layers) * len(grid), len(layers) * len(grid), "")

    def choose(budget: float) -> dict[str, float]:
        return {name: _highest_within(curve, base - budget / 100) for name, curve in curves.items()}

    def trial(budget: float) -> tuple[dict[str, float], float]:
        choice = choose(budget)
        return choice, accuracy(pruned(choice))

    low, high = 0.0, max_drop
    best = (high, *trial(high))
    for _ in range(BISECTIONS if best[2] < floor else 0):
        middle = (low + high) / 2
        choice, value = trial(middle)
        if value >= floor:
            low, best = middle, (middle, choice, value)
        else:
            high = middle
    if best[2] < floor:  # every bisection failed: the strictest budget tried
        best = (low, *trial(low))
    budget, choice, value = best
    return Sensitivity(base, curves, round(budget, 6), choice, value)


def _highest_within(curve: list[list[float]], floor: float) -> float:
    """The highest sparsity up to which every point of ``curve`` stays at or above ``floor``."""
    chosen = 0.0
    for sparsity, value in curve:
        if value < floor:
            break
        chosen = sparsity
    return chosen
