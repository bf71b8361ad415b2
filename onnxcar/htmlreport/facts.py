"""What a report contributes to the page, whatever its kind: curves, scans, prunings, tables and settings."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Curve:
    """A metric against filters removed from one layer, by one criterion (the paper's figure), or
    against another ``x_label`` (the peers benchmark: share of the MACs kept, one panel per stage)."""

    layer: str
    label: str
    points: tuple[tuple[float, float], ...]
    metric: str  # what the y axis measures, e.g. "pruning-set accuracy"
    x_label: str = "filters removed"


@dataclass(frozen=True)
class LayerScan:
    """One layer's sensitivity: the metric after removing each share of its filters."""

    layer: str
    filters: int
    points: tuple[tuple[float, float], ...]  # (fraction removed, metric)


@dataclass(frozen=True)
class Scan:
    """A sensitivity report: every scanned layer, by one criterion."""

    criterion: str
    original: float
    layers: tuple[LayerScan, ...]


@dataclass(frozen=True)
class Pruning:
    """Filters removed from a model by one criterion, in removal order, per layer.

    ``model`` and ``data`` are the paths and data spec the report names; filter pictures, colour
    indices and per-layer costs are computed from them.
    """

    criterion: str
    model: str | None
    data: dict | None
    removed: dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class Table:
    """A table a report kind shows as it is (header and rows of text)."""

    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Facts:
    """Everything one report file holds that the page can show."""

    source: str  # the report's file name
    kind: str
    version: int
    curves: tuple[Curve, ...] = ()
    scans: tuple[Scan, ...] = ()
    prunings: tuple[Pruning, ...] = ()
    tables: tuple[Table, ...] = ()
    settings: dict = field(default_factory=dict)  # the run's configuration and data spec, shown as they are
    notes: tuple[str, ...] = ()  # what the report itself does not let the page show
