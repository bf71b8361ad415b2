"""The torch bridge: forward equals onnxruntime, training updates state, write_back is exact."""

import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

torch = pytest.importorskip("torch")

from onnxcar.bridge import OnnxModule, write_back  # noqa: E402
from onnxcar.errors import OnnxcarError  # noqa: E402
from onnxcar.graph import analyze  # noqa: E402
from onnxcar.surgery import make_plan, remove_channels  # noqa: E402
from tests.zoo import classic, dynamic, exported, handbuilt  # noqa: E402

F32, I64 = TensorProto.FLOAT, TensorProto.INT64
BIG = 2**63 - 1
RTOL, ATOL = 1e-4, 1e-5
_RNG = np.random.default_rng(0)


def rand(*shape, low=None):
    """Seeded float32 array: standard normal, or uniform in [low, low + 1] when ``low`` is given."""
    values = _RNG.standard_normal(shape) if low is None else _RNG.uniform(low, low + 1, shape)
    return values.astype(np.float32)


def i64(*values):
    return np.array(values, dtype=np.int64)


def node(op, inputs, outputs=("y",), **attrs):
    return helper.make_node(op, list(inputs), list(outputs), name=f"{op.lower()}_{outputs[0]}", **attrs)


@dataclass
class Case:
    """A hand-built graph: graph inputs get a symbolic batch dim in front of their shape."""

    id: str
    nodes: list
    inits: dict = field(default_factory=dict)  # name -> array
    inputs: dict = field(default_factory=lambda: {"x": (4, 6, 6)})
    outputs: dict = field(default_factory=lambda: {"y": F32})
    opset: int = 17
    positive: bool = False  # feed inputs in [0.5, 1.5] (for Sqrt, Log, Pow...)

    def model(self) -> onnx.ModelProto:
        inputs = [helper.make_tensor_value_info(n, F32, ["N", *s]) for n, s in self.inputs.items()]
        outputs = [helper.make_tensor_value_info(n, t, None) for n, t in self.outputs.items()]
        inits = [numpy_helper.from_array(np.asarray(v), n) for n, v in self.inits.items()]
        graph = helper.make_graph(self.nodes, self.id, inputs, outputs, inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)], ir_version=8)

    def feeds(self, batch: int) -> dict:
        rng = np.random.default_rng(batch)
        make = (lambda s: rng.uniform(0.5, 1.5, s)) if self.positive else rng.standard_normal
        return {n: make((batch, *s)).astype(np.float32) for n, s in self.inputs.items()}


def unary(op, opset=17, positive=False, **attrs):
    return Case(op.lower(), [node(op, ["x"], **attrs)], opset=opset, positive=positive)


def resize(id, opset=13, scales=None, sizes=None, x=(3, 5, 6), op="Resize", **attrs):
    names = ["x", "", "scales" if scales else "", "sizes" if sizes else ""]
    inits = {"scales": np.array(scales, np.float32)} if scales else {}
    if sizes:
        inits["sizes"] = i64(*sizes)
    if opset < 11:  # Resize-10 and Upsample-9 take (X, scales)
        names = ["x", "scales"]
    return Case(id, [node(op, names, **attrs)], inits, {"x": x}, opset=opset)


W4 = rand(6, 4, 3, 3) * 0.3
BN = {"s": rand(4, low=0.5), "b": rand(4), "m": rand(4), "v": rand(4, low=0.5)}
SHAPE_TO_FLAT = [  # x.view(x.size(0), -1) as the TorchScript exporter writes it
    node("Shape", ["x"], ["shp"]),
    node("Gather", ["shp", "zero"], ["n"], axis=0),
    node("Unsqueeze", ["n", "axis0"], ["n1"]),
    node("Concat", ["n1", "minus1"], ["target"], axis=0),
    node("Reshape", ["x", "target"]),
]

