"""Receptive fields: which input pixels a unit of an intermediate tensor sees."""

from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

_WINDOWED = {"Conv", "MaxPool", "AveragePool", "LpPool"}
_WHOLE_IMAGE = {"Gemm", "MatMul", "Flatten", "Reshape", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool",
                "ReduceMean", "ReduceMax", "ReduceSum", "Resize", "Upsample", "ConvTranspose"}


@dataclass(frozen=True)
class Field:
    """Per spatial axis: the field's size, the step between neighbouring units, and the centre of unit 0 (input pixels)."""

    size: tuple[int, ...]
    step: tuple[int, ...]
    centre: tuple[float, ...]

    def window(self, position: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
        """(first, end) input pixels of the unit at ``position``; they may reach past the image."""
        spans = []
        for size, step, centre, at in zip(self.size, self.step, self.centre, position):
            first = int(np.floor(centre + at * step - (size - 1) / 2))
            spans.append((first, first + size))
        return tuple(spans)


def receptive_fields(graph: gs.Graph, image: str) -> dict[str, Field | None]:
    """The field of every tensor computed from the input ``image`` (NCHW); None where a unit sees the whole image.

    Conv and pooling windows grow the field; Gemm, reshapes, global pools and resizes make it
    the whole image; every other op keeps the largest field of its inputs.
    """
    rank = len(graph.inputs[[t.name for t in graph.inputs].index(image)].shape) - 2
    fields: dict[str, Field | None] = {image: Field((1,) * rank, (1,) * rank, (0.0,) * rank)}
    for node in graph.nodes:
        known = [fields[t.name] for t in node.inputs if t.name in fields]
        if not known:
            continue
        if node.op in _WHOLE_IMAGE or any(f is None for f in known):
            field = None
        else:
            field = max(known, key=lambda f: f.size)
            if node.op in _WINDOWED:
                field = _through_window(node, field)
        for output in node.outputs:
            fields[output.name] = field
    return fields


def _through_window(node: gs.Node, field: Field) -> Field:
    rank = len(field.size)
    kernel = node.attrs.get("kernel_shape") or list(node.inputs[1].shape[2:])
    strides = node.attrs.get("strides") or [1] * rank
    dilations = node.attrs.get("dilations") or [1] * rank
    pads = node.attrs.get("pads") or [0] * (2 * rank)
    same = str(node.attrs.get("auto_pad", "NOTSET")).startswith("SAME")
    size, step, centre = [], [], []
    for axis in range(rank):
        extent = (kernel[axis] - 1) * dilations[axis] + 1
        pad = (extent - 1) // 2 if same else pads[axis]
        size.append(field.size[axis] + (extent - 1) * field.step[axis])
        step.append(field.step[axis] * strides[axis])
        centre.append(field.centre[axis] + ((extent - 1) / 2 - pad) * field.step[axis])
    return Field(tuple(size), tuple(step), tuple(centre))
