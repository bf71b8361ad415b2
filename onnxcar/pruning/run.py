"""A whole pruning run: data, criterion, journal and resume, greedy loop, surgery, and its report."""

import logging
import pathlib
import time
from dataclasses import dataclass, field

import onnx

from onnxcar.data import DataSpec
from onnxcar.errors import OnnxcarError, VerificationError
from onnxcar.graph import Analysis, Group, analyze
from onnxcar.graph.cost import Cost, plan_cost
from onnxcar.graph.shapes import (
    InputShapes, data_shapes, require_input_shapes, resolve_input_shapes, sized_inputs, tensor_shapes,
)
from onnxcar.importance import make_importance
from onnxcar.importance.backends import BackendConfig
from onnxcar.importance.batch import open_scorer
from onnxcar.tasks import Task
from onnxcar.artifacts import save_with_report
from onnxcar.io import check_output_path
from onnxcar.progress import Progress, silent
from onnxcar.pruning.config import PruneConfig
from onnxcar.pruning.driver import Removal, prune_groups, remove_and_verify, select_groups
from onnxcar.pruning.journal import Journal, fingerprint
from onnxcar.pruning.global_greedy import prune_global
from onnxcar.pruning.targets import CostBudget, Count, MaxDrop
from onnxcar.repair import kept_channels
from onnxcar.repair.step import RepairConfig, repair_pruned
from onnxcar.runners.config import RunnerConfig
from onnxcar.surgery.plan import Plan
from onnxcar.surgery.verify import Tolerance, original_declaration_mismatches

log = logging.getLogger(__name__)
REPORT_VERSION = 1


@dataclass
class PruneResult:
    """A pruned model, what was removed and why, and what it cost; ``save`` writes it and its report."""

    model: onnx.ModelProto
    removals: list[Removal]
    before: Cost
    after: Cost
    original_metric: float | None
    settings: dict  # config (with the layers actually pruned), data, task, runner
    source: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    max_verify_error: float | None = None
    journal: Journal | None = None
    repair: dict | None = None  # the repair step's report entry; None when no repair ran

    @property
    def ties_decided(self) -> int | None:
        """How many picks the tie-break made among channels of equal score; None when not known
        (a criterion without a tie-break key, or ``tie_break="index"``)."""
        known = [r.tied for r in self.removals if r.tied is not None]
        return sum(known) if known else None

    @property
    def final_metric(self) -> float | None:
        """The pruning-set metric of the model returned: after its repair, where one ran and was kept."""
        if self.repair is not None and self.repair["metric_after"] is not None:
            return self.repair["metric_after" if self.repair["kept"] else "metric_before"]
        return self.removals[-1].metric if self.removals else self.original_metric

    @property
    def report(self) -> dict:
        """The JSON report (schema in the README)."""
        curves: dict[str, list] = {}
        metric = self.original_metric
        whole = self.settings["config"]["scope"] == "global"  # one curve: iterations mix layers
        for removal in self.removals if metric is not None else ():  # curves need data
            curve = curves.setdefault("global" if whole else removal.layer, [[0, metric]])
            curve.append([len(curve), removal.metric])
            metric = removal.metric
        return {
            "kind": "prune", "version": REPORT_VERSION, "model": self.source, **self.settings,
            "removed": [r.to_dict() for r in self.removals],
            "ties_decided": self.ties_decided,
            "original_metric": self.original_metric,
            "final_metric": self.final_metric,
            "curves": curves,
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "verify_max_abs_error": self.max_verify_error,
            "repair": self.repair,
        }

    def save(self, path: str | pathlib.Path, *, report: str | pathlib.Path | None = None,
             force: bool = False) -> tuple[pathlib.Path, pathlib.Path]:
        """Writes the model to ``path`` and the report beside it (``report``, default ``path`` with
        .json), then deletes the run's journal; returns both paths."""
        paths = save_with_report(self.model, self.report, path, report, force=force, source=self.source)
        if self.journal is not None:
            self.journal.close(remove=True)
        return paths


