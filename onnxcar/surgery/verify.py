"""Checks that a pruned model equals the masked original: the surgery invariant."""

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from onnxcar.errors import OnnxcarError, VerificationError
from onnxcar.graph.shapes import InputShapes, declared_shapes, require_input_shapes, resolve_input_shapes
from onnxcar.runners.ort import OrtRunner
from onnxcar.runners.config import RunnerConfig

_NUMPY_TYPES = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16, onnx.TensorProto.DOUBLE: np.float64}
MAX_FEED_VALUES = 2**28
"""The most values one test input may hold (1 GiB of float32)."""
REAL_SAMPLES = 16
"""The most items of real data a verification runs on, besides its random inputs."""


@dataclass(frozen=True)
class Tolerance:
    """Outputs match when |a - b| <= atol * max|b| + rtol * |b|."""

    rtol: float = 1e-4
    atol: float = 1e-4


@dataclass(frozen=True)
class VerifyResult:
    batch_sizes: tuple[int, ...]
    max_abs_error: float
    max_scaled_error: float  # the error divided by what the tolerance allows; <= 1 passes


def random_feeds(model: onnx.ModelProto, batch: int, seed: int = 0,
                 input_shapes: InputShapes | None = None) -> dict[str, np.ndarray]:
    """Seeded normal inputs for every graph input, with a symbolic batch dimension set to ``batch``;
    ``input_shapes`` sizes the dims the model leaves symbolic (height and width)."""
    rng = np.random.default_rng(seed)
    shapes = resolve_input_shapes(model, input_shapes)
    require_input_shapes(model, shapes, "making test inputs")
    declared = declared_shapes(model)
    types = {value.name: value.type.tensor_type.elem_type for value in model.graph.input}
    feeds = {}
    for name, dims in declared.items():
        if types[name] not in _NUMPY_TYPES:
            raise OnnxcarError(f"cannot make test inputs for {name!r}: it needs a float type")
        shape = [batch if i == 0 and not (dims and dims[0] is not None) else size
                 for i, size in enumerate(shapes[name])]
        if math.prod(shape) > MAX_FEED_VALUES:
            raise OnnxcarError(
                f"cannot make test inputs for {name!r}: {shape} holds {math.prod(shape)} values, "
                f"more than verification allows ({MAX_FEED_VALUES}); skip verification to go on without it"
            )
        feeds[name] = rng.standard_normal(shape).astype(_NUMPY_TYPES[types[name]])
    return feeds


def verify_equal(
    reference: onnx.ModelProto,
    candidate: onnx.ModelProto,
    *,
    batch_sizes: tuple[int, ...] = (1, 2),
    tolerance: Tolerance = Tolerance(),
    seed: int = 0,
    input_shapes: InputShapes | None = None,
    samples: Mapping[str, np.ndarray] | None = None,
) -> VerifyResult:
    """Runs both models on the same seeded inputs (at ``input_shapes`` where the model leaves
    dims symbolic) and, when given, on the first :data:`REAL_SAMPLES` items of ``samples`` (real data by
    model input), whose activations reach ranges random inputs miss; raises VerificationError when
    outputs differ."""
    try:
        onnx.checker.check_model(candidate, full_check=True)
    except Exception as err:
        raise VerificationError(f"the pruned model fails the ONNX checker: {str(err).splitlines()[0]}") from None
    worst_abs, worst_scaled = 0.0, 0.0
    with OrtRunner(reference, RunnerConfig(device="cpu")) as ref, OrtRunner(candidate, RunnerConfig(device="cpu")) as cand:
        for feeds in _test_inputs(reference, batch_sizes, seed, input_shapes, samples):
            expected, actual = ref.run(feeds), cand.run(feeds)
            _check_declared_shapes(candidate, actual)
            for name, a, b in zip([o.name for o in ref.outputs()], actual, expected):
                if a.shape != b.shape:
                    raise VerificationError(f"output {name!r} has shape {a.shape}, expected {b.shape}")
                if not np.all(np.isfinite(b)):
                    raise OnnxcarError(f"output {name!r} of the reference model is not finite")
                err = np.abs(a.astype(np.float64) - b)
                allowed = tolerance.atol * float(np.abs(b).max(initial=0.0)) + tolerance.rtol * np.abs(b) + 1e-12
                worst_abs = max(worst_abs, float(err.max(initial=0.0)))
                worst_scaled = max(worst_scaled, float((err / allowed).max(initial=0.0)))
    if not worst_scaled <= 1.0:
        raise VerificationError(
            f"the pruned model differs from the masked model (max abs error {worst_abs:.3g}, "
            f"{worst_scaled:.3g}x the tolerance)"
        )
    return VerifyResult(tuple(batch_sizes), worst_abs, worst_scaled)


def _test_inputs(model: onnx.ModelProto, batch_sizes: tuple[int, ...], seed: int, input_shapes: InputShapes | None,
                 samples: Mapping[str, np.ndarray] | None) -> Iterator[dict[str, np.ndarray]]:
    """Seeded random feeds of each batch size, then the real samples; made one at a time, as each may be large."""
    for batch in batch_sizes:
        yield random_feeds(model, batch, seed + batch, input_shapes)
    if samples:
        yield {name: array[:REAL_SAMPLES] for name, array in samples.items()}


def _check_declared_shapes(model: onnx.ModelProto, outputs: list[np.ndarray]) -> None:
    for value, array in zip(model.graph.output, outputs):
        declared = [d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None
                    for d in value.type.tensor_type.shape.dim]
        if declared and (len(declared) != array.ndim or any(d is not None and d != s for d, s in zip(declared, array.shape))):
            raise VerificationError(f"output {value.name!r} has shape {array.shape} but the model declares {declared}")
