"""The page's figures, drawn with matplotlib (Agg) into PNG bytes; matplotlib is the optional extra ``report``."""

import io
import math

import numpy as np

from onnxcar.errors import OnnxcarError
from onnxcar.graph.cost import Cost
from onnxcar.htmlreport.facts import Curve, Scan
from onnxcar.interpret.colour import ColourIndex
from onnxcar.interpret.patches import TopPatches

PRUNED, KEPT = (0.85, 0.1, 0.1), (0.82, 0.82, 0.82)


def pyplot():
    """matplotlib's pyplot on the Agg backend, or a one-line error naming the extra to install."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise OnnxcarError("the HTML report needs matplotlib: pip install 'onnxcar[report]'") from err
    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi, metadata={"Software": None})
    pyplot().close(fig)
    return buffer.getvalue()


def _grid(count: int, columns: int = 3, size=(4.6, 3.4)):
    rows = math.ceil(count / columns)
    columns = min(columns, count)
    fig, axes = pyplot().subplots(rows, columns, figsize=(size[0] * columns, size[1] * rows), dpi=90, squeeze=False)
    for ax in axes.ravel()[count:]:
        ax.set_visible(False)
    return fig, axes.ravel()


_LINES = ("-", "--", ":", "-.")
_COLOURS = {"car": "C0", "rar": "C0", "l1": "C1", "l2": "C2", "mean-act": "C3", "apoz": "C4", "random": "C5"}


def _style(label: str) -> dict:
    """The same colour for a criterion in every figure; CAR and RAR drawn bold."""
    criterion = label.split(" ")[0]
    style = {"linewidth": 2.4, "zorder": 3} if criterion in ("car", "rar") else {"linewidth": 1.4}
    return {**style, **({"color": _COLOURS[criterion]} if criterion in _COLOURS else {})}


def curves_figure(curves: list[tuple[str, Curve]], metric: str) -> bytes:
    """The paper's figure: ``metric`` against filters removed (or the curves' ``x_label``), one panel per
    layer, one line per criterion."""
    layers = list(dict.fromkeys(c.layer for _, c in curves))
    sources = list(dict.fromkeys(label.partition(" (")[2] for label, _ in curves))  # "" for unambiguous labels
    fig, axes = _grid(len(layers))
    for ax, layer in zip(axes, layers):
        for label, curve in ((l, c) for l, c in curves if c.layer == layer):
            x, y = zip(*sorted(curve.points))
            dashes = _LINES[sources.index(label.partition(" (")[2]) % len(_LINES)]  # one line style per report file
            ax.plot(x, 100 * np.asarray(y) if "accuracy" in metric else y, label=label, linestyle=dashes, **_style(label))
        ax.set_title(layer)
        ax.set_xlabel(curve.x_label)
        ax.set_ylabel(f"{metric} (%)" if "accuracy" in metric else metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def scan_figure(scan: Scan, accuracy: bool) -> bytes:
    """Sensitivity: the metric against the share of each layer's filters removed, one line per layer."""
    fig, (ax,) = _grid(1, size=(7.5, 4.2))
    scale = 100 if accuracy else 1
    for layer in scan.layers:
        if layer.points:
            x, y = zip((0.0, scan.original), *layer.points)  # every layer starts from the unpruned model
            ax.plot(100 * np.asarray(x), scale * np.asarray(y), marker="o", markersize=3,
                    label=f"{layer.layer} ({layer.filters})")
    ax.axhline(scale * scan.original, color="black", linestyle="--", linewidth=1, label="unpruned")
    ax.set_xlabel(f"filters removed by {scan.criterion} (% of the layer)")
    ax.set_ylabel("pruning-set accuracy (%)" if accuracy else "pruning-set MSE")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return _png(fig)