def prune_model(
    model: onnx.ModelProto,
    config: PruneConfig,
    *,
    data: DataSpec | None = None,
    input_shapes: InputShapes | None = None,
    task: str = "classification",
    runner: RunnerConfig = RunnerConfig(),
    backend: BackendConfig = BackendConfig(),
    journal: pathlib.Path | None = None,
    resume: bool = False,
    force: bool = False,
    source: str | None = None,
    repair: RepairConfig | None = None,
    progress: Progress = silent,
) -> PruneResult:
    """Runs ``config`` on ``model``, then ``repair`` (None: none); see :func:`onnxcar.prune` for the arguments."""
    repair = repair or RepairConfig()  # built here, not at import: reading a registry loads the plugins
    start = time.perf_counter()
    repair.check(data)
    task = Task(task)
    shapes = resolve_input_shapes(model, input_shapes)
    if config.verify and data is None:
        require_input_shapes(model, shapes, "checking the pruned model")
    analysis = analyze(model, sized_inputs(model, input_shapes))
    analysed = time.perf_counter()
    groups = select_groups(analysis, config.layers)
    counts = _removal_counts(analysis, groups, config, has_data=data is not None)
    with open_scorer(model, data, task, runner, backend, keep_groups=config.scope == "global") as scorer:
        if scorer is not None:
            shapes = resolve_input_shapes(model, input_shapes, data_shapes(scorer.batch.inputs))
        sizes = tensor_shapes(model, shapes)  # refuses, before the long work, a size the model cannot take
        if config.verify:
            for message in original_declaration_mismatches(model, shapes):
                log.warning("%s (onnxruntime runs it anyway; the check compares against what it computes)", message)
        importance = make_importance(config.criterion, scorer, config.seed, config.tie_break)
        layers = [analysis.layer_name(g.producers[0]) for g in groups]
        settings = {
            "config": {**config.to_dict(), "layers": layers},
            "data": data.to_dict() if data is not None else None,
            "task": task.kind,
            "runner": runner.to_dict(),
            "input_shapes": {name: list(shape) for name, shape in shapes.items()},
        }
        book = None
        if journal is not None:
            arrays = (*scorer.batch.inputs.values(), scorer.batch.targets) if scorer is not None else ()
            book = _open_journal(journal, fingerprint(model.SerializeToString(), settings, arrays), resume=resume,
                                 force=force, source=source)
        try:
            done = _replayed(book.iterations, analysis, groups, counts, config.scope) if book is not None else []
            total = None if isinstance(config.target, CostBudget) else sum(counts.values())
            finished = sum(len(batch) for batch in done)
            progress("pruning", finished, total)

            def on_iteration(batch: list[Removal]) -> None:
                nonlocal finished
                if book is not None:
                    book.record([r.to_dict() for r in batch])
                finished += len(batch)
                last = batch[-1]
                status = last.layer if last.metric is None else f"{last.layer} metric {last.metric:.4f}"
                progress("pruning", finished, total, status)

            if config.scope == "global":
                removals, original = prune_global(analysis, groups, config, importance, scorer=scorer, done=done,
                                                  on_iteration=on_iteration, shapes=sizes)
            else:
                removals, original = prune_groups(analysis, groups, config, importance, scorer=scorer, done=done,
                                                  on_iteration=on_iteration)
            progress("pruning", finished, finished)
            evaluation = scorer.batch if scorer is not None else None
            samples = evaluation.inputs if evaluation is not None else None
            if scorer is not None:
                scorer.close()
            scoring = time.perf_counter() - analysed
            by_id = {g.id: g for g in groups}
            removed = {int(by_id[r.group].channels[r.channel]) for r in removals}
            surgery = remove_and_verify(analysis, removed, config.verify, input_shapes=shapes, samples=samples,
                                        tolerance=_tolerance(config))
        except BaseException as err:
            if book is not None:  # a failed check would fail again on resume: nothing worth keeping
                book.close(remove=isinstance(err, VerificationError))
            raise
    before, after = plan_cost(Plan(analysis, frozenset()), sizes), plan_cost(Plan(analysis, frozenset(removed)), sizes)
    timings = {"analysis": analysed - start, "scoring": scoring, "surgery": surgery.surgery_s,
               "verify": surgery.verify_s}
    pruned, entry = surgery.model, None
    if repair.active:  # after the remove = mask check, which stays about surgery alone
        settings["repair"] = repair.to_dict()
        pruned, entry = repair_pruned(repair, model, pruned, kept_channels(Plan(analysis, frozenset(removed))), data,
                                      evaluation, task, runner, seed=config.seed, progress=progress)
        timings["repair"] = entry["seconds"]
    return PruneResult(pruned, removals, before, after, original, settings, source, timings,
                       surgery.max_verify_error, book, entry)


def _tolerance(config: PruneConfig) -> Tolerance:
    value = config.tolerance
    return Tolerance() if value is None else Tolerance(rtol=value, atol=value, floor=value)


