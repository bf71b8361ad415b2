"""JSON reports: what commands print with ``--json`` and write beside their outputs."""

import json
import pathlib

from onnxcar.graph.analysis import Analysis
from onnxcar.graph.cost import plan_cost
from onnxcar.graph.quantized import integer_ops, integer_ops_reason
from onnxcar.graph.shapes import InputShapes, declared_shapes, resolve_input_shapes, tensor_shapes
from onnxcar.io import atomic_write
from onnxcar.surgery.plan import Plan


def inspect_report(analysis: Analysis, input_shapes: InputShapes | None = None) -> dict:
    """Every channel group with its members and its share of parameters and MACs (stable schema).

    MACs are counted at ``input_shapes`` (by default the declared ones); they and their shares
    are None while an input's size is unknown. ``unsupported`` says why integer-quantized ops
    are not pruned (None when the model has none).
    """
    shapes = resolve_input_shapes(analysis.model, input_shapes)
    sizes = tensor_shapes(analysis.model, shapes)
    total = plan_cost(Plan(analysis, frozenset()), sizes)
    groups = []
    for group in analysis.groups:
        without = plan_cost(Plan(analysis, frozenset(group.channels.tolist())), sizes)
        groups.append(
            {
                "id": group.id,
                "layers": [analysis.layer_name(p) for p in group.producers],
                "channels": group.size,
                "prunable": group.prunable,
                "reason": "; ".join(group.reasons) or None,
                "params_share": _share(total.params - without.params, total.params),
                "macs_share": None if total.macs is None else _share(total.macs - without.macs, total.macs),
                "members": [{"node": m.node, "op_type": m.op_type, "role": m.role.value} for m in group.members],
            }
        )
    known = {name: list(shapes[name]) if name in shapes else None for name in declared_shapes(analysis.model)}
    quantized = integer_ops(analysis.model)
    return {"params": total.params, "macs": total.macs, "input_shapes": known, "groups": groups,
            "unsupported": integer_ops_reason(quantized) if quantized else None}


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def write_json(data: dict, path: pathlib.Path) -> None:
    """Writes ``data`` as JSON atomically, with sorted keys so equal runs give equal bytes."""
    atomic_write(path, lambda f: f.write((dumps(data) + "\n").encode()))


def dumps(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True)
