"""Data-driven criteria: CAR and RAR (Abbasi-Asl and Yu 2017), mean activation and APoZ (Hu et al. 2016)."""

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np

from onnxcar.graph.analysis import Analysis, Group
from onnxcar.graph.channels import EditKind
from onnxcar.importance.backends import Backend
from onnxcar.importance.evaluator import ProbeEvaluator
from onnxcar.importance.registry import CriterionInputs, register_criterion
from onnxcar.importance.search import Pool, least_across, least_loss, tie_growth
from onnxcar.graph.ir import export_model
from onnxcar.progress import Progress, silent
from onnxcar.runners.config import RunnerConfig
from onnxcar.runners import make_runner
from onnxcar.surgery.apply import masked_graph
from onnxcar.surgery.plan import Plan
from onnxcar.surgery.probe import build_probe
from onnxcar.tasks import Task


@dataclass(frozen=True)
class Batch:
    """Model inputs and targets (labels, or the task's agreement targets) of the pruning set, and the task
    bound to the model's outputs (see :func:`~onnxcar.importance.batch.make_batch`)."""

    inputs: dict[str, np.ndarray]
    targets: np.ndarray
    task: Task = field(default_factory=Task)  # built per instance: reading the task registry loads plugins


class DataScorer:
    """Scores groups on the pruning set through probes (see ``surgery.probe``).

    By default it keeps the probe of one group at a time, as pruning layer after layer needs;
    ``keep_groups`` keeps one per group open (global pruning). Either way a group's cached
    prefix activations outlive its probe while no channel they depend on is removed, so a
    probe rebuilt after a removal further down the network reuses them.
    ``progress`` hears how far exhaustive scoring (every channel of a group) has come; ``backend``
    runs the candidate shards (default: in this process).
    """

    def __init__(self, batch: Batch, task: Task, config: RunnerConfig = RunnerConfig(), *, linear: bool = True,
                 progress: Progress = silent, keep_groups: bool = False, backend: Backend | None = None):
        self.batch, self.task, self.config, self.linear, self.progress = batch, task, config, linear, progress
        self.keep_groups, self.backend = keep_groups, backend
        self._open: dict[int, tuple[tuple, bool, ProbeEvaluator]] = {}  # group id -> (key, rank_one, evaluator)
        self._prefixes: dict[int, tuple[tuple, dict[str, np.ndarray]]] = {}  # group id -> (prefix key, cut tensors)
        self._readers: tuple[int, dict[int, frozenset[str]]] | None = None  # nodes whose weights read each channel
        self._known: dict[tuple[int, frozenset[int]], float] = {}
        self.prefix_runs = 0  # how many times a prefix ran over the data (the rest were reused)

    def evaluator(
        self, analysis: Analysis, group: Group, removed: frozenset[int], *, rank_one: bool | None = None
    ) -> ProbeEvaluator:
        """The evaluator of ``group`` with the channels of ``removed`` outside it masked out.

        ``rank_one`` asks for the rank-1 suffix (True), which pays off when many candidates
        share each call, or for the masked one (False); None takes the open evaluator as it is,
        or opens a masked one. The scorer's ``linear=False`` rules the rank-1 suffix out.
        """
        outside = removed.difference(group.channels.tolist())
        key = (id(analysis), group.id, outside)
        entry = self._open.get(group.id)
        if entry is not None and entry[0] == key and rank_one in (None, entry[1]):
            return entry[2]
        if not self.keep_groups:
            self._release(keep=group.id)
        if entry is not None:
            entry[2].close()
        rank_one = bool(rank_one)
        probe = build_probe(Plan(analysis, removed), group, linear=self.linear and rank_one)
        prefix_key = self._prefix_key(analysis, probe, outside)
        kept = self._prefixes.get(group.id)
        cache = kept[1] if kept is not None and kept[0] == prefix_key else None
        self.prefix_runs += cache is None and bool(probe.cut)
        evaluator = ProbeEvaluator(probe, self.batch.inputs, self.batch.targets, self.task, self.config, cache=cache,
                                   backend=self.backend)
        self._prefixes[group.id] = (prefix_key, {name: evaluator.cache[name] for name in probe.cut})
        self._open[group.id] = (key, rank_one, evaluator)
        return evaluator

    def _prefix_key(self, analysis: Analysis, probe, outside: frozenset[int]) -> tuple:
        """What the probe's prefix activations depend on: its cut, and the removed channels whose
        masking zeroes a weight of a prefix node (masking edits only the layers that read a channel)."""
        if self._readers is None or self._readers[0] != id(analysis):
            readers: dict[int, set[str]] = {}
            for edit in analysis.tracer.edits:
                if edit.kind is EditKind.READ:
                    for root in np.unique(analysis.roots(edit.atoms)).tolist():
                        readers.setdefault(root, set()).add(edit.node)
            self._readers = (id(analysis), {root: frozenset(nodes) for root, nodes in readers.items()})
        prefix = {node.name for node in probe.prefix.graph.node} if probe.prefix is not None else set()
        readers = self._readers[1]
        upstream = frozenset(c for c in outside if not prefix.isdisjoint(readers.get(c, ())))
        return (id(analysis), probe.cut, upstream)

    def mask_row(self, group: Group, removed: frozenset[int]) -> np.ndarray:
        return np.array([int(c) not in removed for c in group.channels], dtype=np.float32)

    def metric(self, analysis: Analysis, group: Group, removed: frozenset[int]) -> float:
        """Accuracy (or MSE) of the model with ``removed`` gone."""
        if (id(analysis), removed) not in self._known:
            value = self.evaluator(analysis, group, removed).metric(self.mask_row(group, removed), [-1])[0]
            self.remember(analysis, removed, float(value))
        return self._known[id(analysis), removed]

    def remember(self, analysis: Analysis, removed: frozenset[int], metric: float) -> None:
        """Records the metric of the model with ``removed`` gone, measured elsewhere."""
        self._known[id(analysis), removed] = metric

    def without_each(
        self, analysis: Analysis, group: Group, removed: frozenset[int], tie_break: str = "index"
    ) -> tuple[float, np.ndarray, np.ndarray | None]:
        """The current metric, the metric after also removing each channel (NaN where already gone),
        and, with a tie-break key (classification), how much removing each channel grows the key."""
        current = self.mask_row(group, removed)
        alive = np.flatnonzero(current)
        evaluator = self.evaluator(analysis, group, removed, rank_one=True)
        rows = [-1, *alive]
        after, growth = np.full(group.size, np.nan), None
        if tie_break == "index" or not self.task.tie_key:
            metrics = evaluator.metric(current, rows, self.progress)
        else:
            outcomes, values = evaluator.outcomes_and_ties(current, rows, tie_break=tie_break, progress=self.progress)
            metrics = outcomes.mean(axis=1)
            growth = np.full(group.size, np.nan)
            growth[alive] = tie_growth(values[1:], float(values[0].mean()))
        after[alive] = metrics[1:]
        return float(metrics[0]), after, growth

    def _release(self, keep: int | None = None) -> None:
        """Closes every group's evaluator, and drops its prefix activations, but ``keep``'s."""
        for group_id in [g for g in self._open if g != keep]:
            self._open.pop(group_id)[2].close()
        self._prefixes = {g: v for g, v in self._prefixes.items() if g == keep}

    def close(self) -> None:
        self._release()


