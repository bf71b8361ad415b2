"""Typed settings of a pruning run."""

from dataclasses import dataclass

from onnxcar.errors import OnnxcarError


@dataclass(frozen=True)
class Target:
    """How many channels to remove from each selected group: a fraction, a count, or an accuracy budget.

    ``max_drop`` is in accuracy points (or MSE units for regression) below the original model.
    """

    ratio: float | None = None
    count: int | None = None
    max_drop: float | None = None

    def __post_init__(self) -> None:
        if sum(v is not None for v in (self.ratio, self.count, self.max_drop)) != 1:
            raise OnnxcarError("give exactly one of --ratio, --count and --max-drop")
        if self.max_drop is not None and self.max_drop < 0:
            raise OnnxcarError(f"--max-drop must not be negative, got {self.max_drop}")
        if self.ratio is not None and not 0 < self.ratio < 1:
            raise OnnxcarError(f"--ratio must lie strictly between 0 and 1, got {self.ratio}")
        if self.count is not None and self.count < 1:
            raise OnnxcarError(f"--count must be at least 1, got {self.count}")

    def removals(self, size: int) -> int:
        """Channels to remove from a group of ``size``; at least one channel always stays."""
        if self.ratio is not None:
            return min(int(self.ratio * size), size - 1)
        return min(self.count, size - 1) if self.count is not None else size - 1

    def to_dict(self) -> dict:
        return {"ratio": self.ratio, "count": self.count, "max_drop": self.max_drop}


@dataclass(frozen=True)
class PruneConfig:
    """What to prune and how."""

    criterion: str
    target: Target
    layers: tuple[str, ...] = ()  # producer names; empty: every prunable group
    per_iter: int = 1  # channels removed per greedy iteration
    seed: int = 0
    verify: bool = True

    def to_dict(self) -> dict:
        return {
            "criterion": self.criterion,
            "target": self.target.to_dict(),
            "layers": list(self.layers),
            "per_iter": self.per_iter,
            "seed": self.seed,
        }
