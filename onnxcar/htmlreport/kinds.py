"""The report kinds ``onnxcar report`` reads: a registry keyed by kind, each entry turning a JSON report into Facts.

A report names its ``kind`` and ``version``; prune reports written before they carried them
are recognised by their keys. A new kind plugs in with ``@register_kind("name", versions)``.
A report file may hold at most MAX_REPORT_BYTES, nested at most MAX_DEPTH deep.
"""

import dataclasses
import json
import pathlib
from collections.abc import Callable
from dataclasses import dataclass

from onnxcar.errors import DataError
from onnxcar.htmlreport.facts import Curve, Facts, LayerScan, Pruning, Scan, Table
from onnxcar.tasks import Task


@dataclass(frozen=True)
class ReportKind:
    """How to read one kind of report: the versions it knows, and a reader from JSON to Facts."""

    name: str
    versions: tuple[int, ...]
    read: Callable[[dict, str, int], Facts]
    legacy_keys: frozenset[str] = frozenset()  # keys that identify a report of this kind without "kind"


KINDS: dict[str, ReportKind] = {}
MAX_REPORT_BYTES = 64 * 2**20  # far above what any onnxcar command writes
MAX_DEPTH = 64  # objects and arrays inside one another; onnxcar's reports nest fewer than 10


def register_kind(name: str, versions: tuple[int, ...] = (1,), legacy_keys: tuple[str, ...] = ()):
    """Registers the decorated ``read(data, source, version) -> Facts`` for reports of kind ``name``."""

    def decorate(read: Callable[[dict, str, int], Facts]) -> Callable[[dict, str, int], Facts]:
        KINDS[name] = ReportKind(name, versions, read, frozenset(legacy_keys))
        return read

    return decorate


def load_report(path: pathlib.Path) -> Facts:
    """Reads one report file; refuses unreadable JSON and unknown kinds or versions in one line."""
    try:
        if not path.is_file():  # a FIFO or a device would block or never end
            raise DataError(f"report not found: {path}" if not path.exists() else f"{path} is not a regular file")
        if path.stat().st_size > MAX_REPORT_BYTES:
            raise DataError(f"{path} is larger than the {MAX_REPORT_BYTES // 2**20} MiB a report may be")
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read report {path}: {err}") from err
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON (truncated?): {err.msg} at line {err.lineno}") from err
    except RecursionError:
        raise DataError(f"{path} nests deeper than the {MAX_DEPTH} levels a report may have") from None
    if _depth(data) > MAX_DEPTH:
        raise DataError(f"{path} nests deeper than the {MAX_DEPTH} levels a report may have")
    if not isinstance(data, dict):
        raise DataError(f"{path} holds a JSON {type(data).__name__}, not a report object")
    kind = _identify(data, path)
    version = data.get("version", 1)
    if version not in kind.versions:
        known = ", ".join(map(str, kind.versions))
        raise DataError(f"{path} is a {kind.name} report of version {version!r}; this onnxcar reads version {known}")
    try:
        return kind.read(data, path.name, version)
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise DataError(f"{path} is a malformed {kind.name} report: {type(err).__name__}: {err}") from err


