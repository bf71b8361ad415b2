"""How much to prune: a fraction, a count, or an accuracy budget per selected layer (or across all
of them, in global pruning), or a budget of MACs or parameters (global pruning)."""

from dataclasses import dataclass
from typing import ClassVar

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
        return _fields("ratio", self.value)


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
        return _fields("count", self.value)


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
        return _fields("max_drop", self.points)


@dataclass(frozen=True)
class CostBudget:
    """Remove filters across the selected layers, least score per unit saved first, until the
    model's ``measure`` is at most ``keep`` times the original's (global pruning only)."""

    keep: float
    measure: ClassVar[str]

    def __post_init__(self) -> None:
        if not 0 < self.keep < 1:
            raise OnnxcarError(f"a {self.measure} budget must lie strictly between 0 and 1 (the fraction to keep), "
                               f"got {self.keep}", arguments=(f"target_{self.measure}",))

    def limit(self, original: int) -> float:
        """The largest cost the budget allows."""
        return self.keep * original

    def to_dict(self) -> dict:
        return _fields(self.measure, self.keep)


@dataclass(frozen=True)
class Macs(CostBudget):
    """Keep at most ``keep`` of the original multiply-accumulates per sample: ``Macs(0.5)`` halves them."""

    measure: ClassVar[str] = "macs"


@dataclass(frozen=True)
class Params(CostBudget):
    """Keep at most ``keep`` of the original parameters."""

    measure: ClassVar[str] = "params"


Target = Ratio | Count | MaxDrop | Macs | Params
_KINDS = ("ratio", "count", "max_drop", "macs", "params")


def _fields(kind: str, value) -> dict:
    return {k: value if k == kind else None for k in _KINDS}


def target_from(ratio: float | None = None, count: int | None = None, max_drop: float | None = None,
                macs: float | None = None, params: float | None = None) -> Target:
    """The one target given of ``ratio``, ``count``, ``max_drop``, ``macs`` and ``params``."""
    values = dict(zip(_KINDS, (ratio, count, max_drop, macs, params)))
    given = {name: value for name, value in values.items() if value is not None}
    if len(given) != 1:
        raise OnnxcarError("give exactly one target: ratio, count, max_drop, target_macs or target_params",
                           arguments=("ratio", "count", "max_drop", "target_macs", "target_params"))
    (name, value), = given.items()
    return {"ratio": Ratio, "count": Count, "max_drop": MaxDrop, "macs": Macs, "params": Params}[name](value)