def costs_figure(costs: dict[str, dict[str, Cost]]) -> bytes:
    """Parameters and MACs of every weighted layer, before and after each pruning, as grouped bars."""
    layers = list(costs["before"])
    fig, axes = _grid(2, columns=2, size=(max(4.5, 0.9 * len(layers)), 3.8))
    width = 0.8 / len(costs)
    for ax, what in zip(axes, ("params", "macs")):
        for i, (label, by_layer) in enumerate(costs.items()):
            values = [getattr(by_layer[layer], what) for layer in layers]
            ax.bar(np.arange(len(layers)) + (i - (len(costs) - 1) / 2) * width, values, width, label=label)
        ax.set_xticks(np.arange(len(layers)), layers, rotation=45, ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel(("parameters" if what == "params" else "MACs per sample") + " (log scale)")
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def colour_figure(indices: list[ColourIndex]) -> bytes:
    """The distribution of each layer's colour index, with its threshold."""
    fig, axes = _grid(len(indices))
    for ax, index in zip(axes, indices):
        values = np.asarray(index.values, dtype=float)
        values = values[~np.isnan(values)]
        ax.hist(values, bins=20, color="0.55")
        ax.axvline(index.threshold, color=PRUNED, linestyle="--", label=f"threshold {index.threshold}")
        ax.set_title(f"{index.layer}: {int(index.selective.sum())} of {len(index.values)} colour-selective")
        ax.set_xlabel("colour index (" + ("weight energy off luminance" if index.method == "weights"
                                          else "activation drop on grey images") + ")")
        ax.set_ylabel("filters")
        ax.xaxis.set_major_locator(pyplot().MaxNLocator(6))
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def filters_figure(cells: np.ndarray, order: tuple[int, ...], colour: ColourIndex | None, title: str) -> bytes:
    """Filter pictures in removal order: pruned ones first, framed red and numbered, then the kept ones.

    ``cells`` is (filters, h, w, 3) in [0, 1]; a star marks a colour-selective filter.
    """
    filters = len(cells)
    sequence = list(order) + [i for i in range(filters) if i not in set(order)]
    columns = min(filters, 16 if cells.shape[1] <= 16 else 12)
    scale = max(1, 48 // cells.shape[1])
    h, w = cells.shape[1] * scale, cells.shape[2] * scale
    border, label = 3, 14
    rows = math.ceil(filters / columns)
    canvas = np.ones((rows * (h + 2 * border + label), columns * (w + 2 * border + 4), 3))
    plt = pyplot()
    fig = plt.figure(figsize=(canvas.shape[1] / 90, canvas.shape[0] / 90 + 0.35), dpi=90)
    ax = fig.add_axes([0, 0, 1, canvas.shape[0] / (canvas.shape[0] + 0.35 * 90)])
    texts = []
    selective = colour.selective if colour is not None else np.zeros(filters, dtype=bool)
    for slot, index in enumerate(sequence):
        top = (slot // columns) * (h + 2 * border + label) + label
        left = (slot % columns) * (w + 2 * border + 4) + 2
        pruned = slot < len(order)
        canvas[top : top + h + 2 * border, left : left + w + 2 * border] = PRUNED if pruned else KEPT
        picture = np.kron(cells[index], np.ones((scale, scale, 1)))
        canvas[top + border : top + border + h, left + border : left + border + w] = picture
        text = (f"{slot + 1}:" if pruned else "") + f"{index}" + ("*" if selective[index] else "")
        texts.append((left + border + w / 2, top - 2, text, PRUNED if pruned else (0.3, 0.3, 0.3)))
    ax.imshow(canvas, interpolation="nearest")
    for x, y, text, color in texts:
        ax.text(x, y, text, ha="center", va="bottom", fontsize=7, color=color)
    ax.axis("off")
    fig.suptitle(title, fontsize=10, y=0.995)
    return _png(fig)


def patch_cells(patches: TopPatches) -> np.ndarray:
    """Each filter's top patches tiled into one square cell, (filters, h, w, 3) in [0, 1]."""
    filters, k, ph, pw, channels = patches.patches.shape
    side = math.ceil(math.sqrt(k))
    cells = np.ones((filters, side * (ph + 1) - 1, side * (pw + 1) - 1, 3))
    for j in range(k):
        r, c = divmod(j, side)
        tile = patches.patches[:, j].astype(np.float64) / 255
        cells[:, r * (ph + 1) : r * (ph + 1) + ph, c * (pw + 1) : c * (pw + 1) + pw] = (
            tile if channels == 3 else np.repeat(tile, 3, axis=-1))
    return cells
