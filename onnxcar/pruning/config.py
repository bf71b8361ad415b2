"""Typed settings of a pruning run."""

from dataclasses import dataclass

from onnxcar.errors import OnnxcarError
from onnxcar.pruning.targets import CostBudget, Target

SCOPES = ("layer", "global")


@dataclass(frozen=True)
class PruneConfig:
    """What to prune and how."""

    criterion: str
    target: Target
    layers: tuple[str, ...] = ()  # layer names, pruned in this order; empty: every prunable group
    per_iter: int = 1  # channels removed per greedy iteration
    seed: int = 0  # of the random criterion
    verify: bool = True  # check the pruned model against the masked original
    tie_break: str = "loss"  # orders channels of equal CAR: loss, margin or index
    scope: str = "layer"  # layer: each layer to the target in turn; global: one loop over every layer's filters
    tolerance: float | None = None  # the check's rtol, atol and absolute floor; None: the defaults of Tolerance

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        if isinstance(self.target, CostBudget):  # a budget of the whole model is met globally
            object.__setattr__(self, "scope", "global")
        if self.scope not in SCOPES:
            raise OnnxcarError(f"scope must be layer or global, got {self.scope!r}", arguments=("scope",))
        if self.per_iter < 1:
            raise OnnxcarError(f"per_iter must be at least 1, got {self.per_iter}", arguments=("per_iter",))
        if self.tolerance is not None and not self.tolerance > 0:
            raise OnnxcarError(f"tolerance must be positive, got {self.tolerance}", arguments=("tolerance",))

    def to_dict(self) -> dict:
        return {
            "criterion": self.criterion,
            "target": self.target.to_dict(),
            "layers": list(self.layers),
            "per_iter": self.per_iter,
            "seed": self.seed,
            "tie_break": self.tie_break,
            "scope": self.scope,
        }
