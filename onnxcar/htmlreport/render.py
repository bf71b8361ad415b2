"""``onnxcar report``: one self-contained HTML page from prune, score, sensitivity and comparison reports."""

import pathlib
import re
from collections import Counter
from dataclasses import dataclass

from onnxcar import __version__
from onnxcar.htmlreport import figures
from onnxcar.htmlreport.derived import ModelViews, model_views
from onnxcar.htmlreport.facts import Curve, Facts, Table
from onnxcar.htmlreport.kinds import load_report
from onnxcar.htmlreport.page import Code, Figure, Note, Section, render_page
from onnxcar.progress import Progress, silent
from onnxcar.runners.config import RunnerConfig
from onnxcar.tasks import Task

PAPER = ("Abbasi-Asl and Yu (2017), AlexNet on ImageNet: 17 of the first 20 filters CAR prunes in conv1, "
         "and 14 of 20 in conv2, are colour-selective.")


@dataclass(frozen=True)
class ReportConfig:
    """How much the page draws: filters counted in the colour table, patches per deeper filter."""

    first: int = 20
    patches: int = 4
    runner: RunnerConfig = RunnerConfig()


@dataclass(frozen=True)
class RenderedReport:
    """The page, its figures (for ``--png``), what it could not show, and the colour table's rows."""

    html: str
    figures: tuple[Figure, ...]
    problems: tuple[str, ...]
    colour_rows: tuple[dict, ...]
    sources: tuple[dict, ...]

    def to_dict(self) -> dict:
        return {"kind": "report", "version": 1, "reports": list(self.sources),
                "figures": [f.name for f in self.figures], "problems": list(self.problems),
                "colour": list(self.colour_rows)}


def render_report(paths: list[pathlib.Path], config: ReportConfig = ReportConfig(), progress: Progress = silent) -> RenderedReport:
    """Reads every report (refusing unreadable ones), computes what their models and data allow, and renders the page."""
    figures.pyplot()  # fail early, before any long work, when matplotlib is missing
    facts = [load_report(path) for path in paths]
    views = _views(facts, paths, config, progress)
    colour_rows = _colour_rows(views, config.first)
    sections = [s for s in (
        _curves(facts), _scans(facts), _costs(views), _tables(facts), _pictures(facts, views),
        _colour(views, colour_rows, config.first), _settings(facts),
    ) if s is not None]
    problems = tuple(note for f in facts for note in f.notes) + tuple(note for v in views for note in v.notes)
    if problems:  # each problem is told where it applies, under Filter pictures
        one = len(problems) == 1
        told = f"{len(problems)} note{'' if one else 's'} under Filter pictures say{'s' if one else ''} what and why."
        sections.insert(0, Section("What this page could not show", (Note(told, True),)))
    sources = tuple({"file": f.source, "kind": f.kind, "version": f.version} for f in facts)
    intro = (f"Made by onnxcar {__version__} from " + ", ".join(f"{s['file']} ({s['kind']} report)" for s in sources) + ".",)
    figs = _unique([b for s in sections for b in s.blocks if isinstance(b, Figure)])
    page = render_page("onnxcar report", intro, sections)
    return RenderedReport(page, figs, problems, colour_rows, sources)


def _views(facts: list[Facts], paths: list[pathlib.Path], config: ReportConfig, progress: Progress) -> list[ModelViews]:
    by_model: dict[str, tuple[pathlib.Path, list]] = {}
    for fact, path in zip(facts, paths):
        for pruning in fact.prunings:
            if pruning.model is not None and pruning.removed:
                by_model.setdefault(pruning.model, (path.parent, []))[1].append(pruning)
    return [model_views(model, folder, prunings, patches=config.patches, runner=config.runner, progress=progress)
            for model, (folder, prunings) in by_model.items()]


def _labelled(facts: list[Facts]) -> list[tuple[str, Curve]]:
    """Curves labelled by criterion, and by file too where several files share a criterion."""
    pairs = [(f.source, c) for f in facts for c in f.curves]
    clash = Counter((c.layer, c.metric, c.label) for _, c in pairs)
    return [(c.label if clash[c.layer, c.metric, c.label] == 1 else f"{c.label} ({source})", c) for source, c in pairs]


def _curves(facts: list[Facts]) -> Section | None:
    labelled = _labelled(facts)
    blocks = []
    for metric, x_label in dict.fromkeys((c.metric, c.x_label) for _, c in labelled):
        chosen = [(label, c) for label, c in labelled if (c.metric, c.x_label) == (metric, x_label)]
        if x_label == "filters removed":
            name = f"accuracy_{_slug(metric)}"
            caption = (f"{metric.capitalize()} against the number of filters removed from each layer, one line per "
                       "criterion (greedy, one layer at a time, no fine-tuning).")
        else:
            name = f"accuracy_{_slug(metric)}_{_slug(x_label)}"
            caption = f"{metric.capitalize()} against {x_label}, one line per method."
        blocks.append(Figure(name, figures.curves_figure(chosen, metric), caption))
    if not blocks:
        return None
    by_filters = all(c.x_label == "filters removed" for _, c in labelled)
    return Section("Accuracy against filters removed" if by_filters else "Accuracy curves", tuple(blocks))


