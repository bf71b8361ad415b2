"""Writes an LRN whose channels lose members as primitive ops with an explicit channel window."""

import numpy as np
import onnx_graphsurgeon as gs

from onnxcar.graph.window import WINDOW_NODE, window_matrix


def expand_lrn(graph: gs.Graph, node: gs.Node, keep: np.ndarray) -> None:
    """Turns LRN ``node`` into ``x / (bias + alpha / size * W(x * x)) ** beta``, where W is a 1x1 Conv
    with LRN's window over the original channel positions, cut to the ``keep`` ones.

    Each kept channel then sums exactly its kept neighbours, as in the model with the removed
    channels masked out; the outputs keep their names, and the last op keeps the LRN's name.
    """
    x = node.inputs[0]
    dtype = np.dtype(x.dtype or np.float32)
    size = int(node.attrs["size"])
    alpha, beta, bias = (float(node.attrs.get(k, d)) for k, d in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)))
    matrix = window_matrix(size, len(keep))[np.ix_(keep, keep)]
    weight = matrix.reshape(*matrix.shape, *[1] * (len(x.shape) - 2)).astype(dtype)
    tag = node.name

    def step(name: str, op: str, inputs: list, **attrs) -> gs.Variable:
        out = gs.Variable(f"{tag}/{name}_output", dtype=dtype)
        graph.nodes.append(gs.Node(op, f"{tag}/{name}", attrs, inputs, [out]))
        return out

    def scalar(name: str, value: float) -> gs.Constant:
        return gs.Constant(f"{tag}/{name}", np.array(value, dtype))

    squares = step("square", "Mul", [x, x])
    window = gs.Constant(f"{tag}/window", weight)
    sums = step(WINDOW_NODE, "Conv", [squares, window], kernel_shape=[1] * (len(x.shape) - 2))
    scaled = step("scale", "Mul", [sums, scalar("alpha_over_size", alpha / size)])
    denominator = step("power", "Pow", [step("shift", "Add", [scaled, scalar("bias", bias)]), scalar("beta", beta)])
    node.op, node.attrs = "Div", {}
    node.inputs.append(denominator)
