"""Test-model zoo for onnxcar.

Submodules (import them explicitly; ``exported`` and ``detection`` import torch,
``random_graphs`` hypothesis)::

    from tests.zoo import handbuilt      # CASES / BLOCKED_CASES / NOT_RUNNABLE / ALL_CASES, GraphBuilder
    from tests.zoo import exported       # export(name, exporter=..., fold_bn=...), NAMES, LARGE, resnet50_like()
    from tests.zoo import classic        # load_classic(name), CLASSIC_NAMES, FIXED_BATCH
    from tests.zoo import random_graphs  # cnn_graphs() hypothesis strategy
    from tests.zoo import detection      # export("detector" | "segmenter", exporter=...), build_torch(name)
    from tests.zoo import quantized      # quantized_sample(): the sample after quantize_static (QDQ, int8)

(Use one import path everywhere -- ``tests.zoo`` as the other suites do -- so the
per-process export / load caches are not duplicated under a second module name.)

Contract of every model: one float32 input ``input`` of shape ``[batch, C, H, W]``
(dim_param ``batch``; classic FIXED_BATCH models have a literal 1), seeded weights.

The helpers below are small conveniences shared by the test suites.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx

__all__ = ["input_chw", "random_input", "run_onnx", "op_counts"]


def input_chw(model: onnx.ModelProto) -> tuple[int, ...]:
    """Static (C, H, W) of the model's single input."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return tuple(int(d.dim_value) for d in dims[1:])


def random_input(model: onnx.ModelProto, batch: int = 1, seed: int = 0) -> np.ndarray:
    """Standard-normal float32 input of shape (batch, C, H, W)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, *input_chw(model)), dtype=np.float32)


def run_onnx(model: onnx.ModelProto, x: np.ndarray, *, threads: int = 1) -> list[np.ndarray]:
    """Run ``model`` in onnxruntime (CPU) on ``x`` fed to ``input``; returns all outputs."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {model.graph.input[0].name: x})


def op_counts(model: onnx.ModelProto) -> Counter:
    """Counter of op types in the main graph."""
    return Counter(n.op_type for n in model.graph.node)