def _depth(data) -> int:
    """How deep objects and arrays nest in ``data`` (a scalar is 0), without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:
                stack.extend((child, depth + 1) for child in children)
    return deepest


def _identify(data: dict, path: pathlib.Path) -> ReportKind:
    name = data.get("kind")
    if name is None:
        name = next((k.name for k in KINDS.values() if k.legacy_keys and k.legacy_keys <= data.keys()), None)
    if name not in KINDS:
        what = "has no kind" if name is None else f"is of unknown kind {name!r}"
        raise DataError(f"{path} {what}; onnxcar report reads {', '.join(sorted(KINDS))} reports")
    return KINDS[name]


def _metric_name(task: str | None, where: str = "pruning-set") -> str:
    return f"{where} MSE" if task == "regression" else f"{where} {Task(task or 'classification').metric_name}"


def _points(curve) -> tuple[tuple[float, float], ...]:
    return tuple((float(x), float(y)) for x, y in curve)


@register_kind("prune", legacy_keys=("removed", "config", "before", "after"))
def read_prune(data: dict, source: str, version: int) -> Facts:
    """An ``onnxcar prune`` report: its curves, removal order, totals and settings."""
    criterion = data["config"]["criterion"]
    removed: dict[str, dict[int, None]] = {}  # by layer, the channels in removal order
    invalid = 0
    for removal in data["removed"]:
        channels, channel = removed.setdefault(removal["layer"], {}), int(removal["channel"])
        if channel < 0 or channel in channels:
            invalid += 1
        else:
            channels[channel] = None
    notes = (f"{source}: {invalid} removals name a negative channel or one removed before; only the first removal "
             "of each channel is shown",) if invalid else ()
    curves = tuple(Curve(layer, criterion, _points(points), _metric_name(data.get("task")))
                   for layer, points in (data.get("curves") or {}).items())
    before, after = data["before"], data["after"]
    totals = Table("Totals", ("", "before", "after", "kept"), tuple(
        (name, f"{before[name]:,}", f"{after[name]:,}", f"{after[name] / max(before[name], 1):.1%}")
        for name in ("params", "macs")))
    pruning = Pruning(criterion, data.get("model"), data.get("data"), {k: tuple(v) for k, v in removed.items()})
    settings = {k: data.get(k) for k in ("model", "output", "task", "config", "data", "timings_s", "verify_max_abs_error")}
    return Facts(source, "prune", version, curves=curves, prunings=(pruning,), tables=(totals,), settings=settings,
                 notes=notes)


@register_kind("sensitivity")
def read_sensitivity(data: dict, source: str, version: int) -> Facts:
    """An ``onnxcar sensitivity`` report: one curve per layer against the share of filters removed."""
    layers = tuple(LayerScan(layer["layer"], int(layer["filters"]),
                             tuple((float(p["fraction"]), float(p["metric"])) for p in layer["points"]))
                   for layer in data["layers"])
    config = data["config"]
    scan = Scan(config["criterion"], float(data["original_metric"]), layers)
    settings = {k: data.get(k) for k in ("model", "config", "data", "original_metric")}
    return Facts(source, "sensitivity", version, scans=(scan,), settings=settings)


@register_kind("score", legacy_keys=("layer", "filters"))
def read_score(data: dict, source: str, version: int) -> Facts:
    """An ``onnxcar score`` report: every filter's scores, lowest first by the first criterion."""
    filters = data["filters"]
    criteria = [k for k in filters[0] if k != "index"] if filters else []
    rows = tuple((str(f["index"]), *(f"{f[c]:.4g}" for c in criteria))
                 for f in sorted(filters, key=lambda f: (f[criteria[0]], f["index"])))
    table = Table(f"Filter scores of {data['layer']} (lowest {criteria[0] if criteria else ''} first)",
                  ("filter", *criteria), rows)
    settings = {k: data.get(k) for k in ("model", "layer", "data", "base_top1", "base_mse") if k in data}
    return Facts(source, "score", version, tables=(table,), settings=settings)


@register_kind("comparison", legacy_keys=("runs", "original_test_top1"))
def read_comparison(data: dict, source: str, version: int) -> Facts:
    """A criteria comparison (``benchmarks/compare_criteria.py``): one curve per layer and criterion."""
    runs = data["runs"]
    curves = [Curve(r["layer"], r["criterion"], _points(r["curve"]), _metric_name("classification")) for r in runs]
    curves += [Curve(r["layer"], r["criterion"], _points(r["test_curve"]), _metric_name("classification", "test"))
               for r in runs if r.get("test_curve")]
    prunings = tuple(Pruning(r["criterion"], data.get("model"), data.get("data"), {r["layer"]: tuple(r["channels"])})
                     for r in runs if "channels" in r)  # each run pruned its layer alone
    layers = list(dict.fromkeys(r["layer"] for r in runs))
    top1 = {(r["layer"], r["criterion"]): r for r in runs}
    rows = tuple((c, *(f"{top1[l, c]['test_top1']:.2%} ({top1[l, c]['removed']} removed)" if (l, c) in top1 else "-"
                       for l in layers)) for c in dict.fromkeys(r["criterion"] for r in runs))
    table = Table(f"Test top-1 after pruning (unpruned {data['original_test_top1']:.2%})", ("criterion", *layers), rows)
    settings = {k: v for k, v in data.items() if k != "runs"}
    return Facts(source, "comparison", version, curves=tuple(curves), prunings=prunings, tables=(table,),
                 settings=settings)


@register_kind("compress")
def read_compress(data: dict, source: str, version: int) -> Facts:
    """An ``onnxcar compress`` report: the size table against the original float32 layers, and
    top-1 after each stage."""
    sizes = data["sizes"]
    rows = [(r["layer"], f"{r['kept']:,} ({r['kept_share']:.1%})", str(r["codebook"]),
             f"{r['index_bits']} / {r['coded_index_bits']:.2f}", f"{r['position_bits']} / {r['coded_position_bits']:.2f}",
             f"{r['compressed_bytes']:,}", f"{r['original_bytes']:,}", f"{r['ratio']:.1f}x")
            for r in sizes["layers"]]
    rows.append(("rest of the model (deflated) and framing", "", "", "", "",
                 f"{sizes['rest_bytes'] + sizes['framing_bytes']:,}", "", ""))
    rows += [(t["name"], "", "", "", "", f"{t['compressed_bytes']:,}", f"{t['original_bytes']:,}", f"{t['ratio']:.1f}x")
             for t in sizes["totals"]]
    table = Table("Compressed sizes against the original float32 layers",
                  ("layer", "weights kept", "codebook", "index bits (fixed / Huffman)",
                   "position bits (fixed / Huffman)", "bytes", "original bytes", "ratio"), tuple(rows))
    accuracy = Table("Top-1 after each stage", ("stage", "validation", "test"), tuple(
        (a["stage"], f"{a['val']:.2%}", f"{a['test']:.2%}" if "test" in a else "-") for a in data["accuracy"]))
    settings = {k: data.get(k) for k in ("model", "original", "output", "container", "config", "data", "timings_s")}
    return Facts(source, "compress", version, tables=(table, accuracy), settings=settings)


