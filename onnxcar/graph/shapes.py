"""Input shapes: the concrete size of each model input, where the model leaves dims symbolic.

A model exported with dynamic height and width (``x: [-1, 3, ?, ?]``) has no MAC count and
no test input until it is told how large its images are: by an ``input_shapes`` argument
(``{"x": (1, 3, 48, 192)}``), or by the data it runs on.
"""

from collections.abc import Mapping

import numpy as np
import onnx

from onnxcar.errors import DataError, OnnxcarError
from onnxcar.graph.shape_folding import fold_shape_computations
from onnxcar.io import first_line, without_weight_data

InputShapes = Mapping[str, tuple[int, ...]]
"""The shape of each model input by name: ``{"x": (1, 3, 48, 192)}``."""


def declared_shapes(model: onnx.ModelProto) -> dict[str, list[int | None] | None]:
    """Each graph input's dims as the model declares them (initializers excluded); None where a
    dim is symbolic, missing or negative (Paddle exports write -1 for a free dim), and for the
    whole shape where the rank is unknown."""
    initializers = {i.name for i in model.graph.initializer}
    return {
        value.name: [d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None
                     for d in value.type.tensor_type.shape.dim]
        if value.type.tensor_type.HasField("shape") else None
        for value in model.graph.input if value.name not in initializers
    }


def resolve_input_shapes(model: onnx.ModelProto, given: InputShapes | None = None,
                         data: InputShapes | None = None) -> dict[str, tuple[int, ...]]:
    """The shape of every model input that is known: from ``given``, else from ``data`` (arrays'
    shapes, batch first), else from the declaration when it leaves at most the batch symbolic.

    A symbolic batch becomes 1 unless ``given`` sets it. Inputs whose shape stays unknown are
    left out (see :func:`require_input_shapes`). Raises OnnxcarError when ``given`` names an
    input the model lacks or contradicts a static dim.
    """
    declared = declared_shapes(model)
    unknown = sorted(set(given or {}) - set(declared))
    if unknown:
        raise OnnxcarError(f"input_shapes names {unknown[0]!r}, which is not a model input; inputs: "
                           f"{', '.join(declared)}", arguments=("input_shapes",))
    shapes = {}
    for name, dims in declared.items():
        if given and name in given:
            shapes[name] = _fitted(name, tuple(given[name]), dims)
        elif data and name in data:
            shapes[name] = _with_batch(dims, tuple(data[name]))
        elif dims is not None and all(d is not None for d in dims[1:]):
            shapes[name] = _with_batch(dims, tuple(dims))
    return shapes


def sized_inputs(model: onnx.ModelProto, given: InputShapes | None = None) -> dict[str, tuple[int, ...]] | None:
    """:func:`resolve_input_shapes` when it sizes every model input, else None."""
    shapes = resolve_input_shapes(model, given)
    return shapes if set(shapes) == set(declared_shapes(model)) else None


def _with_batch(dims: list[int | None] | None, shape: tuple) -> tuple[int, ...]:
    """``shape`` with the declared batch, or 1 where the batch is symbolic."""
    return (1 if not dims or dims[0] is None else dims[0], *shape[1:]) if shape else ()


def _fitted(name: str, shape: tuple[int, ...], dims: list[int | None] | None) -> tuple[int, ...]:
    if any(not isinstance(s, (int, np.integer)) or s < 1 for s in shape) or dims is not None and (
            len(shape) != len(dims) or any(d is not None and d != s for d, s in zip(dims, shape))):
        raise OnnxcarError(f"input_shapes gives {name!r} as {format_shape(shape)}, but the model input takes "
                           f"{format_shape(dims)}", arguments=("input_shapes",))
    return tuple(int(s) for s in shape)


def require_input_shapes(model: onnx.ModelProto, shapes: InputShapes, purpose: str, *, data: bool = True) -> None:
    """Raises OnnxcarError, naming what to pass (``input_shapes``, or ``data`` where it would do),
    unless ``shapes`` covers every model input."""
    for name, dims in declared_shapes(model).items():
        if name not in shapes:
            raise OnnxcarError(f"{purpose} needs the size of the model input {name!r} {format_shape(dims)}: give "
                               f"{'data, or ' if data else ''}its shape in input_shapes ({name}:{_example(dims)})",
                               arguments=("input_shapes", "data") if data else ("input_shapes",))


def _example(dims: list[int | None] | None) -> str:
    """An ``input_shapes`` value for ``dims``, its unknown dims as letters: ``1x3xHxW``."""
    if dims is None:
        return "1x..."
    names = ["1", "C", "H", "W"] if len(dims) == 4 else ["1", *["?"] * len(dims)]
    return "x".join(names[i] if d is None else str(d) for i, d in enumerate(dims))


def data_shapes(arrays: Mapping[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """The shapes of the data's arrays, by the model input they feed."""
    return {name: tuple(array.shape) for name, array in arrays.items()}


def check_data_shapes(given: InputShapes | None, data: InputShapes) -> None:
    """Raises DataError where the data's items differ from the ``given`` shape of the input they feed."""
    for name, shape in (given or {}).items():
        if name in data and tuple(data[name][1:]) != tuple(shape[1:]):
            raise DataError(f"the data's items are shaped {format_shape(data[name][1:])} but input_shapes gives "
                            f"{name!r} as {format_shape(shape)}", arguments=("input_shapes",))


def tensor_shapes(model: onnx.ModelProto, shapes: InputShapes) -> dict[str, tuple[int, ...]]:
    """The static shape of every tensor shape inference can size once the inputs take ``shapes``, with
    the shape computations it leaves unsized folded to constants (see :mod:`onnxcar.graph.shape_folding`)."""
    fixed = without_weight_data(model)
    graph = fixed.graph
    for value in (*graph.input, *graph.value_info, *graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_value") and dim.dim_value < 0:  # Paddle's -1: unknown, not a size to check
                dim.Clear()
    for value in graph.input:
        if value.name in shapes:
            for dim, size in zip(value.type.tensor_type.shape.dim, shapes[value.name]):
                dim.dim_value = size
    result: dict[str, tuple[int, ...]] = {}
    for _ in range(MAX_FOLDING_ROUNDS):
        try:
            fixed = onnx.shape_inference.infer_shapes(fixed, strict_mode=True, data_prop=True)
        except Exception as err:  # onnx raises several unrelated types here
            given = ", ".join(f"{n}:{format_shape(s)}" for n, s in shapes.items())
            raise OnnxcarError(f"the model cannot take the input shapes {given}: {first_line(err)}",
                               arguments=("input_shapes",)) from None
        result.update(_static(fixed.graph))
        if not fold_shape_computations(fixed, result):
            break
    return result


MAX_FOLDING_ROUNDS = 8
"""Inference passes at most, each after folding the shape computations the previous one sized."""


def _static(graph: onnx.GraphProto) -> dict[str, tuple[int, ...]]:
    """The tensors whose every dim the graph's value infos give."""
    result = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        tensor = value.type.tensor_type
        if tensor.HasField("shape") and all(d.HasField("dim_value") and d.dim_value >= 0 for d in tensor.shape.dim):
            result[value.name] = tuple(d.dim_value for d in tensor.shape.dim)
    return result


def format_shape(dims) -> str:
    """``[?, 3, ?, ?]`` style: None shows as ``?``; a shape of unknown rank as ``[...]``."""
    return "[...]" if dims is None else "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
