"""What the page computes from a report's model and pruning set: per-layer costs, colour indices, filter pictures.

A model or data file that is gone, or data that cannot be drawn, leaves a note instead; the
rest of the page still renders.
"""

import pathlib
from dataclasses import dataclass, field, replace

import numpy as np

from onnxcar.data import DataSpec, Dataset, load_pixels
from onnxcar.errors import OnnxcarError
from onnxcar.graph import analyze
from onnxcar.graph.analysis import Analysis
from onnxcar.graph.cost import Cost, layer_costs
from onnxcar.htmlreport.facts import Pruning
from onnxcar.interpret.colour import ColourIndex, colour_selectivity, input_std, producer_weights, reads_image
from onnxcar.interpret.patches import TopPatches, rgb_tiles, top_patches
from onnxcar.io import load_model
from onnxcar.progress import Progress, silent
from onnxcar.runners.config import RunnerConfig
from onnxcar.surgery.plan import Plan


@dataclass
class ModelViews:
    """Everything drawn from one model and pruning set, for the prunings that name them."""

    model: str
    prunings: list[Pruning]
    costs: dict[str, dict[str, Cost]] = field(default_factory=dict)  # "before" or a removal label -> layer -> cost
    colour: dict[str, ColourIndex] = field(default_factory=dict)
    tiles: dict[str, np.ndarray] = field(default_factory=dict)  # first layers: (filters, kh, kw, 3) in [0, 1]
    patches: dict[str, TopPatches] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def resolve(path: str | None, report_dir: pathlib.Path) -> pathlib.Path | None:
    """A path a report names: as given (relative to the working folder), else beside the report."""
    if path is None:
        return None
    for candidate in (pathlib.Path(path).expanduser(), report_dir / path):
        if candidate.exists():
            return candidate
    return None


def model_views(
    model: str, report_dir: pathlib.Path, prunings: list[Pruning], *, patches: int, runner: RunnerConfig,
    progress: Progress = silent,
) -> ModelViews:
    """Costs, colour indices and pictures of every layer the ``prunings`` of ``model`` removed filters from."""
    views = ModelViews(model, prunings)
    path = resolve(model, report_dir)
    if path is None:
        views.notes.append(f"the model {model} is gone: per-layer costs, filter pictures and colour selectivity "
                           "are not shown for it")
        return views
    try:
        analysis = analyze(load_model(path))
    except OnnxcarError as err:
        views.notes.append(f"the model {model} cannot be read ({err}): its costs and pictures are not shown")
        return views
    layers = tuple(dict.fromkeys(layer for p in prunings for layer in p.removed))
    try:
        views.costs = _costs(analysis, prunings)
        first = [name for name in layers if reads_image(analysis, analysis.group(name))]
    except OnnxcarError as err:  # the report names layers this model does not have
        views.notes.append(f"the report does not fit the model {model} ({err}): its costs and pictures are not shown")
        return views
    progress("report", 1, 3, "costs")
    pixels = _pixels(prunings, report_dir, views.notes)
    deeper = [name for name in layers if name not in first]
    for name in first:
        views.tiles[name] = rgb_tiles(producer_weights(analysis, analysis.group(name)), input_std(pixels))
    if pixels is None and deeper and not any(p.data for p in prunings):
        views.notes.append(f"no pruning set to draw from: {', '.join(deeper)} get no pictures or colour index")
    try:
        colour_layers = layers if pixels is not None else tuple(first)
        views.colour = {c.layer: c for c in colour_selectivity(analysis, colour_layers, pixels, runner)}
        progress("report", 2, 3, "colour")
        if pixels is not None and deeper:
            groups = [analysis.group(name) for name in deeper]
            views.patches = {p.layer: p for p in top_patches(analysis, groups, pixels, patches, runner)}
    except OnnxcarError as err:
        views.notes.append(f"colour selectivity and filter pictures of {model} are not shown: {err}")
    progress("report", 3, 3, "pictures")
    return views


def _removal_label(pruning: Pruning) -> str:
    """What a pruning removed, by count: prunings that remove as many filters cost the same."""
    return ", ".join(f"{len(channels)} of {layer}" for layer, channels in pruning.removed.items())


def _costs(analysis: Analysis, prunings: list[Pruning]) -> dict[str, dict[str, Cost]]:
    def by_layer(removed: frozenset[int]) -> dict[str, Cost]:
        return {analysis.layer_name(node): cost for node, cost in layer_costs(Plan(analysis, removed)).items()}

    costs = {"before": by_layer(frozenset())}
    for pruning in prunings:
        ids = frozenset(i for layer, channels in pruning.removed.items() for i in analysis.group(layer).channel_ids(channels))
        costs.setdefault(f"after removing {_removal_label(pruning)}", by_layer(ids))
    return costs


def _pixels(prunings: list[Pruning], report_dir: pathlib.Path, notes: list[str]) -> Dataset | None:
    spec = next((p.data for p in prunings if p.data), None)
    if spec is None:
        return None
    try:
        spec = DataSpec.from_dict(spec)
        path = resolve(spec.path, report_dir)
        if path is None:
            notes.append(f"the pruning set {spec.path} is gone: deeper layers get no pictures or colour index")
            return None
        return load_pixels(replace(spec, path=str(path)))
    except OnnxcarError as err:
        notes.append(f"the pruning set cannot be read ({err}): deeper layers get no pictures or colour index")
        return None