@dataclass
class ReductionIndex:
    """CAR (accuracy drop) or RAR (error growth) of removing each channel on the current network.

    For classification with ``tie_break`` ``loss`` or ``margin``, the scores have a second
    column, the growth of that key (see ``Task.tie_values``), which orders channels of equal CAR.
    ``count_ties`` settles ties with ``index`` too (at the cost of ``loss``), so that the greedy
    loop knows which picks were ties; the key column is then 0.
    """

    scorer: DataScorer
    tie_break: str = "index"
    count_ties: bool = False
    depends_on_removals = True

    @property
    def name(self) -> str:
        return "car" if self.scorer.task.higher_is_better else "rar"

    def __call__(self, analysis: Analysis, group: Group, removed: frozenset[int]) -> np.ndarray:
        current, after, ties = self.scorer.without_each(analysis, group, removed, self.tie_break)
        if ties is None and self.count_ties and self.scorer.task.tie_key:
            ties = np.where(np.isnan(after), np.nan, 0.0)
        return self._scores(current, after, ties)

    def lowest(self, analysis: Analysis, group: Group, removed: frozenset[int], count: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores that are exact for the ``count`` lowest (ties to the tie-break key, then the lowest
        index) and lower bounds elsewhere, flagged by the second array; see ``importance.search``."""
        current = self.scorer.mask_row(group, removed)
        alive = np.flatnonzero(current)
        evaluator = self.scorer.evaluator(analysis, group, removed, rank_one=False)  # few candidates share a call
        ranking = least_loss(evaluator, current, alive, count, self.tie_break, settle=self.count_ties or None)
        after, exact = np.full(group.size, np.nan), np.ones(group.size, dtype=bool)
        after[alive], exact[alive] = ranking.metrics, ranking.exact
        ties = None
        if ranking.ties is not None:
            ties = np.full(group.size, np.nan)
            ties[alive] = ranking.ties
        for index in alive[ranking.exact]:
            self.scorer.remember(analysis, removed | group.channel_ids([index]), float(after[index]))
        return self._scores(ranking.current, after, ties), exact

    def lowest_across(
        self, analysis: Analysis, candidates: list[tuple[Group, np.ndarray]], removed: frozenset[int], count: int,
        per: list[np.ndarray] | None, take: Callable[[int], bool],
    ) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
        """:meth:`lowest` over channels of several groups (numbered group after group), least in
        score per unit ``per`` (the cost each removal saves; None: score alone); ``take`` as in
        ``importance.search.least_across``. Returns the scores, which are exact, and the picks."""
        if not self.scorer.keep_groups:
            raise ValueError("scoring across groups needs a DataScorer with keep_groups=True")
        pools = [Pool(self.scorer.evaluator(analysis, group, removed, rank_one=False), self.scorer.mask_row(group, removed),
                      indices, None if per is None else saved) for (group, indices), saved in zip(candidates, per or repeat(None))]
        ranking = least_across(pools, count, self.tie_break, settle=self.count_ties or None, take=take)
        flat = [(group, int(index)) for group, indices in candidates for index in indices]
        for k in np.flatnonzero(ranking.exact).tolist():
            group, index = flat[k]
            self.scorer.remember(analysis, removed | group.channel_ids([index]), float(ranking.metrics[k]))
        return self._scores(ranking.current, ranking.metrics, ranking.ties), ranking.exact, ranking.picks

    def _scores(self, current: float, after: np.ndarray, ties: np.ndarray | None) -> np.ndarray:
        scores = current - after if self.scorer.task.higher_is_better else after - current
        scores = np.where(np.isnan(scores), np.inf, scores)
        return scores if ties is None else np.column_stack([scores, np.where(np.isnan(ties), np.inf, ties)])


@dataclass
class ActivationStatistic:
    """Mean activation, or APoZ (scored as minus the share of zeros), of what the group's consumers read.

    Both are measured once per group, on the network with earlier groups' removals applied.
    """

    scorer: DataScorer
    name: str  # "mean-act" or "apoz"
    depends_on_removals = False  # measured once per group

    def __post_init__(self) -> None:
        self._cache: dict = {}

    def __call__(self, analysis: Analysis, group: Group, removed: frozenset[int]) -> np.ndarray:
        key = (id(analysis), group.id, removed.difference(group.channels.tolist()))
        if key not in self._cache:
            self._cache = {key: self._measure(analysis, group, removed)}
        return self._cache[key]

    def _measure(self, analysis: Analysis, group: Group, removed: frozenset[int]) -> np.ndarray:
        sources = self.scorer.evaluator(analysis, group, removed).probe.sources
        if not sources:  # nothing reads these channels: they carry no activation worth keeping
            return np.zeros(group.size)
        graph = masked_graph(Plan(analysis, removed.difference(group.channels.tolist())))
        tensors = graph.tensors()
        graph.outputs = [tensors[name] for name, _, _ in sources]
        config = self.scorer.config
        total = np.zeros(group.size + 1)
        count = np.zeros(group.size + 1)
        inputs = self.scorer.batch.inputs
        samples = len(self.scorer.batch.targets)
        with make_runner(export_model(graph, analysis.model), config) as runner:
            for start in range(0, samples, config.batch_size):
                outputs = runner.run({k: v[start : start + config.batch_size] for k, v in inputs.items()})
                for (_, axis, index), value in zip(sources, outputs):
                    values = np.moveaxis(value, axis, -1).reshape(-1, len(index))
                    statistic = values.sum(axis=0) if self.name == "mean-act" else -(values == 0).sum(axis=0)
                    np.add.at(total, index, statistic)
                    np.add.at(count, index, len(values))
        return total[:-1] / np.maximum(count[:-1], 1)


@register_criterion("car", needs_data=True, task="classification",
                    help="classification accuracy reduction, greedy with rescoring (Abbasi-Asl and Yu 2017)")
def _car(inputs: CriterionInputs) -> ReductionIndex:
    return ReductionIndex(inputs.scorer, inputs.tie_break)


@register_criterion("rar", needs_data=True, task="regression", help="regression error growth, greedy with rescoring")
def _rar(inputs: CriterionInputs) -> ReductionIndex:
    return ReductionIndex(inputs.scorer)


@register_criterion("mean-act", needs_data=True, help="mean activation of what the next layers read")
def _mean_activation(inputs: CriterionInputs) -> ActivationStatistic:
    return ActivationStatistic(inputs.scorer, "mean-act")


@register_criterion("apoz", needs_data=True, help="minus the average percentage of zeros there (Hu et al. 2016)")
def _apoz(inputs: CriterionInputs) -> ActivationStatistic:
    return ActivationStatistic(inputs.scorer, "apoz")
