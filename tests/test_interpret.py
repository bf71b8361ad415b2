"""onnxcar.interpret: the colour index, receptive fields, top-activating patches and the sensitivity scan,
each checked against a hand-made model or a brute-force reference."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from onnxcar.data import DataSpec, Preprocess, load_dataset, load_pixels
from onnxcar.errors import DataError, OnnxcarError
from onnxcar.graph import analyze
from onnxcar.graph.ir import import_graph
from onnxcar.importance import DataScorer
from onnxcar.importance.batch import make_batch
from onnxcar.tasks import Task
from onnxcar.interpret.colour import colour_selectivity, greyscale, weight_colour_index
from onnxcar.interpret.patches import OUTSIDE, rgb_tiles, top_patches
from onnxcar.interpret.receptive import receptive_fields
from onnxcar.interpret.sensitivity import SensitivityConfig, scan
from onnxcar.io import load_model
from onnxcar.runners.config import RunnerConfig
from onnxcar.surgery import make_plan, remove_channels
from tests.zoo.handbuilt import GraphBuilder

PLAIN = Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # pixels / 255: grey images stay grey


def rgb_model(first: np.ndarray, second: np.ndarray, hw: int = 8, k: int = 1) -> onnx.ModelProto:
    """conv_a (3->n, k x k) -> Relu -> conv_b (n->m, 1x1) -> Relu -> GAP -> Gemm (10), with the given conv weights."""
    g = GraphBuilder(0, in_channels=3, hw=hw, name="rgb")
    x = g.node("Relu", [g.conv(g.input, 3, first.shape[0], k, name="conv_a", bias=False)])
    x = g.node("Relu", [g.conv(x, first.shape[0], second.shape[0], 1, name="conv_b", bias=False)])
    g.gemm(g.flatten(g.gap(x)), second.shape[0], 10, name="head", out="output")
    model = g.build()
    for init in model.graph.initializer:
        if init.name in ("conv_a.weight", "conv_b.weight"):
            init.CopyFrom(numpy_helper.from_array((first if init.name == "conv_a.weight" else second).astype(np.float32),
                                                  init.name))
    return model


def pixels_npz(path, n: int = 24, hw: int = 8, seed: int = 0) -> DataSpec:
    rng = np.random.default_rng(seed)
    np.savez(path, images=rng.integers(0, 256, (n, hw, hw, 3), dtype=np.uint8), labels=rng.integers(0, 10, n))
    return DataSpec(str(path), preprocess=PLAIN)


# ----------------------------------------------------------------------------- colour index

@pytest.mark.parametrize("rgb, std, expected", [
    ((1.0, 1.0, 1.0), (1.0, 1.0, 1.0), 0.0),          # luminance only
    ((1.0, -1.0, 0.0), (1.0, 1.0, 1.0), 1.0),         # red against green: blind to luminance
    ((1.0, 0.0, 0.0), (1.0, 1.0, 1.0), 2.0 / 3.0),    # red only: |(2/3, -1/3, -1/3)|^2 / 1
    ((0.2, 0.4, 0.8), (0.2, 0.4, 0.8), 0.0),          # equal in pixel space once divided by the std
])
def test_weight_colour_index_by_hand(rgb, std, expected):
    spatial = np.random.default_rng(0).standard_normal((5, 5))
    weights = np.asarray(rgb)[None, :, None, None] * spatial[None, None]
    assert weight_colour_index(weights, std)[0] == pytest.approx(expected, abs=1e-12)


def test_greyscale_keeps_each_pixels_mean():
    pixels = np.random.default_rng(1).integers(0, 256, (4, 5, 5, 3), dtype=np.uint8)
    grey = greyscale(pixels)
    np.testing.assert_allclose(grey.mean(axis=-1), pixels.mean(axis=-1), rtol=1e-6)
    assert np.all(grey[..., 0] == grey[..., 1]) and np.all(grey[..., 1] == grey[..., 2])


def test_colour_selectivity_of_a_handmade_model(tmp_path):
    """conv_a: filter 0 is red minus green, filter 1 the luminance; conv_b: filter 0 reads the first, filter 1 the second.

    On grey images red minus green is zero, so conv_b's filter 0 loses all its activation (index 1)
    and filter 1 none (index 0).
    """
    first = np.array([[1.0, -1.0, 0.0], [1.0, 1.0, 1.0]])[:, :, None, None]
    second = np.eye(2)[:, :, None, None]
    analysis = analyze(rgb_model(first, second))
    pixels = load_pixels(pixels_npz(tmp_path / "d.npz"))
    conv_a, conv_b = colour_selectivity(analysis, ("conv_a", "conv_b"), pixels)
    assert (conv_a.method, conv_b.method) == ("weights", "greyscale")
    np.testing.assert_allclose(conv_a.values, [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(conv_b.values, [1.0, 0.0], atol=1e-6)
    assert conv_a.selective.tolist() == [True, False] and conv_b.count([0, 1]) == 1
    assert colour_selectivity(analysis, ("conv_a",), None)[0].values == conv_a.values  # the first layer needs no data
    with pytest.raises(DataError, match="needs the pruning set"):
        colour_selectivity(analysis, ("conv_b",), None)


def test_rgb_tiles_are_grey_at_zero_and_fill_the_range():
    weights = np.random.default_rng(2).standard_normal((4, 3, 5, 5))
    weights[1] = 0.0
    tiles = rgb_tiles(weights)
    assert tiles.shape == (4, 5, 5, 3) and np.all(tiles[1] == 0.5)
    assert tiles.min() >= 0.0 and tiles.max() <= 1.0
    assert np.allclose(np.abs(tiles[[0, 2, 3]] - 0.5).max(axis=(1, 2, 3)), 0.5)


# ----------------------------------------------------------------------------- receptive fields and patches

@pytest.mark.parametrize("node, size, step", [
    ("/conv1/Conv", 5, 1), ("/pool1/MaxPool", 7, 2), ("/conv2/Conv", 11, 2), ("/pool2/MaxPool", 15, 4),
    ("/conv3/Conv", 23, 4), ("/fc6/Gemm", None, None),
])
def test_receptive_fields_of_the_sample(node, size, step):
    """conv 5x5 pad 2, maxpool 3x3 stride 2 pad 1, conv 3x3 pad 1, ...: sizes grow by (k - 1) x step."""
    graph = import_graph(load_model("samples/alexnet_cifar10.onnx"))
    field = receptive_fields(graph, "input")[next(n for n in graph.nodes if n.name == node).outputs[0].name]
    if size is None:
        assert field is None
        return
    assert (field.size, field.step) == ((size, size), (step, step))
    first, end = field.window((3, 3))[0]
    assert (end - first, (first + end - 1) / 2) == (size, 3 * step)  # a unit's window is centred on it


def test_top_patches_find_each_filters_spot(tmp_path):
    """conv_a's filter c is the centre tap of channel c; one image per channel holds a bright spot there."""
    first = np.zeros((3, 3, 3, 3))
    first[[0, 1, 2], [0, 1, 2], 1, 1] = 1.0
    analysis = analyze(rgb_model(first, np.eye(3)[:, :, None, None], k=3))
    images = np.full((5, 8, 8, 3), 10, dtype=np.uint8)
    spots = {0: (2, 0, 0), 1: (4, 7, 7), 2: (1, 3, 5)}  # channel -> (image, row, column)
    for channel, (image, row, col) in spots.items():
        images[image, row, col, channel] = 255
    np.savez(tmp_path / "d.npz", images=images, labels=np.zeros(5, dtype=np.int64))
    (patches,) = top_patches(analysis, [analysis.group("conv_a")], load_pixels(DataSpec(str(tmp_path / "d.npz"),
                                                                                         preprocess=PLAIN)), k=2)
    assert patches.patches.shape == (3, 2, 3, 3, 3)
    for channel, (image, row, col) in spots.items():
        assert patches.images[channel, 0] == image
        assert patches.patches[channel, 0, 1, 1, channel] == 255  # the spot sits at the patch's centre
        outside = [(r, c) for r in (0, 1, 2) for c in (0, 1, 2) if not (0 <= row + r - 1 < 8 and 0 <= col + c - 1 < 8)]
        assert all(np.all(patches.patches[channel, 0, r, c] == OUTSIDE) for r, c in outside)