def _removal_counts(analysis: Analysis, groups: list[Group], config: PruneConfig, *, has_data: bool) -> dict[int, int]:
    """Channels to remove per group (global pruning: the most each may lose, which the progress
    total adds up to the target's count); refuses a target that removes nothing (in one error, no
    warnings before it) or a budget without the data to measure it, and warns where the target
    asks for more than a group can lose or removes nothing from some of the groups."""
    if isinstance(config.target, MaxDrop) and not has_data:
        raise OnnxcarError("a max-drop target needs data to measure accuracy", arguments=("max_drop", "data"))
    if config.scope == "global":
        return _global_counts(groups, config)
    counts = {g.id: config.target.removals(g.size) for g in groups}
    if isinstance(config.target, MaxDrop):
        return counts
    names = {g.id: f"{analysis.layer_name(g.producers[0])} ({g.size} filters)" for g in groups}
    if not any(counts.values()):
        raise OnnxcarError(f"the target removes no filter from any selected layer ({', '.join(names.values())}); "
                           "raise it", arguments=("ratio", "count"))
    for group in groups:
        if counts[group.id] == 0:
            log.warning("the target removes no filter from %s", names[group.id])
        elif isinstance(config.target, Count) and config.target.value > counts[group.id]:
            log.warning("%s: removing %d, since one must stay", names[group.id], counts[group.id])
    return counts


def _global_counts(groups: list[Group], config: PruneConfig) -> dict[int, int]:
    """Global pruning: what each group may lose at most, spread so that the counts add up to the
    target's number of filters (all that may go, under a budget of MACs or parameters)."""
    most = {g.id: g.size - 1 for g in groups}
    if isinstance(config.target, CostBudget):
        return most
    wanted = config.target.removals(sum(g.size for g in groups))
    if wanted == 0:
        raise OnnxcarError("the target removes no filter from the selected layers; raise it",
                           arguments=("ratio", "count"))
    counts = {}
    for group_id, limit in most.items():
        counts[group_id] = min(limit, wanted - sum(counts.values()))
    return counts


def _open_journal(path: pathlib.Path, run_id: str, *, resume: bool, force: bool, source: str | None) -> Journal:
    check_output_path(path, force=True, source=source)  # never a file the input model reads
    if path.exists() and not (resume or force):
        raise OnnxcarError(f"{path} exists from an earlier run: resume it, or start afresh",
                           arguments=("resume", "force"))
    return Journal(path, run_id, resume=resume)


def _replayed(
    iterations: list[list[dict]], analysis: Analysis, groups: list[Group], counts: dict[int, int], scope: str
) -> list[list[Removal]]:
    """The journal's iterations as removals, each entry checked against the groups this run prunes
    (in their order, unless the run is global)."""
    by_id = {g.id: g for g in groups}
    names = {g.id: analysis.layer_name(g.producers[0]) for g in groups}
    position = {g.id: i for i, g in enumerate(groups)}
    seen: dict[int, set[int]] = {g.id: set() for g in groups}
    done, last = [], 0
    for entries in iterations:
        batch = []
        for entry in entries:
            removal = _removal(entry)
            if removal is None or names.get(removal.group) != removal.layer:
                raise OnnxcarError("the journal holds an entry this run cannot replay; delete it to start afresh")
            group = by_id[removal.group]
            if not 0 <= removal.channel < group.size or removal.channel in seen[group.id]:
                raise OnnxcarError(f"the journal removes channel {removal.channel} of {removal.layer} twice or out of "
                                   f"range (it has {group.size}); delete it to start afresh")
            if scope == "layer" and position[group.id] < last:
                raise OnnxcarError("the journal prunes layers out of order; delete it to start afresh")
            seen[group.id].add(removal.channel)
            last = position[group.id]
            batch.append(removal)
        if not batch:
            raise OnnxcarError("the journal holds an empty iteration; delete it to start afresh")
        done.append(batch)
    over = [g for g in groups if len(seen[g.id]) > counts[g.id]] if scope == "layer" else (
        [g for g in groups if len(seen[g.id]) >= g.size] or sum(map(len, seen.values())) > sum(counts.values()))
    if over:
        raise OnnxcarError("the journal removes more channels than the target allows; delete it to start afresh")
    return done


def _removal(entry: dict) -> Removal | None:
    """The removal an entry records, or None when a field is missing or of the wrong type."""
    number = (int, float)
    checks = {"group": int, "layer": str, "channel": int, "score": number, "iteration": int}
    optional = {"metric": number, "tie": number, "tied": bool, "saved": int}
    if set(entry) != {*checks, *optional}:
        return None
    if any(isinstance(entry[k], bool) or not isinstance(entry[k], t) for k, t in checks.items()):
        return None
    for key, kind in optional.items():
        value = entry[key]
        if value is not None and (isinstance(value, bool) != (kind is bool) or not isinstance(value, kind)):
            return None
    number_or_none = lambda v: None if v is None else float(v)  # noqa: E731
    return Removal(entry["group"], entry["layer"], entry["channel"], float(entry["score"]),
                   number_or_none(entry["metric"]), entry["iteration"], number_or_none(entry["tie"]), entry["tied"],
                   entry["saved"])
