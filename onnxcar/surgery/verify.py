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
    """Outputs match when |a - b| <= atol * max|b| + rtol * |b| + floor.

    ``floor`` (None: automatic) is the absolute rounding of the output's dtype at its scale, through
    the network's depth: ``4 * eps * sqrt(layers) * max(1, max|b|)``, ``layers`` the number of Conv,
    ConvTranspose, Gemm and MatMul nodes. It keeps a probability map that is nearly 0 everywhere
    (a sigmoid's output, resolved to eps near 0.5 but compared at 1e-6) from failing on rounding.
    """

    rtol: float = 1e-4
    atol: float = 1e-4
    floor: float | None = None

    def allowed(self, expected: np.ndarray, layers: int) -> np.ndarray:
        """The error each element of ``expected`` may have."""
        scale = float(np.abs(expected).max(initial=0.0))
        floor = self.floor
        if floor is None:
            eps = float(np.finfo(expected.dtype).eps) if np.issubdtype(expected.dtype, np.floating) else 0.0
            floor = 4 * eps * math.sqrt(max(layers, 1)) * max(1.0, scale)
        return self.atol * scale + self.rtol * np.abs(expected) + floor + 1e-12


@dataclass(frozen=True)
class VerifyResult:
    batch_sizes: tuple[int, ...]
    max_abs_error: float
    max_scaled_error: float  # the error divided by what the tolerance allows; <= 1 passes


@dataclass
class _Worst:
    """The element furthest outside its tolerance so far."""

    scaled: float = 0.0
    abs_error: float = 0.0
    where: str = ""

    def update(self, name: str, actual: np.ndarray, expected: np.ndarray, allowed: np.ndarray) -> None:
        err = np.abs(actual.astype(np.float64) - expected)
        self.abs_error = max(self.abs_error, float(err.max(initial=0.0)))
        scaled = err / allowed
        if scaled.size and float(scaled.max()) > self.scaled:
            index = np.unravel_index(int(scaled.argmax()), scaled.shape)
            self.scaled = float(scaled[index])
            self.where = (f"output {name!r} at {tuple(int(i) for i in index)}: {float(actual[index]):.6g} pruned, "
                          f"{float(expected[index]):.6g} masked")


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
    """Runs both models on the first :data:`REAL_SAMPLES` items of ``samples`` (real data by model
    input, when given), whose activations reach ranges random inputs miss, then on the same seeded
    inputs (at ``input_shapes`` where the model leaves dims symbolic); raises VerificationError,
    naming the output, the worst element and both values, when outputs differ beyond ``tolerance``,
    or when the candidate's outputs break a declared shape the reference's outputs keep."""
    try:
        onnx.checker.check_model(candidate, full_check=True)
    except Exception as err:
        raise VerificationError(f"the pruned model fails the ONNX checker: {str(err).splitlines()[0]}") from None
    worst, layers = _Worst(), _weighted_layers(reference)
    with OrtRunner(reference, RunnerConfig(device="cpu")) as ref, OrtRunner(candidate, RunnerConfig(device="cpu")) as cand:
        for feeds in _test_inputs(reference, batch_sizes, seed, input_shapes, samples):
            expected, actual = ref.run(feeds), cand.run(feeds)
            already = set(declaration_mismatches(reference, expected))  # the original's own, warned of before
            for name, message in declaration_mismatches(candidate, actual).items():
                if name not in already:
                    raise VerificationError(message)
            for name, a, b in zip([o.name for o in ref.outputs()], actual, expected):
                if a.shape != b.shape:
                    raise VerificationError(f"output {name!r} has shape {a.shape}, expected {b.shape}")
                if not np.all(np.isfinite(b)):
                    raise OnnxcarError(f"output {name!r} of the reference model is not finite")
                worst.update(name, a, b, tolerance.allowed(b, layers))
    if not worst.scaled <= 1.0:
        raise VerificationError(
            f"the pruned model differs from the masked model: {worst.where} ({worst.scaled:.3g}x the tolerance; "
            f"max abs error {worst.abs_error:.3g})"
        )
    return VerifyResult(tuple(batch_sizes), worst.abs_error, worst.scaled)


def _weighted_layers(model: onnx.ModelProto) -> int:
    return sum(node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul") for node in model.graph.node)


def _test_inputs(model: onnx.ModelProto, batch_sizes: tuple[int, ...], seed: int, input_shapes: InputShapes | None,
                 samples: Mapping[str, np.ndarray] | None) -> Iterator[dict[str, np.ndarray]]:
    """The real samples first, then seeded random feeds of each batch size; made one at a time, as each may be large."""
    if samples:
        yield {name: array[:REAL_SAMPLES] for name, array in samples.items()}
    for batch in batch_sizes:
        yield random_feeds(model, batch, seed + batch, input_shapes)


def declaration_mismatches(model: onnx.ModelProto, outputs: list[np.ndarray]) -> dict[str, str]:
    """Outputs whose computed shape disagrees with the shape the model declares, each with a message."""
    found = {}
    for value, array in zip(model.graph.output, outputs):
        declared = [d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None
                    for d in value.type.tensor_type.shape.dim]
        if declared and (len(declared) != array.ndim or any(d is not None and d != s for d, s in zip(declared, array.shape))):
            found[value.name] = f"output {value.name!r} has shape {array.shape} but the model declares {declared}"
    return found


def original_declaration_mismatches(model: onnx.ModelProto, input_shapes: InputShapes | None = None) -> list[str]:
    """What :func:`declaration_mismatches` finds in ``model`` itself, run once on seeded inputs of batch 1:
    declarations onnxruntime ignores, which verification then ignores too."""
    with OrtRunner(model, RunnerConfig(device="cpu")) as runner:
        return list(declaration_mismatches(model, runner.run(random_feeds(model, 1, 0, input_shapes))).values())
