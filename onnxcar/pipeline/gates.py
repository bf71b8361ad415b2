"""Gates: limits a pipeline's result must meet, each checked against a measured metric."""

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Gate:
    """A limit on one metric: ``value <= limit`` (``upper``) or ``value >= limit``."""

    name: str  # the recipe's key, e.g. max_top1_drop
    metric: str  # the metric it reads
    upper: bool
    unit: str
    help: str
    signed: bool = False  # whether a negative limit means something (a drop may be a gain)


GATES = {
    gate.name: gate for gate in (
        Gate("max_top1_drop", "top1_drop", True, "points", "test top-1 drop against the original model", signed=True),
        Gate("min_size_ratio", "size_ratio", False, "x", "original model bytes over the final artifact's"),
        Gate("max_params", "params", True, "", "parameters of the final model"),
        Gate("max_macs", "macs", True, "", "multiply-accumulates per sample of the final model"),
        Gate("max_latency_ms", "latency_ms", True, "ms", "median onnxruntime CPU latency at batch 1"),
    )
}


@dataclass(frozen=True)
class GateResult:
    name: str
    limit: float
    value: float
    passed: bool

    @property
    def message(self) -> str:
        gate = GATES[self.name]
        relation = "<=" if gate.upper else ">="
        unit = f" {gate.unit}" if gate.unit else ""
        verdict = "passed" if self.passed else f"FAILED by {abs(self.value - self.limit):.4g}{unit}"
        return f"{self.name}: {self.value:.6g}{unit} {relation} {self.limit:.6g}{unit} {verdict}"

    def to_dict(self) -> dict:
        return {**asdict(self), "message": self.message}


def check_gates(limits: dict[str, float], metrics: dict[str, float]) -> list[GateResult]:
    """Each gate of ``limits`` against its metric."""
    results = []
    for name, limit in limits.items():
        gate = GATES[name]
        value = float(metrics[gate.metric])
        passed = value <= limit if gate.upper else value >= limit
        results.append(GateResult(name, float(limit), value, passed))
    return results