# Attribute and opset variants; the zoo's hand-built models cover each op's plain form.
OP_CASES = [
    Case("conv_asym_pads_strides", [node("Conv", ["x", "w"], pads=[1, 0, 2, 1], strides=[2, 1])], {"w": W4},
         {"x": (4, 9, 8)}),
    Case("conv_grouped_dilated", [node("Conv", ["x", "w", "b"], group=2, dilations=[2, 2], pads=[2, 2, 2, 2])],
         {"w": rand(6, 2, 3, 3), "b": rand(6)}),
    Case("conv_depthwise", [node("Conv", ["x", "w"], group=4, strides=[2, 2])], {"w": rand(4, 1, 3, 3)}),
    Case("conv1d", [node("Conv", ["x", "w", "b"], strides=[2], pads=[1, 2])], {"w": rand(5, 4, 3), "b": rand(5)},
         {"x": (4, 11)}),
    Case("conv_same_upper", [node("Conv", ["x", "w"], auto_pad="SAME_UPPER", strides=[2, 2])],
         {"w": rand(3, 4, 4, 4)}, {"x": (4, 7, 8)}),
    Case("conv_same_lower", [node("Conv", ["x", "w"], auto_pad="SAME_LOWER", strides=[2, 1])],
         {"w": rand(3, 4, 4, 4)}, {"x": (4, 7, 8)}),
    Case("conv_valid", [node("Conv", ["x", "w"], auto_pad="VALID", strides=[2, 2])], {"w": W4}, {"x": (4, 8, 7)}),
    Case("convtranspose_output_padding", [node("ConvTranspose", ["x", "w", "b"], strides=[2, 2], pads=[1, 1, 1, 1],
                                               output_padding=[1, 1])], {"w": rand(4, 3, 3, 3), "b": rand(3)}),
    Case("convtranspose_grouped_asym", [node("ConvTranspose", ["x", "w"], group=2, strides=[2, 2],
                                             pads=[0, 1, 1, 0])], {"w": rand(4, 2, 2, 2)}),
    Case("convtranspose_output_shape", [node("ConvTranspose", ["x", "w"], strides=[2, 2], output_shape=[12, 11])],
         {"w": rand(4, 3, 3, 3)}),
    Case("convtranspose_same_upper", [node("ConvTranspose", ["x", "w"], strides=[2, 2], auto_pad="SAME_UPPER")],
         {"w": rand(4, 3, 3, 3)}),
    Case("batchnorm_2d", [node("BatchNormalization", ["x", "s", "b", "m", "v"], epsilon=1e-3)], BN, {"x": (4,)}),
    Case("maxpool_pads", [node("MaxPool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])]),
    Case("maxpool_ceil", [node("MaxPool", ["x"], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1],
                               ceil_mode=1)], inputs={"x": (4, 7, 7)}),
    Case("maxpool_ceil_asym", [node("MaxPool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 2, 0],
                                    ceil_mode=1)], inputs={"x": (4, 8, 9)}),
    Case("maxpool_same_upper", [node("MaxPool", ["x"], kernel_shape=[2, 3], strides=[2, 2], auto_pad="SAME_UPPER")],
         inputs={"x": (4, 7, 8)}),
    Case("maxpool_dilated", [node("MaxPool", ["x"], kernel_shape=[2, 3], dilations=[2, 1], pads=[1, 1, 1, 1])],
         inputs={"x": (4, 7, 8)}),
    Case("maxpool1d", [node("MaxPool", ["x"], kernel_shape=[3], strides=[2])], inputs={"x": (4, 9)}),
    Case("avgpool_exclude_pad", [node("AveragePool", ["x"], kernel_shape=[3, 3], strides=[2, 2],
                                      pads=[1, 1, 1, 1])]),
    Case("avgpool_include_pad_ceil", [node("AveragePool", ["x"], kernel_shape=[3, 3], strides=[2, 2],
                                           pads=[1, 1, 1, 1], count_include_pad=1, ceil_mode=1)]),
    Case("avgpool_asym_exclude_ceil", [node("AveragePool", ["x"], kernel_shape=[3, 2], strides=[2, 2],
                                            pads=[0, 1, 2, 1], ceil_mode=1)], inputs={"x": (4, 7, 8)}),
    Case("avgpool_asym_include", [node("AveragePool", ["x"], kernel_shape=[2, 2], strides=[1, 2],
                                       pads=[1, 0, 0, 1], count_include_pad=1)]),
    Case("avgpool_same_lower", [node("AveragePool", ["x"], kernel_shape=[2, 2], strides=[2, 2],
                                     auto_pad="SAME_LOWER")], inputs={"x": (4, 7, 7)}),
    Case("reducemean_input", [node("ReduceMean", ["x", "axes"], keepdims=0)], {"axes": i64(1, -1)}, opset=18),
    Case("reducemax_attr", [node("ReduceMax", ["x"], axes=[1], keepdims=0)]),
    Case("reducemin_input", [node("ReduceMin", ["x", "axes"])], {"axes": i64(2)}, opset=18),
    Case("reducesum_input", [node("ReduceSum", ["x", "axes"])], {"axes": i64(-2)}),
    Case("reducesum_all", [node("ReduceSum", ["x"], keepdims=0)]),
    Case("reducesum_noop", [node("ReduceSum", ["x"], noop_with_empty_axes=1)]),
    Case("gemm_transb_alpha_beta", [node("Gemm", ["x", "w", "c"], transB=1, alpha=0.5, beta=2.0)],
         {"w": rand(5, 6), "c": rand(5)}, {"x": (6,)}),
    Case("gemm_transa", [node("Transpose", ["x"], ["xt"]), node("Gemm", ["xt", "w"], transA=1)],
         {"w": rand(6, 5)}, {"x": (6,)}),
    Case("flatten_axis2", [node("Flatten", ["x"], axis=2)]),
    Case("flatten_axis0", [node("Flatten", ["x"], axis=0)]),
    Case("flatten_negative_axis", [node("Flatten", ["x"], axis=-1)]),
    Case("reshape_zero_minus_one", [node("Reshape", ["x", "shape"])], {"shape": i64(0, 2, -1, 3)}),
    Case("reshape_dynamic_batch", SHAPE_TO_FLAT,
         {"zero": np.array(0, np.int64), "axis0": i64(0), "minus1": i64(-1)}),
    Case("transpose_default", [node("Transpose", ["x"])]),
    Case("concat", [node("Relu", ["x"], ["r"]), node("Concat", ["x", "r", "x"], axis=-3)]),
    Case("split_attr", [node("Split", ["x"], ["y", "z"], axis=2, split=[2, 4])], opset=11,
         outputs={"y": F32, "z": F32}),
    Case("split_input", [node("Split", ["x", "split"], ["y", "z"], axis=-1)], {"split": i64(5, 1)},
         outputs={"y": F32, "z": F32}),
    Case("split_equal", [node("Split", ["x"], ["y", "z", "w"], axis=1)], inputs={"x": (6, 2)},
         outputs={"y": F32, "z": F32, "w": F32}),
    Case("split_num_outputs_uneven", [node("Split", ["x"], ["y", "z", "w"], axis=1, num_outputs=3)],
         inputs={"x": (7, 2)}, outputs={"y": F32, "z": F32, "w": F32}, opset=18),
    Case("slice_steps", [node("Slice", ["x", "starts", "ends", "axes", "steps"])],
         {"starts": i64(1, -1, 0), "ends": i64(BIG, -BIG, -2), "axes": i64(1, 3, 2), "steps": i64(2, -2, 1)}),
    Case("slice_negative_step_empty", [node("Slice", ["x", "starts", "ends", "axes", "steps"])],
         {"starts": i64(0), "ends": i64(3), "axes": i64(-1), "steps": i64(-1)}),
    Case("slice_default_axes", [node("Slice", ["x", "starts", "ends"])], {"starts": i64(0, 1), "ends": i64(1, 4)}),
    Case("slice_opset9_attrs", [node("Slice", ["x"], starts=[1, 0], ends=[BIG, -1], axes=[2, 3])], opset=9),
    Case("squeeze_input", [node("Squeeze", ["x", "axes"])], {"axes": i64(1, -1)}, {"x": (1, 4, 1)}),
    Case("squeeze_attr_all", [node("Squeeze", ["x"])], inputs={"x": (1, 4, 1)}, opset=11),
    Case("unsqueeze_input", [node("Unsqueeze", ["x", "axes"])], {"axes": i64(-1, 1)}),
    Case("unsqueeze_attr", [node("Unsqueeze", ["x"], axes=[0, 3])], opset=11),
    Case("clip_attrs", [node("Clip", ["x"], min=-0.5, max=0.7)], opset=6),
    Case("clip_min_input", [node("Clip", ["x", "lo"])], {"lo": np.array(-0.3, np.float32)}),
    unary("Elu", alpha=0.7),
    unary("Gelu", opset=20, approximate="tanh"),
    Case("softmax_opset11_coerced", [node("Softmax", ["x"])], opset=11),
    unary("LogSoftmax"),
    Case("pow", [node("Pow", ["x", "e"])], {"e": rand(4, 1, 6, low=0.5)}, positive=True),
    unary("Sqrt", positive=True),
    unary("Log", positive=True),
    unary("Reciprocal", positive=True),
    unary("Neg"),
    unary("Exp"),
    unary("Abs"),
    Case("pad_constant", [node("Pad", ["x", "pads", "value"])],
         {"pads": i64(0, 1, 2, 0, 0, 0, 1, -1), "value": np.array(0.5, np.float32)}),
    Case("pad_reflect", [node("Pad", ["x", "pads"], mode="reflect")], {"pads": i64(0, 0, 1, 2, 0, 0, 2, 1)}),
    Case("pad_edge_last_dim", [node("Pad", ["x", "pads"], mode="edge")], {"pads": i64(0, 0, 0, 2, 0, 0, 0, 3)}),
    Case("pad_axes", [node("Pad", ["x", "pads", "", "axes"])], {"pads": i64(1, 2, 3, 4), "axes": i64(-1, 1)},
         opset=18),
    Case("pad_opset2_attrs", [node("Pad", ["x"], pads=[0, 0, 1, 1, 0, 0, 1, 1], value=-1.0)], opset=10),
    resize("resize_nearest_asymmetric_floor", scales=[1, 1, 2, 2], coordinate_transformation_mode="asymmetric",
           nearest_mode="floor"),
    resize("resize_nearest_half_pixel", scales=[1, 1, 1.5, 2.5]),
    resize("resize_nearest_sizes_down_ceil", sizes=[3, 4], axes=[2, 3], opset=18, nearest_mode="round_prefer_ceil"),
    resize("resize_linear_half_pixel", scales=[1, 1, 2, 2], mode="linear"),
    resize("resize_linear_align_corners", sizes=[9, 4], axes=[2, 3], opset=18, mode="linear",
           coordinate_transformation_mode="align_corners"),
    resize("resize_linear_asymmetric", scales=[1, 1, 1.7, 0.6], mode="linear",
           coordinate_transformation_mode="asymmetric"),
    resize("resize_linear_pytorch_half_pixel", sizes=[1, 3], axes=[-2, -1], opset=18, mode="linear",
           coordinate_transformation_mode="pytorch_half_pixel"),
    resize("resize_linear_half_pixel_symmetric", scales=[1, 1, 1.5, 0.7], mode="linear", opset=19,
           coordinate_transformation_mode="half_pixel_symmetric"),
    resize("resize_axes_opset18", scales=[2, 3], opset=18, axes=[2, 3], mode="linear"),
    resize("resize_opset10", scales=[1, 1, 2, 3], opset=10),
    resize("upsample_opset9_linear", scales=[1, 1, 2, 1.5], opset=9, op="Upsample", mode="linear"),
    Case("constant", [node("Constant", [], ["c"], value=numpy_helper.from_array(rand(4, 1, 1))),
                      node("Constant", [], ["f"], value_floats=[0.5]), node("Add", ["x", "c"], ["s"]),
                      node("Mul", ["s", "f"])]),
    Case("constant_of_shape_shape_slice", [node("Shape", ["x"], ["s"], start=2, end=10),
                                           node("ConstantOfShape", ["s"], ["c"], value=helper.make_tensor(
                                               "v", F32, [1], [0.25])), node("Add", ["x", "c"])]),
    Case("gather_negative_and_scalar", [node("Gather", ["x", "idx"], ["g"], axis=1),
                                        node("Gather", ["g", "k"], axis=-1)],
         {"idx": i64(-1, 0, 2), "k": np.array(-2, np.int64)}),
    Case("cast_truncates", [node("Mul", ["x", "ten"], ["m"]), node("Cast", ["m"], to=I64)],
         {"ten": np.array(10, np.float32)}, outputs={"y": I64}),
    Case("shape_arithmetic", [node("Shape", ["x"], ["s"]), node("Div", ["s", "two"], ["h"]),
                              node("Sub", ["s", "h"], ["d"]), node("Gather", ["d", "three"], ["n"]),
                              node("Range", ["zero", "n", "one"], ["r"]), node("Cast", ["r"], ["rf"], to=F32),
                              node("ReduceSum", ["rf"], ["sum"], keepdims=0), node("Mul", ["x", "sum"])],
         {"two": i64(2), "three": np.array(3, np.int64), "zero": np.array(0, np.int64),
          "one": np.array(1, np.int64)}, {"x": (2, 3, 7)}),
    unary("LRN", size=3, alpha=1e-2, beta=0.6, bias=2.0),
    Case("sum_max_min_mean", [node("Sum", ["x", "a", "b"], ["s"]), node("Max", ["s", "a"], ["m"]),
                              node("Min", ["m", "b", "x"], ["n"]), node("Mean", ["n", "a"])],
         {"a": rand(6), "b": rand(4, 1, 1)}),
    Case("equal_where", [node("Greater", ["x", "zero"], ["g"]), node("Equal", ["g", "t"], ["e"]),
                         node("Where", ["e", "x", "neg"])],
         {"zero": np.array(0, np.float32), "t": np.array(True), "neg": rand(6)}),
    Case("logic_and_rounding", [node("Floor", ["x"], ["f"]), node("Ceil", ["x"], ["c"]),
                                node("Less", ["f", "c"], ["l"]), node("LessOrEqual", ["x", "low"], ["le"]),
                                node("GreaterOrEqual", ["x", "high"], ["ge"]),
                                node("And", ["l", "le"], ["a"]), node("Or", ["a", "ge"], ["o"]),
                                node("Not", ["o"], ["n"]), node("CastLike", ["n", "x"], ["nf"]),
                                node("Add", ["nf", "f"])],  # |x| < 0.5, plus floor(x)
         {"low": np.array(-0.5, np.float32), "high": np.array(0.5, np.float32)}),
    Case("expand_bidirectional", [node("Expand", ["x", "shape"])], {"shape": i64(3, 1, 1, 1, 6)},
         inputs={"x": (4, 1, 1)}),
    Case("tile", [node("Tile", ["x", "reps"])], {"reps": i64(1, 2, 1, 3)}),
]


def ort_run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def bridge_run(module: OnnxModule, feeds: dict) -> list[np.ndarray]:
    with torch.no_grad():
        out = module(*(torch.from_numpy(feeds[name]) for name in module.input_names))
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def assert_matches_ort(model: onnx.ModelProto, feeds: dict, module: OnnxModule | None = None, deep=False):
    """Assert the bridge (in eval mode) gives onnxruntime's outputs on ``feeds``.

    ``deep``: also allow 1e-4 of the output's largest magnitude, the float32 rounding noise
    of 50+ layer nets (onnxruntime and the bridge then differ from float64 by as much).
    """
    module = module or OnnxModule(model).eval()
    expected, actual = ort_run(model, feeds), bridge_run(module, feeds)
    assert len(actual) == len(expected)
    for want, got in zip(expected, actual):
        assert got.shape == want.shape and got.dtype == want.dtype
        atol = max(ATOL, 1e-4 * float(np.abs(want).max())) if deep and want.size else ATOL
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=atol)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("case", OP_CASES, ids=lambda c: c.id)
def test_op_matches_onnxruntime(case, batch):
    assert_matches_ort(case.model(), case.feeds(batch))


def test_lrn_even_size_follows_spec():  # onnxruntime only runs odd sizes
    size, alpha, beta, bias = 4, 0.1, 0.75, 1.5
    x = rand(2, 7, 3, 3)
    padded = np.pad(x**2, [(0, 0), ((size - 1) // 2, size // 2), (0, 0), (0, 0)])
    sums = sum(padded[:, i : i + 7] for i in range(size))
    want = x / (bias + alpha / size * sums) ** beta
    model = unary("LRN", size=size, alpha=alpha, beta=beta, bias=bias).model()
    np.testing.assert_allclose(bridge_run(OnnxModule(model), {"x": x})[0], want, rtol=RTOL, atol=ATOL)


def graph_feeds(model: onnx.ModelProto, batch: int) -> dict:
    """Seeded inputs for every non-initializer graph input, batch dim first."""
    rng = np.random.default_rng(batch)
    inits = {i.name for i in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name not in inits:
            shape = [batch] + [d.dim_value for d in value.type.tensor_type.shape.dim[1:]]
            feeds[value.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def logits(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its final Softmax cut off, so saturated probabilities cannot hide errors."""
    last = model.graph.node[-1]
    if last.op_type == "Softmax" and last.output[0] == model.graph.output[0].name:
        model.graph.node.pop()
        model.graph.output[0].name = last.input[0]
    return model


ZOO_HANDBUILT = [name for name in handbuilt.ALL_CASES if name not in handbuilt.NOT_RUNNABLE]


@pytest.mark.parametrize("name", ZOO_HANDBUILT)
def test_zoo_handbuilt_matches_onnxruntime(name):
    model = handbuilt.ALL_CASES[name]()
    module = OnnxModule(model).eval()
    for batch in (1, 3):
        assert_matches_ort(model, graph_feeds(model, batch), module)


def test_pruned_lrn_matches_onnxruntime_and_keeps_its_window_fixed():
    """Removing channels around an LRN writes it as a channel-window Conv and scalar ops (surgery.lrn)."""
    analysis = analyze(handbuilt.CASES["lrn"]())
    model = remove_channels(make_plan(analysis, analysis.group("conv_a").channel_ids([0, 3, 6])))
    assert "LRN" not in {n.op_type for n in model.graph.node}
    module = OnnxModule(model).eval()
    for batch in (1, 3):
        assert_matches_ort(model, graph_feeds(model, batch), module)
    fixed = {"lrn/window", "lrn/alpha_over_size", "lrn/bias", "lrn/beta"}
    trained = {module.onnx_names[name] for name, _ in module.named_parameters()}
    assert not fixed & trained and {"conv_a.weight", "conv_b.weight"} <= trained
    assert fixed <= set(module.initializers())


@pytest.mark.parametrize("fold_bn", [False, True], ids=["bn", "folded"])
@pytest.mark.parametrize("name", exported.NAMES)
def test_zoo_torchscript_export_matches_onnxruntime_and_torch(name, fold_bn):
    model = exported.export(name, exporter="torchscript", fold_bn=fold_bn)
    module = OnnxModule(model).eval()
    for batch in (1, 3):
        feeds = graph_feeds(model, batch)
        assert_matches_ort(model, feeds, module)
        with torch.no_grad():
            source = exported.build_torch(name)(torch.from_numpy(feeds["input"]))
        np.testing.assert_allclose(bridge_run(module, feeds)[0], source.numpy(), rtol=RTOL, atol=ATOL)


DYNAMIC_SIZE = {  # models whose height and width are symbolic, with their input name
    "paddle": (dynamic.paddle_like, "x"),
    "torch": (lambda: exported.export("mobilenet_se", fold_bn=False, dynamic_hw=True), "input"),
}


@pytest.mark.parametrize("name", DYNAMIC_SIZE)
def test_models_of_symbolic_size_match_onnxruntime_at_two_sizes(name):
    build, input_name = DYNAMIC_SIZE[name]
    model = build()
    module = OnnxModule(model).eval()
    rng = np.random.default_rng(0)
    for shape in [(2, 3, 24, 64), (1, 3, 37, 30)]:
        assert_matches_ort(model, {input_name: rng.standard_normal(shape).astype(np.float32)}, module)


@pytest.mark.slow
@pytest.mark.parametrize("fold_bn", [False, True], ids=["bn", "folded"])
@pytest.mark.parametrize("name", exported.NAMES)
def test_zoo_dynamo_export_matches_onnxruntime(name, fold_bn):
    model = exported.export(name, exporter="dynamo", fold_bn=fold_bn)
    module = OnnxModule(model).eval()
    for batch in (1, 3):
        assert_matches_ort(model, graph_feeds(model, batch), module)


@pytest.mark.slow
@pytest.mark.parametrize("name", classic.CLASSIC_NAMES)
def test_zoo_classic_matches_onnxruntime(name):
    model = logits(classic.load_classic(name))
    for batch in (1,) if name in classic.FIXED_BATCH else (1, 3):
        assert_matches_ort(model, graph_feeds(model, batch), deep=True)


def conv_bn_model(momentum: float = 0.8) -> onnx.ModelProto:
    """Conv -> BatchNormalization -> Add(Cast(fp16 initializer)) -> Relu, with doc strings and metadata."""
    case = Case("conv_bn", [node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                            node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], momentum=momentum),
                            node("Cast", ["h"], ["hf"], to=F32), node("Add", ["n", "hf"], ["a"]),
                            node("Relu", ["a"])],
                {"w": W4, **{k: np.resize(v, 6) for k, v in BN.items()}})
    model = case.model()
    model.graph.initializer.append(helper.make_tensor("h", TensorProto.FLOAT16, [6, 1, 1], rand(6, 1, 1)))
    model.doc_string, model.graph.doc_string, model.graph.node[1].doc_string = "model doc", "graph doc", "bn doc"
    model.producer_name, model.model_version = "onnxcar-test", 7
    helper.set_model_props(model, {"author": "tests", "license": "none"})
    return model


def test_train_mode_batchnorm_updates_running_stats_and_write_back_stores_them():
    model = conv_bn_model(momentum=0.8)
    module = OnnxModule(model).train()
    stats = module.initializers()
    old_mean, old_var = stats["m"].clone(), stats["v"].clone()
    x = torch.from_numpy(rand(8, 4, 6, 6))
    module(x)
    conv = torch.nn.functional.conv2d(x, torch.from_numpy(W4), padding=1)
    torch.testing.assert_close(stats["m"], 0.8 * old_mean + 0.2 * conv.mean((0, 2, 3)))
    torch.testing.assert_close(stats["v"], 0.8 * old_var + 0.2 * conv.var((0, 2, 3)))

    written = {i.name: numpy_helper.to_array(i) for i in write_back(model, module).graph.initializer}
    np.testing.assert_array_equal(written["m"], stats["m"].numpy())
    np.testing.assert_array_equal(written["v"], stats["v"].numpy())
    assert not np.allclose(written["m"], old_mean.numpy())


def strip_initializer_data(model: onnx.ModelProto) -> bytes:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for init in model.graph.initializer:
        for data in ("raw_data", "float_data", "int32_data", "int64_data", "double_data"):
            init.ClearField(data)
    return model.SerializeToString()


def test_write_back_changes_only_initializer_values():
    model = conv_bn_model()
    module = OnnxModule(model).double()  # written values still take each initializer's dtype
    with torch.no_grad():
        for tensor in module.initializers().values():
            if tensor.is_floating_point():
                tensor.add_(1)
    written = write_back(model, module)
    assert strip_initializer_data(written) == strip_initializer_data(model)
    assert strip_initializer_data(model) != strip_initializer_data(conv_bn_model(momentum=0.5))  # sanity
    for old, new in zip(model.graph.initializer, written.graph.initializer):
        assert (new.name, new.data_type, list(new.dims)) == (old.name, old.data_type, list(old.dims))
        np.testing.assert_allclose(numpy_helper.to_array(new), numpy_helper.to_array(old) + 1, rtol=1e-3)


def test_finetuned_weights_written_back_run_the_same_in_onnxruntime():
    model = exported.export("vgg_flatten", exporter="torchscript", fold_bn=False)
    module = OnnxModule(model).train()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.05)
    x, labels = torch.from_numpy(rand(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3])
    for _ in range(2):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(module(x), labels).backward()
        optimizer.step()
    assert all(p.grad is not None for p in module.parameters())
    module.eval()
    written = write_back(model, module)
    onnx.checker.check_model(written)
    feeds = graph_feeds(model, 2)
    assert_matches_ort(written, feeds, module)
    assert not np.allclose(ort_run(written, feeds)[0], ort_run(model, feeds)[0], rtol=RTOL, atol=ATOL)


def test_parameters_buffers_and_names():
    case = Case("names", [node("Constant", [], ["k"], value=numpy_helper.from_array(rand(1))),
                          node("Conv", ["x", "conv.weight"], ["c"]),
                          node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"]),
                          node("Reshape", ["n", "1-shape"], ["r"]), node("Add", ["r", "k"], ["a"]),
                          node("Mul", ["a", "forward"], ["o"]), node("Sub", ["o", "input_names"])],
                {"conv.weight": rand(4, 4, 1, 1), **BN, "1-shape": i64(0, -1), "forward": rand(1),
                 "input_names": rand(1)})
    module = OnnxModule(case.model())
    assert all(attr.isidentifier() for attr in module.onnx_names)
    floats = {"conv.weight", "s", "b", "m", "v", "forward", "input_names"}
    assert set(module.onnx_names.values()) == floats | {"1-shape"}
    by_onnx = {onnx_name: attr for attr, onnx_name in module.onnx_names.items()}
    params, buffers = dict(module.named_parameters()), dict(module.named_buffers())
    assert set(params) == {by_onnx[n] for n in floats - {"m", "v"}}
    assert {by_onnx["m"], by_onnx["v"], by_onnx["1-shape"]} <= set(buffers)
    assert set(module.state_dict()) == {by_onnx[n] for n in floats}
    assert buffers[by_onnx["1-shape"]].dtype == torch.int64
    assert module.input_names == ["x"] and module.output_names == ["y"]


def test_batchnorm_stats_aliasing_a_parameter_are_not_updated_in_place():
    # The TorchScript exporter dedupes equal initializers: running_mean = Identity(bias).
    case = Case("alias", [node("Identity", ["b"], ["mean"]),
                          node("BatchNormalization", ["x", "s", "b", "mean", "v"])], BN)
    module = OnnxModule(case.model()).train()
    bias = module.initializers()["b"].detach().clone()
    out = module(torch.from_numpy(rand(5, 4, 3, 3)) + 3)
    torch.testing.assert_close(module.initializers()["b"].detach(), bias)
    torch.testing.assert_close(out.mean((0, 2, 3)), bias, atol=1e-5, rtol=0)


def test_dropout_is_active_only_in_training():
    module = OnnxModule(unary("Dropout", ratio=0.5, opset=11).model())
    x = torch.ones(1, 4, 16, 16)
    kept = module.train()(x)
    assert {0.0, 2.0} == set(kept.unique().tolist())
    torch.testing.assert_close(module.eval()(x), x)


def test_unknown_op_raises_at_construction_naming_op_and_node():
    case = Case("unknown", [node("Relu", ["x"], ["r"]),
                            helper.make_node("FancyOp", ["r"], ["y"], name="mystery")])
    with pytest.raises(OnnxcarError, match=r"FancyOp \(node 'mystery'\)"):
        OnnxModule(case.model())


def test_unsupported_attribute_raises_naming_node():
    module = OnnxModule(resize("resize_cubic", scales=[1, 1, 2, 2], mode="cubic").model())
    with pytest.raises(OnnxcarError, match=r"Resize node 'resize_y'.*cubic"):
        module(torch.zeros(1, 3, 5, 6))


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return result.stdout


def test_import_does_not_load_torch():
    code = "import sys, onnxcar, onnxcar.bridge\nprint(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    assert run_python(code).strip() == "[]"


def test_bridge_without_torch_says_how_to_install_it():
    code = (
        "import sys\nsys.modules['torch'] = None\nimport onnxcar.bridge\n"
        "try:\n    onnxcar.bridge.OnnxModule\nexcept Exception as exc:\n    print(type(exc).__name__, exc)"
    )
    assert run_python(code).strip() == "OnnxcarError the torch bridge needs torch: pip install 'onnxcar[torch]'"