def _scans(facts: list[Facts]) -> Section | None:
    blocks = [Figure(f"sensitivity_{_slug(f.source)}_{_slug(scan.criterion)}",
                     figures.scan_figure(scan, Task(f.settings.get("config", {}).get("task", "classification")).higher_is_better),
                     f"Sensitivity ({f.source}): each layer pruned alone by {scan.criterion}, from the unpruned model.")
              for f in facts for scan in f.scans]
    return Section("Sensitivity of each layer", tuple(blocks)) if blocks else None


def _costs(views: list[ModelViews]) -> Section | None:
    blocks = [Figure(f"costs_{_slug(pathlib.Path(v.model).stem)}", figures.costs_figure(v.costs),
                     f"Parameters and MACs per layer of {v.model}, before and after pruning. Removing a layer's "
                     "filters also shrinks the next layer, which reads them.")
              for v in views if v.costs]
    return Section("Parameters and MACs per layer", tuple(blocks)) if blocks else None


def _tables(facts: list[Facts]) -> Section | None:
    blocks = tuple(Table(f"{t.title} ({f.source})", t.header, t.rows) for f in facts for t in f.tables)
    return Section("Results", blocks) if blocks else None


def _pictures(facts: list[Facts], views: list[ModelViews]) -> Section | None:
    blocks: list = [Note(n, True) for f in facts for n in f.notes]
    for v in views:
        blocks += [Note(n, True) for n in v.notes]
        for pruning in v.prunings:
            for layer, order in pruning.removed.items():
                if layer in v.tiles:
                    cells, what = v.tiles[layer], "weights as RGB tiles (grey is zero)"
                elif layer in v.patches:
                    cells = figures.patch_cells(v.patches[layer])
                    what = "top-activating patches from the pruning set, mid-grey outside the image"
                else:
                    continue
                title = f"{layer}, {pruning.criterion}: {len(order)} of {len(cells)} filters removed"
                blocks.append(Figure(f"filters_{_slug(layer)}_{_slug(pruning.criterion)}",
                                     figures.filters_figure(cells, order, v.colour.get(layer), title),
                                     f"{layer} filters of {v.model}, {what}. Red frames: removed by "
                                     f"{pruning.criterion}, numbered in removal order; grey frames: kept, by index; "
                                     "a star marks a colour-selective filter."))
    return Section("Filter pictures", tuple(blocks)) if blocks else None


def _colour_rows(views: list[ModelViews], first: int) -> tuple[dict, ...]:
    rows = []
    for v in views:
        for pruning in v.prunings:
            for layer, order in pruning.removed.items():
                index = v.colour.get(layer)
                if index is None:
                    continue
                head = order[:first]
                rows.append({"model": v.model, "layer": layer, "criterion": pruning.criterion, "method": index.method,
                             "threshold": index.threshold, "first": len(head), "selective": index.count(head),
                             "layer_selective": int(index.selective.sum()), "layer_filters": len(index.values)})
    return tuple(rows)


def _colour(views: list[ModelViews], rows: tuple[dict, ...], first: int) -> Section | None:
    if not rows:
        return None
    table = Table(f"Colour-selective filters among the first {first} removed",
                  ("layer", "criterion", f"among the first {first} removed", "among all filters of the layer", "selective when"),
                  tuple((r["layer"], r["criterion"], f"{r['selective']} of {r['first']}",
                         f"{r['layer_selective']} of {r['layer_filters']} ({r['layer_selective'] / r['layer_filters']:.0%})",
                         f"{r['method']} > {r['threshold']}") for r in rows))
    indices = [i for v in views for i in v.colour.values()]
    return Section("Colour selectivity", (
        table,
        Note("Colour index: for a layer that reads the image, the share of a filter's weight energy outside the "
             "luminance direction (weights in pixel space); for deeper layers, the relative drop of the filter's mean "
             "activation on the pruning set when the images are turned grey (luminance = mean of R, G, B). A filter "
             "is colour-selective above the threshold."),
        Note(PAPER),
        Figure("colour_index", figures.colour_figure(indices), "Distribution of the colour index per layer."),
    ))


def _settings(facts: list[Facts]) -> Section:
    return Section("Run configuration and data", tuple(Code(f"{f.source} ({f.kind} report, version {f.version})",
                                                            f.settings) for f in facts))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "figure"


def _unique(found: list[Figure]) -> tuple[Figure, ...]:
    """The figures, renamed ``name_2``, ``name_3`` ... where names repeat."""
    seen: Counter = Counter()
    result = []
    for figure in found:
        seen[figure.name] += 1
        name = figure.name if seen[figure.name] == 1 else f"{figure.name}_{seen[figure.name]}"
        result.append(Figure(name, figure.png, figure.caption))
    return tuple(result)
