"""Intermediate tensors of a model on the repair data, computed segment by segment.

A repair asks for tensors stage after stage. Each request runs only the nodes between what
is already cached and what is asked for; the tensors of that segment that later nodes still
read are cached for every item while the cache stays under ``CACHE_BYTES`` (beyond it, later
segments recompute from an earlier point, so memory stays bounded and results do not change).
The nodes of a segment must not change after they ran (a repair edits only later nodes).
"""

from collections.abc import Iterator, Mapping

import numpy as np
import onnx
from onnx import helper

from onnxcar.runners import make_runner
from onnxcar.runners.config import RunnerConfig

CACHE_BYTES = 2 * 2**30


def segment(model: onnx.ModelProto, names: list[str], sources: set[str]) -> tuple[onnx.ModelProto, list[int]]:
    """The nodes of ``model`` that compute ``names`` from the tensors ``sources`` (and constants), as a
    model whose inputs are the sources it reads; and those nodes' indices in ``model``."""
    graph = model.graph
    needed = set(names)
    chosen = []
    for index in range(len(graph.node) - 1, -1, -1):
        node = graph.node[index]
        if needed.intersection(node.output) and not sources.issuperset(node.output):
            chosen.append(index)
            needed.update(name for name in node.input if name)
    types = _element_types(model)
    info = lambda name: helper.make_tensor_value_info(name, types.get(name, onnx.TensorProto.FLOAT), None)  # noqa: E731
    initializers = [t for t in graph.initializer if t.name in needed]
    stored = {t.name for t in initializers}
    inputs = [info(name) for name in sorted(needed & sources - stored)]
    part = helper.make_graph([graph.node[i] for i in chosen[::-1]], graph.name, inputs, [info(n) for n in names],
                             initializers)
    return helper.make_model(part, opset_imports=model.opset_import, ir_version=model.ir_version), chosen[::-1]


def _element_types(model: onnx.ModelProto) -> dict[str, int]:
    infos = (*model.graph.value_info, *model.graph.output, *model.graph.input)
    return {i.name: i.type.tensor_type.elem_type for i in infos if i.type.tensor_type.elem_type}


class Activations:
    """Tensors of one model (whose weights a repair edits as it goes) on every item of ``images``."""

    def __init__(self, images: Mapping[str, np.ndarray], runner: RunnerConfig):
        self.inputs = dict(images)
        self.count = len(next(iter(self.inputs.values())))
        self.runner = runner
        self.cache: dict[str, np.ndarray] = {}
        self.ran: set[int] = set()

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in self.cache.values())

    def batches(self, model: onnx.ModelProto, names: list[str]) -> Iterator[tuple[slice, dict[str, np.ndarray]]]:
        """(item range, {name: value}) of the tensors ``names`` of ``model``, batch by batch."""
        known = {**self.inputs, **self.cache}
        wanted = [name for name in names if name not in known]
        _, nodes = segment(model, wanted, set(known))
        later = {name for i, node in enumerate(model.graph.node) if i not in self.ran and i not in nodes
                 for name in node.input}
        produced = {name for i in nodes for name in model.graph.node[i].output}
        outputs = [*wanted, *sorted((produced & later) - set(wanted))]
        stored: dict[str, list[np.ndarray]] = {name: [] for name in outputs}
        caching = True
        with make_runner(segment(model, outputs, set(known))[0], self.runner) if outputs else _Nothing() as session:
            feeds = [i.name for i in session.inputs()]
            for start in range(0, self.count, self.runner.batch_size):
                items = slice(start, min(start + self.runner.batch_size, self.count))
                values = dict(zip(outputs, session.run({k: known[k][items] for k in feeds}, outputs)))
                if caching and start == 0:
                    per_item = sum(v.nbytes for v in values.values()) / (items.stop - items.start)
                    caching = self.nbytes + per_item * self.count <= CACHE_BYTES
                for name, value in values.items() if caching else ():
                    stored[name].append(value)
                yield items, {name: values[name] if name in values else known[name][items] for name in names}
        self.ran.update(nodes)
        if caching:
            self.cache.update((name, np.concatenate(parts)) for name, parts in stored.items())
        still_read = {name for i, node in enumerate(model.graph.node) if i not in self.ran for name in node.input}
        self.cache = {name: value for name, value in self.cache.items() if name in still_read}


class _Nothing:
    """A runner with nothing to run, for tensors that are all cached."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def inputs(self) -> list:
        return []

    def run(self, feeds: dict, outputs: list[str]) -> list:
        return []


def stages(model: onnx.ModelProto, outputs: list[str]) -> list[list[str]]:
    """The nodes that produce ``outputs``, as those outputs in stages: each after every one of them
    upstream of it, so that a stage's inputs depend only on earlier stages (graph order within one)."""
    producer = {out: n for n in model.graph.node for out in n.output}
    wanted = set(outputs)
    depth: dict[str, int] = {}
    for node in model.graph.node:  # topological order: every upstream tensor has its depth already
        here = max((depth[name] + (name in wanted) for name in node.input if name in producer), default=0)
        depth.update((out, here) for out in node.output)
    result: dict[int, list[str]] = {}
    for node in model.graph.node:
        if node.output[0] in wanted:
            result.setdefault(depth[node.output[0]], []).append(node.output[0])
    return [result[k] for k in sorted(result)]
