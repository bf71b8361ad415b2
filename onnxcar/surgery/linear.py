"""The rank-1 shortcut: a group's single consumer changes linearly when one channel goes.

For a Conv (group 1) or a fully connected layer C reading channels T,
``C(T * m - T_c) = C(T * m) - W[:, c] * T_c``. The suffix computes ``C(T * m)`` once per
image and each channel's contribution ``W[:, c] * T_c`` once per image (one grouped Conv),
then forms every candidate's output by one subtraction; only the layers after C run per
candidate. Rows are candidate-major: row ``j * images + i`` is candidate j on image i.
"""

import numpy as np
import onnx_graphsurgeon as gs

CANDIDATE_INPUT = "onnxcar_candidate"


def linear_consumer(node: gs.Node, index: np.ndarray, channels: int) -> bool:
    """True when ``node`` qualifies: a group-1 Conv or an FC layer reading exactly the group's channels."""
    if sorted(index.tolist()) != list(range(channels)) or not isinstance(node.inputs[1], gs.Constant):
        return False
    shape = node.outputs[0].shape or []
    if node.op == "Conv":
        static = all(isinstance(d, int) for d in shape[1:])
        return int(node.attrs.get("group", 1)) == 1 and static and len(shape) == 4
    if node.op == "Gemm":
        return not int(node.attrs.get("transA", 0)) and len(shape) == 2
    return node.op == "MatMul" and len(shape) == 2 and node.inputs[1].values.ndim == 2


def rewrite_linear(graph: gs.Graph, node: gs.Node, index: np.ndarray, candidates: gs.Variable) -> None:
    """Replaces ``node`` (reading the masked group channels) by its per-candidate rank-1 updates."""
    tag = f"onnxcar_linear_{node.name}"
    weight = np.asarray(node.inputs[1].values)
    order = np.argsort(index)  # channel c sits at position order[c]
    base = gs.Variable(f"{tag}_base", dtype=np.float32)
    graph.nodes.append(gs.Node(node.op, f"{tag}_current", dict(node.attrs), list(node.inputs), [base]))
    parts = gs.Variable(f"{tag}_parts", dtype=np.float32)
    if node.op == "Conv":
        out_channels, kernel = weight.shape[0], weight.shape[2:]
        per_channel = np.ascontiguousarray(weight[:, order].transpose(1, 0, 2, 3).reshape(-1, 1, *kernel))
        attrs = {k: v for k, v in node.attrs.items() if k != "group"}
        attrs["group"] = len(index)
        flat = gs.Variable(f"{tag}_flat", dtype=np.float32)
        graph.nodes.append(gs.Node("Conv", f"{tag}_contrib", attrs, [node.inputs[0], gs.Constant(f"{tag}_w", per_channel)], [flat]))
        spatial = list(node.outputs[0].shape[2:])
        _reshape(graph, flat, [0, len(index), out_channels, *spatial], parts, f"{tag}_split")
        out_tail = [out_channels, *spatial]
    else:
        matrix = weight if node.op == "MatMul" or not int(node.attrs.get("transB", 0)) else weight.T
        alpha = float(node.attrs.get("alpha", 1.0)) if node.op == "Gemm" else 1.0
        column = gs.Variable(f"{tag}_column", dtype=np.float32)
        _reshape(graph, node.inputs[0], [0, len(index), 1], column, f"{tag}_column")
        scaled = np.ascontiguousarray(alpha * matrix[order].astype(np.float32))
        graph.nodes.append(gs.Node("Mul", f"{tag}_contrib", inputs=[column, gs.Constant(f"{tag}_w", scaled)], outputs=[parts]))
        out_tail = [matrix.shape[1]]
    rank = 2 + len(out_tail)
    padded = gs.Variable(f"{tag}_padded", dtype=np.float32)
    pads = np.zeros(2 * rank, np.int64)
    pads[rank + 1] = 1  # a zero contribution at position `channels`: the "no candidate" row
    graph.nodes.append(gs.Node("Pad", f"{tag}_pad", inputs=[parts, gs.Constant(f"{tag}_pads", pads)], outputs=[padded]))
    picked = gs.Variable(f"{tag}_picked", dtype=np.float32)
    graph.nodes.append(gs.Node("Gather", f"{tag}_gather", {"axis": 1}, [padded, candidates], [picked]))
    swapped = gs.Variable(f"{tag}_swapped", dtype=np.float32)
    graph.nodes.append(gs.Node("Transpose", f"{tag}_swap", {"perm": [1, 0, *range(2, rank)]}, [picked], [swapped]))
    removed = gs.Variable(f"{tag}_removed", dtype=np.float32)
    _reshape(graph, swapped, [-1, *out_tail], removed, f"{tag}_rows")
    tiled = _tile_rows(graph, base, candidates, out_tail, tag)
    output = node.outputs[0]
    node.outputs.clear()
    graph.nodes.remove(node)
    graph.nodes.append(gs.Node("Sub", f"{tag}_update", inputs=[tiled, removed], outputs=[output]))


def _reshape(graph: gs.Graph, source: gs.Tensor, shape: list[int], out: gs.Variable, name: str) -> None:
    graph.nodes.append(gs.Node("Reshape", name, inputs=[source, gs.Constant(f"{name}_shape", np.array(shape, np.int64))], outputs=[out]))


def _tile_rows(graph: gs.Graph, base: gs.Variable, candidates: gs.Variable, tail: list[int], tag: str) -> gs.Variable:
    """``base`` [images, ...] repeated once per candidate, candidate-major: [candidates * images, ...]."""
    lifted, shape_c, shape_b, shape, grown, tiled = (gs.Variable(f"{tag}_{n}") for n in ("lifted", "sc", "sb", "shape", "grown", "tiled"))
    graph.nodes.extend(
        [
            gs.Node("Unsqueeze", f"{tag}_lift", inputs=[base, gs.Constant(f"{tag}_axis0", np.array([0], np.int64))], outputs=[lifted]),
            gs.Node("Shape", f"{tag}_shape_c", inputs=[candidates], outputs=[shape_c]),
            gs.Node("Shape", f"{tag}_shape_b", inputs=[base], outputs=[shape_b]),
            gs.Node("Concat", f"{tag}_shape", {"axis": 0}, [shape_c, shape_b], [shape]),
            gs.Node("Expand", f"{tag}_expand", inputs=[lifted, shape], outputs=[grown]),
        ]
    )
    _reshape(graph, grown, [-1, *tail], tiled, f"{tag}_tile")
    return tiled
