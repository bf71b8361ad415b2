"""Repairs: steps after surgery that restore a pruned model's accuracy without training.

``lsq`` refits every consumer of the pruned channels by ridge least squares, ``bn``
re-estimates the BatchNorm statistics, ``none`` keeps the pruned model. A plugin adds one
with ``@register_repair("name", help=...)``. To repair a model that ``onnxcar.prune`` pruned::

    kept = onnxcar.repair.kept_after(original, result.removals)
    repaired = onnxcar.repair.run_repair("lsq", RepairInputs(original, result.model, kept, {"input": images}))
"""

from onnxcar.repair.registry import (
    REPAIRS, Repair, RepairInputs, RepairResult, kept_after, kept_channels, register_repair, run_repair,
)

__all__ = ["REPAIRS", "Repair", "RepairInputs", "RepairResult", "kept_after", "kept_channels", "register_repair",
           "run_repair"]
