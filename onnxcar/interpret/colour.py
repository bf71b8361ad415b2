"""Colour selectivity of filters: which filters respond to colour rather than to luminance.

Abbasi-Asl and Yu (2017) find that most of the filters CAR prunes first in AlexNet's first two
layers are colour-selective (17 and 14 of the first 20). Their exact test is not restated, so
onnxcar fixes one (docs METHOD.md, "Interpretability"); luminance is the per-pixel mean of the
R, G and B values, in both indices:

- ``weights``, for a layer that reads the RGB image: the share of the filter's weight energy
  outside the luminance direction, i.e. ``|W - mean_c W|^2 / |W|^2`` with the weights taken in
  pixel space (each input channel's weights divided by its preprocessing std). 0 for a pure
  luminance filter, 1 for a filter blind to luminance.
- ``greyscale``, for deeper layers: the relative drop of the filter's mean activation (what
  its consumers read, as the mean-activation criterion measures it) when the pruning-set
  images are converted to grey: ``1 - mean_grey / mean_colour``.

A filter is colour-selective when its index is above ``THRESHOLDS[method]`` (0.5 for both:
most of its weight energy, or most of its response, is colour).
"""

from dataclasses import dataclass, replace

import numpy as np

from onnxcar.data import Dataset
from onnxcar.data.transforms import normalize
from onnxcar.errors import DataError
from onnxcar.graph.analysis import Analysis, Group
from onnxcar.importance import DataScorer
from onnxcar.importance.batch import make_batch
from onnxcar.importance.data import ActivationStatistic
from onnxcar.tasks import Task
from onnxcar.runners.config import RunnerConfig

THRESHOLDS = {"weights": 0.5, "greyscale": 0.5}


@dataclass(frozen=True)
class ColourIndex:
    """One colour index per filter of a layer, and the threshold above which a filter is colour-selective."""

    layer: str
    method: str  # "weights" or "greyscale"
    values: tuple[float, ...]

    @property
    def threshold(self) -> float:
        return THRESHOLDS[self.method]

    @property
    def selective(self) -> np.ndarray:
        return np.asarray(self.values) > self.threshold  # NaN (a filter that never fires) is not selective

    def count(self, channels) -> int:
        """How many of ``channels`` (filter indices) are colour-selective."""
        return int(self.selective[list(channels)].sum())


def reads_image(analysis: Analysis, group: Group) -> bool:
    """True when the group's first producer is a Conv applied to a 3-channel graph input."""
    node = _producer(analysis, group)
    inputs = {t.name for t in analysis.graph.inputs}
    weight = node.inputs[1] if len(node.inputs) > 1 else None
    return node.op == "Conv" and node.inputs[0].name in inputs and getattr(weight, "shape", (0, 0))[1] == 3


def weight_colour_index(weights: np.ndarray, std: tuple[float, ...] = (1.0,)) -> np.ndarray:
    """Each filter's share of weight energy outside the luminance direction; weights are (out, 3, kh, kw)."""
    w = np.asarray(weights, dtype=np.float64) / np.asarray(std, dtype=np.float64).reshape(1, -1, 1, 1)
    total = (w * w).sum(axis=(1, 2, 3))
    colour = ((w - w.mean(axis=1, keepdims=True)) ** 2).sum(axis=(1, 2, 3))
    return np.divide(colour, total, out=np.zeros_like(total), where=total > 0)


def greyscale(pixels: np.ndarray) -> np.ndarray:
    """NHWC RGB pixels with every channel set to the per-pixel mean (luminance kept, colour gone)."""
    return np.repeat(pixels.astype(np.float32).mean(axis=-1, keepdims=True), pixels.shape[-1], axis=-1)


def colour_selectivity(
    analysis: Analysis, layers: tuple[str, ...], pixels: Dataset | None, runner: RunnerConfig = RunnerConfig()
) -> tuple[ColourIndex, ...]:
    """The colour index of every filter of ``layers``, on the pruning set ``pixels`` (from ``load_pixels``).

    Layers that read the image need no data (``pixels`` may be None); deeper layers do.
    """
    groups = [analysis.group(name) for name in layers]
    deeper = [g for g in groups if not reads_image(analysis, g)]
    if deeper and pixels is None:
        raise DataError("the colour index of deeper layers needs the pruning set")
    drops = _greyscale_drops(analysis, deeper, pixels, runner) if deeper else {}
    result = []
    for group in groups:
        name = analysis.layer_name(group.producers[0])
        if group.id in drops:
            result.append(ColourIndex(name, "greyscale", tuple(drops[group.id].tolist())))
        else:
            values = weight_colour_index(producer_weights(analysis, group), input_std(pixels))
            result.append(ColourIndex(name, "weights", tuple(values.tolist())))
    return tuple(result)


def input_std(pixels: Dataset | None) -> tuple[float, ...]:
    """The per-channel std that preprocessing divides pixels by (1 when unknown)."""
    if pixels is None or pixels.spec.preprocess.passthrough:
        return (1.0,)
    return pixels.spec.preprocess.std


def producer_weights(analysis: Analysis, group: Group) -> np.ndarray:
    """The weights of the group's first producer."""
    return _producer(analysis, group).inputs[1].values


def _producer(analysis: Analysis, group: Group):
    return next(n for n in analysis.graph.nodes if n.name == group.producers[0])


def _greyscale_drops(analysis: Analysis, groups: list[Group], pixels: Dataset, runner: RunnerConfig) -> dict[int, np.ndarray]:
    """``1 - mean activation on grey images / on the images`` for each group's channels."""
    pre = pixels.spec.preprocess
    if pre.passthrough or pixels.images.ndim != 4 or pixels.images.shape[-1] != 3:
        raise DataError("the colour index of deeper layers needs RGB pixel data (a preprocess other than none)")
    means = []
    for images in (pixels.images, greyscale(pixels.images)):
        batch = make_batch(analysis.model, replace(pixels, images=normalize(images, pre)), Task(), runner)
        scorer = DataScorer(batch, batch.task, runner)
        statistic = ActivationStatistic(scorer, "mean-act")
        means.append({g.id: statistic(analysis, g, frozenset()) for g in groups})
        scorer.close()
    colour, grey = means
    with np.errstate(divide="ignore", invalid="ignore"):
        return {g.id: np.where(colour[g.id] > 0, 1.0 - grey[g.id] / colour[g.id], np.nan) for g in groups}