def test_top_patches_need_pixels(tmp_path):
    analysis = analyze(rgb_model(np.ones((2, 3, 1, 1)), np.eye(2)[:, :, None, None]))
    np.savez(tmp_path / "f.npz", images=np.zeros((2, 3, 8, 8), np.float32), labels=np.zeros(2, np.int64))
    floats = load_pixels(DataSpec(str(tmp_path / "f.npz"), preprocess=Preprocess.preset("none")))
    with pytest.raises(DataError, match="need image pixels"):
        top_patches(analysis, [analysis.group("conv_b")], floats)


# ----------------------------------------------------------------------------- sensitivity

def accuracy(model: onnx.ModelProto, images: np.ndarray, labels: np.ndarray) -> float:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return float(np.mean(session.run(None, {"input": images})[0].argmax(axis=1) == labels))


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A random RGB model with 6 and 5 filters, its pruning set and a scorer over it."""
    rng = np.random.default_rng(5)
    model = rgb_model(rng.standard_normal((6, 3, 3, 3)), rng.standard_normal((5, 6, 1, 1)), k=3)
    spec = pixels_npz(tmp_path_factory.mktemp("sens") / "d.npz", n=60)
    batch = make_batch(model, load_dataset(spec), Task(), RunnerConfig())
    return model, batch


@pytest.mark.parametrize("criterion", ["l1", "car"])
def test_sensitivity_points_match_brute_force(scored, criterion):
    """Every point is the accuracy of the model with the scan's first k filters removed, rebuilt and run here;
    L1's order is the filters' ascending L1 norms."""
    model, batch = scored
    analysis = analyze(model)
    calls = []
    result = scan(analysis, SensitivityConfig(criterion, (0.2, 0.5, 0.9), ("conv_a", "conv_b")),
                  DataScorer(batch, Task()), lambda *args: calls.append(args))
    (images,), labels = batch.inputs.values(), batch.targets
    assert result.original_metric == pytest.approx(accuracy(model, images, labels), abs=1e-12)
    for layer, filters in zip(result.layers, (6, 5)):
        group = analysis.group(layer.layer)
        assert [p.removed for p in layer.points] == [int(s * filters) for s in (0.2, 0.5, 0.9)]
        assert len(layer.order) == int(0.9 * filters)
        for point in layer.points:
            pruned = remove_channels(make_plan(analysis, group.channel_ids(layer.order[: point.removed])))
            assert point.metric == pytest.approx(accuracy(pruned, images, labels), abs=1e-12)
        if criterion == "l1":
            weight = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == f"{layer.layer}.weight"))
            norms = np.abs(weight).sum(axis=(1, 2, 3))
            assert list(layer.order) == list(np.argsort(norms, kind="stable")[: len(layer.order)])
    assert calls[-1][1:3] == (len(result.layers[0].order) + len(result.layers[1].order),) * 2
    assert result.to_dict()["kind"] == "sensitivity"


@pytest.mark.parametrize("steps", [(), (0.0, 0.5), (0.5, 1.0)])
def test_sensitivity_steps_must_be_fractions(steps):
    with pytest.raises(OnnxcarError, match="strictly between 0 and 1"):
        SensitivityConfig(steps=steps)
