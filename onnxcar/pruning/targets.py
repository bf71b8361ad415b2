"""How much to prune: a fraction, a count, or an accuracy budget per selected layer."""

from dataclasses import dataclass

from onnxcar.errors import OnnxcarError


@dataclass(frozen=True)
class Ratio:
    """Remove ``floor(value * n)`` of each selected layer's ``n`` filters."""

    value: float

    def __post_init__(self) -> None:
        if not 0 < self.value < 1:
            raise OnnxcarError(f"a ratio must lie strictly between 0 and 1, got {self.value}", arguments=("ratio",))

    def removals(self, size: int) -> int:
        return min(int(self.value * size), size - 1)

    def to_dict(self) -> dict:
        return {"ratio": self.value, "count": None, "max_drop": None}


@dataclass(frozen=True)
class Count:
    """Remove ``value`` filters from each selected layer (all but one where it has fewer)."""

    value: int

    def __post_init__(self) -> None:
        if self.value < 1:
            raise OnnxcarError(f"a count must be at least 1, got {self.value}", arguments=("count",))

    def removals(self, size: int) -> int:
        return min(self.value, size - 1)

    def to_dict(self) -> dict:
        return {"ratio": None, "count": self.value, "max_drop": None}


@dataclass(frozen=True)
class MaxDrop:
    """Remove filters until the next removal would take the pruning-set accuracy more than
    ``points`` below the original model's (for regression: the MSE more than ``points`` above)."""

    points: float

    def __post_init__(self) -> None:
        if not self.points >= 0:
            raise OnnxcarError(f"a max drop must not be negative, got {self.points}", arguments=("max_drop",))

    def removals(self, size: int) -> int:
        return size - 1

    def limit(self, original: float, higher_is_better: bool) -> float:
        """The worst metric the budget allows."""
        return original - self.points / 100.0 if higher_is_better else original + self.points

    def to_dict(self) -> dict:
        return {"ratio": None, "count": None, "max_drop": self.points}


Target = Ratio | Count | MaxDrop


def target_from(ratio: float | None = None, count: int | None = None, max_drop: float | None = None) -> Target:
    """The one target given of ``ratio``, ``count`` and ``max_drop``."""
    given = {name: value for name, value in (("ratio", ratio), ("count", count), ("max_drop", max_drop))
             if value is not None}
    if len(given) != 1:
        raise OnnxcarError("give exactly one target: ratio, count or max_drop", arguments=("ratio", "count", "max_drop"))
    (name, value), = given.items()
    return {"ratio": Ratio, "count": Count, "max_drop": MaxDrop}[name](value)
