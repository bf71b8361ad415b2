"""Sanity tests of the test-model zoo itself (tests/zoo).

Every model must pass ``onnx.checker.check_model(full_check=True)`` and run in
onnxruntime at batch 1 and 3 with finite outputs (custom-domain models: check
only; classic FIXED_BATCH models: batch 1 as loaded, batch 3 after
``dynamic_batch=True``).  Classic models and resnet50_like are ``slow``.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

# Same import path as the other suites (`tests.zoo`), so the per-process export caches are shared.
try:
    from tests.zoo import classic, handbuilt, input_chw, op_counts, random_input, run_onnx
except ImportError:  # only tests/ itself on sys.path
    from zoo import classic, handbuilt, input_chw, op_counts, random_input, run_onnx


def _dims(vi: onnx.ValueInfoProto) -> list:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in vi.type.tensor_type.shape.dim]


def _check_contract(model: onnx.ModelProto, *, dynamic_batch: bool = True) -> None:
    onnx.checker.check_model(model, full_check=True)
    assert len(model.graph.input) == 1
    inp = model.graph.input[0]
    assert inp.name == "input"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = _dims(inp)
    assert len(dims) == 4 and all(isinstance(d, int) and d > 0 for d in dims[1:]), dims
    if dynamic_batch:
        assert dims[0] == "batch", dims
    init_names = {t.name for t in model.graph.initializer}
    assert inp.name not in init_names


def _run_batches(model: onnx.ModelProto, batches=(1, 3), *, n_out: int | None = None,
                 threads: int = 1) -> None:
    for b in batches:
        outs = run_onnx(model, random_input(model, b, seed=b), threads=threads)
        assert len(outs) == len(model.graph.output)
        for o in outs:
            assert o.shape[0] == b
            assert np.isfinite(o).all()
        if n_out is not None:
            assert outs[0].shape == (b, n_out)


# --------------------------------------------------------------------------- handbuilt
@pytest.mark.parametrize("name", sorted(handbuilt.ALL_CASES))
def test_handbuilt_checks_and_runs(name):
    model = handbuilt.ALL_CASES[name]()
    _check_contract(model)
    assert model.graph.output[0].name == "output"
    expected_opset = {"split_equal": 18, "reducemean_axes_input": 18, "slice_opset9": 9}.get(name, 17)
    assert {o.domain: o.version for o in model.opset_import}[""] == expected_opset
    if name in handbuilt.NOT_RUNNABLE:
        return
    _run_batches(model, n_out=handbuilt.NUM_CLASSES)


@pytest.mark.parametrize("name", sorted(handbuilt.CASES))
def test_handbuilt_structure(name):
    """conv_a exists, its output is not a graph output, graph outputs come from a consumer."""
    model = handbuilt.CASES[name]()
    producers = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert any(n.name == "conv_a" for n in convs)
    consumers = {x for n in model.graph.node for x in n.input}
    for out in model.graph.output:
        assert producers[out.name].op_type in {"Gemm", "Add", "MatMul"}, producers[out.name].op_type
    conv_a = next(n for n in convs if n.name == "conv_a")
    assert conv_a.output[0] in consumers
    assert conv_a.output[0] not in {o.name for o in model.graph.output}


def test_handbuilt_blocked_and_flags():
    assert set(handbuilt.BLOCKED_CASES) == {"maxout", "softmax_channels",
                                             "custom_domain_op", "conv_to_output"}
    assert handbuilt.NOT_RUNNABLE <= set(handbuilt.ALL_CASES)
    assert not set(handbuilt.CASES) & set(handbuilt.BLOCKED_CASES)
    m = handbuilt.conv_to_output()
    assert [o.name for o in m.graph.output] == ["output", "features"]
    m = handbuilt.custom_domain_op()
    assert any(n.domain == "com.acme" for n in m.graph.node)


@pytest.mark.parametrize("name", ["conv_bn_relu", "residual_add_fanout", "depthwise_conv"])
def test_handbuilt_bn_stats_nontrivial(name):
    model = handbuilt.CASES[name]()
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    bns = [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    assert bns
    for bn in bns:
        mean, var = inits[bn.input[3]], inits[bn.input[4]]
        assert (var > 0).all() and not np.allclose(var, 1.0) and not np.allclose(mean, 0.0)


def test_handbuilt_deterministic():
    for name, fn in handbuilt.ALL_CASES.items():
        assert fn().SerializeToString() == fn().SerializeToString(), name


# --------------------------------------------------------------------------- exported
torch = pytest.importorskip("torch")
try:
    from tests.zoo import exported
except ImportError:
    from zoo import exported


_FAST_DYNAMO = {"resnet_blocks", "vgg_flatten"}


def _exported_params():
    for name in exported.NAMES:
        for exporter in exported.EXPORTERS:
            for fold in (False, True):
                # dynamo exports take ~3-7 s each on 2 shared cores: only two stay in the fast set
                fast = exporter == "torchscript" or (not fold and name in _FAST_DYNAMO)
                marks = [] if fast else [pytest.mark.slow]
                yield pytest.param(name, exporter, fold, marks=marks, id=f"{name}-{exporter}-fold{int(fold)}")


@pytest.mark.parametrize("name,exporter,fold", list(_exported_params()))
def test_exported_checks_runs_matches_torch(name, exporter, fold):
    model = exported.export(name, exporter=exporter, fold_bn=fold)
    _check_contract(model)
    assert [o.name for o in model.graph.output] == ["output"]
    assert _dims(model.graph.output[0]) == ["batch", exported.NUM_CLASSES]
    opset = {o.domain: o.version for o in model.opset_import}[""]
    assert opset == (17 if exporter == "torchscript" else 18)
    n_bn = op_counts(model)["BatchNormalization"]
    if fold:
        assert n_bn == 0
    else:
        assert n_bn > 0
    assert input_chw(model) == exported.input_shape(name)
    module = exported.build_torch(name)
    for b in (1, 3):
        x = random_input(model, b, seed=b)
        (y,) = run_onnx(model, x)
        with torch.no_grad():
            ref = module(torch.from_numpy(x)).numpy()
        assert y.shape == (b, exported.NUM_CLASSES)
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


def test_exported_returns_fresh_copies():
    a = exported.export("vgg_flatten", exporter="torchscript", fold_bn=True)
    a.graph.node.pop()
    b = exported.export("vgg_flatten", exporter="torchscript", fold_bn=True)
    assert len(b.graph.node) == len(a.graph.node) + 1
    assert "resnet50_like" in exported.LARGE and "resnet50_like" not in exported.NAMES


@pytest.mark.slow
def test_resnet50_like():
    model = exported.resnet50_like()
    _check_contract(model)
    counts = op_counts(model)
    assert counts["BatchNormalization"] == 53 and counts["Conv"] == 53
    assert input_chw(model) == (3, 224, 224)
    _run_batches(model, n_out=1000, threads=2)


# --------------------------------------------------------------------------- detection, quantized
try:
    from tests.zoo import detection, quantized
except ImportError:
    from zoo import detection, quantized


@pytest.mark.parametrize("exporter", [
    "torchscript", pytest.param("dynamo", marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", detection.NAMES)
def test_detection_exports_check_run_and_match_torch(name, exporter):
    model = detection.export(name, exporter=exporter)
    _check_contract(model)
    assert input_chw(model) == detection.INPUT_CHW
    counts = op_counts(model)
    expected_ops = {"detector": {"Split", "Concat", "MaxPool", "Resize", "Softmax", "Sigmoid", "Reshape", "Transpose"},
                    "segmenter": {"ConvTranspose", "Resize", "Concat", "MaxPool"}}[name]
    assert expected_ops <= set(counts), counts
    module = detection.build_torch(name)
    for b in (1, 3):
        x = random_input(model, b, seed=b)
        (y,) = run_onnx(model, x)
        with torch.no_grad():
            np.testing.assert_allclose(y, module(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-4)
    shape = {"detector": (3, 4 + detection.CLASSES, 84), "segmenter": (3, detection.CLASSES, 64, 64)}[name]
    assert y.shape == shape


def test_quantized_sample_is_qdq_int8_per_channel():
    model = quantized.quantized_sample()
    onnx.checker.check_model(model, full_check=True)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    readers = {n.output[0]: n for n in model.graph.node}
    for conv in (n for n in model.graph.node if n.op_type in ("Conv", "Gemm")):
        dq = readers[conv.input[1]]
        assert dq.op_type == "DequantizeLinear" and inits[dq.input[0]].dtype == np.int8
        assert inits[dq.input[1]].shape == (inits[dq.input[0]].shape[0],)  # one scale per output channel
    assert op_counts(model)["QuantizeLinear"] >= 10
    logits = run_onnx(model, random_input(model, 2))[0]
    assert logits.shape == (2, 10) and np.isfinite(logits).all()


# --------------------------------------------------------------------------- classic
@pytest.mark.slow
@pytest.mark.parametrize("name", classic.CLASSIC_NAMES)
def test_classic_checks_and_runs(name):
    model = classic.load_classic(name)
    fixed = name in classic.FIXED_BATCH
    _check_contract(model, dynamic_batch=not fixed)
    assert "ConstantOfShape" not in op_counts(model)
    assert _dims(model.graph.input[0])[0] == (1 if fixed else "batch")
    _run_batches(model, (1,) if fixed else (1, 3), threads=2)
    if fixed:
        dyn = classic.load_classic(name, dynamic_batch=True)
        _check_contract(dyn)
        _run_batches(dyn, (3,), threads=2)


@pytest.mark.slow
def test_classic_fold_unsqueeze():
    model = classic.load_classic("inception_v2", fold_unsqueeze=True)
    onnx.checker.check_model(model, full_check=True)
    assert "Unsqueeze" not in op_counts(model)
    ref = classic.load_classic("inception_v2")
    x = random_input(model, 1)
    np.testing.assert_allclose(run_onnx(model, x)[0], run_onnx(ref, x)[0], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- random graphs
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

try:
    from tests.zoo.random_graphs import cnn_graphs
except ImportError:
    from zoo.random_graphs import cnn_graphs


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cnn_graphs())
def test_random_graphs_check_and_run(model):
    _check_contract(model)
    _run_batches(model, n_out=handbuilt.NUM_CLASSES)
    counts = op_counts(model)
    assert counts["Gemm"] == 1
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    inits = {t.name: t for t in model.graph.initializer}
    for n in convs:
        assert inits[n.input[1]].dims[0] <= 12  # max_channels
