"""Filter pictures: first-layer filters as RGB tiles, deeper filters as their top-activating image patches."""

from dataclasses import dataclass

import numpy as np

from onnxcar.data import Dataset
from onnxcar.data.transforms import normalize
from onnxcar.errors import DataError
from onnxcar.graph.analysis import Analysis, Group
from onnxcar.graph.ir import export_model
from onnxcar.interpret.receptive import Field, receptive_fields
from onnxcar.runners import make_runner
from onnxcar.runners.config import RunnerConfig
from onnxcar.surgery.apply import masked_graph
from onnxcar.surgery.plan import Plan

OUTSIDE = 128  # the pixel value drawn where a receptive field reaches past the image


def rgb_tiles(weights: np.ndarray, std: tuple[float, ...] = (1.0,)) -> np.ndarray:
    """First-layer weights (out, 3, kh, kw) as (out, kh, kw, 3) RGB tiles in [0, 1], grey at zero.

    Weights are taken in pixel space (divided by the preprocessing std of their input channel)
    and each filter is scaled by its own largest magnitude, as AlexNet's filters are usually shown.
    """
    w = np.asarray(weights, dtype=np.float64) / np.asarray(std, dtype=np.float64).reshape(1, -1, 1, 1)
    peak = np.abs(w).max(axis=(1, 2, 3), keepdims=True)
    tiles = 0.5 + 0.5 * np.divide(w, peak, out=np.zeros_like(w), where=peak > 0)
    return tiles.transpose(0, 2, 3, 1)


@dataclass(frozen=True)
class TopPatches:
    """For each filter of a layer, the ``k`` image patches that drive it most, strongest first.

    ``patches`` is (filters, k, h, w, C) uint8, mid-grey (``OUTSIDE``) where the receptive field
    reaches past the image; ``images`` and ``values`` give each patch's image index and the filter's peak response.
    """

    layer: str
    patches: np.ndarray
    images: np.ndarray
    values: np.ndarray


def top_patches(
    analysis: Analysis, groups: list[Group], pixels: Dataset, k: int = 4, runner: RunnerConfig = RunnerConfig()
) -> list[TopPatches]:
    """The top-``k`` patches of every filter of ``groups`` (their first producer's output), over ``pixels``."""
    pre = pixels.spec.preprocess
    if pre.passthrough or pixels.images.ndim != 4:
        raise DataError("filter pictures need image pixels (a preprocess other than none)")
    graph = masked_graph(Plan(analysis, frozenset()))
    image = graph.inputs[0].name if pre.input_name is None else pre.input_name
    fields = receptive_fields(graph, image)
    nodes = {n.name: n for n in graph.nodes}
    names = [nodes[g.producers[0]].outputs[0].name for g in groups]
    tensors = graph.tensors()
    graph.outputs = [tensors[name] for name in names]
    best = [None] * len(names)  # per output: (values, images, positions), each (channels, k)
    with make_runner(export_model(graph, analysis.model), runner) as session:
        for start in range(0, len(pixels), runner.batch_size):
            chunk = normalize(pixels.images[start : start + runner.batch_size], pre)
            for i, output in enumerate(session.run({image: chunk})):
                best[i] = _merge(best[i], output, start, k)
    result = []
    for group, name, (values, images, positions) in zip(groups, names, best):
        field = fields.get(name)
        cut = [_patch(pixels.images[n], field, p) for n, p in zip(images.ravel(), positions.reshape(images.size, -1))]
        patches = np.stack(cut).reshape(*images.shape, *cut[0].shape)
        result.append(TopPatches(analysis.layer_name(group.producers[0]), patches, images, values))
    return result


def _merge(best, output: np.ndarray, start: int, k: int):
    """Keeps each channel's ``k`` strongest images: peak value, image index and peak position."""
    spatial = output.shape[2:]
    flat = output.reshape(output.shape[0], output.shape[1], -1)
    where = flat.argmax(axis=2)  # (batch, channels)
    peak = np.take_along_axis(flat, where[..., None], axis=2)[..., 0].T  # (channels, batch)
    index = np.broadcast_to(np.arange(start, start + len(output)), peak.shape)
    position = np.stack(np.unravel_index(where.T, spatial), axis=-1) if spatial else np.zeros((*peak.shape, 0), int)
    if best is not None:
        peak, index = np.concatenate([best[0], peak], 1), np.concatenate([best[1], index], 1)
        position = np.concatenate([best[2], position], 1)
    order = np.argsort(-peak, axis=1, kind="stable")[:, :k]
    return (np.take_along_axis(peak, order, 1), np.take_along_axis(index, order, 1),
            np.take_along_axis(position, order[..., None], 1))


def _patch(picture: np.ndarray, field: Field | None, position: np.ndarray) -> np.ndarray:
    """The window of ``picture`` (HWC) a unit sees: the whole picture when the field covers it."""
    if field is None or len(position) == 0 or min(field.size) >= min(picture.shape[:2]):
        return picture
    (top, bottom), (left, right) = field.window(tuple(int(p) for p in position))
    out = np.full((bottom - top, right - left, picture.shape[-1]), OUTSIDE, dtype=picture.dtype)
    h, w = picture.shape[:2]
    t, b, l, r = max(top, 0), min(bottom, h), max(left, 0), min(right, w)
    if t < b and l < r:
        out[t - top : b - top, l - left : r - left] = picture[t:b, l:r]
    return out