@register_kind("pipeline")
def read_pipeline(data: dict, source: str, version: int) -> Facts:
    """An ``onnxcar run`` report: each stage, the gates, and what its prune stages removed.

    A prune stage's input model is the recipe's model when it is the first stage; later prune
    stages read a model the report does not keep, so they get no pictures.
    """
    stages, notes, nested = data["stages"], [], []
    for index, stage in enumerate(stages):
        if stage["kind"] == "compress" and stage.get("report"):
            nested.append(read_compress(stage["report"], source, 1))
        if stage["kind"] != "prune" or not stage.get("report"):
            continue
        facts = read_prune(stage["report"], source, 1)
        notes += facts.notes
        model = data.get("model") if index == 0 else None
        if model is None:
            notes.append(f"stage {index} (prune) read the model an earlier stage made, which the report does not keep: "
                         "its filters are not drawn")
        nested.append(dataclasses.replace(facts, prunings=tuple(dataclasses.replace(p, model=model)
                                                                 for p in facts.prunings)))
    table = Table("Stages", ("stage", "kind", "cached", "seconds", "metrics"), tuple(
        (str(i), s["kind"], "yes" if s.get("cached") else "no", f"{s.get('seconds', 0):.1f}",
         ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in (s.get("metrics") or {}).items()))
        for i, s in enumerate(stages)))
    gates = Table("Gates", ("gate", "passed"), tuple((g.get("message", g.get("name", "")), "yes" if g.get("passed") else "NO")
                                                     for g in data.get("gates", [])))
    settings = {k: data.get(k) for k in ("recipe", "model", "output", "passed", "metrics", "seconds")}
    return Facts(source, "pipeline", version, curves=tuple(c for f in nested for c in f.curves),
                 prunings=tuple(p for f in nested for p in f.prunings),
                 tables=(table, *((gates,) if gates.rows else ()), *(t for f in nested for t in f.tables)),
                 settings=settings, notes=tuple(notes))


@register_kind("peers")
def read_peers(data: dict, source: str, version: int) -> Facts:
    """A side-by-side benchmark (``benchmarks/peers.py``): test top-1 against the share of MACs kept, one
    line per method, one panel per stage (after pruning, after each repair, after fine-tuning)."""
    runs = [r for r in data["runs"] if "error" not in r]
    repairs = sorted({k for r in runs for k in r.get("repairs", {})})
    stages = [("after pruning", lambda r: r["test_top1"])]
    stages += [(f"after {k} repair", lambda r, k=k: r.get("repairs", {}).get(k, {}).get("test_top1")) for k in repairs]
    stages += [("after fine-tuning", lambda r: r.get("finetuned", {}).get("test_top1"))]
    methods = list(dict.fromkeys(r["method"] for r in runs))
    curves = []
    for stage, value in stages:
        for method in methods:
            points = tuple((float(r["macs_fraction"]), float(value(r))) for r in runs
                           if r["method"] == method and value(r) is not None)
            if points:
                curves.append(Curve(stage, method, points, "test accuracy", "share of the MACs kept"))
    budgets = data["budgets"]
    by_key = {(r["method"], r["budget"]): r for r in runs}

    def cell(method: str, budget: float) -> str:
        run = by_key.get((method, budget))
        if run is None:
            return "-"
        figures = [f"{v:.2%}" if v is not None else "-" for v in (value(run) for _, value in stages)]
        return " / ".join(figures) + f" ({run['macs_fraction']:.2f})"

    table = Table(f"Test top-1 ({' / '.join(s for s, _ in stages)}) and share of the MACs kept; "
                  f"unpruned {data['original']['test_top1']:.2%}",
                  ("method", *(f"{b:g} of the MACs" for b in budgets)),
                  tuple((m, *(cell(m, b) for b in budgets)) for m in methods))
    settings = {k: data.get(k) for k in ("model", "settings", "missing_peers", "original", "budgets")}
    return Facts(source, "peers", version, curves=tuple(curves), tables=(table,), settings=settings)
