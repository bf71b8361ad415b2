"""Intermediate tensors of a model on data: the part of the graph that computes them, run batch by batch."""

from collections.abc import Iterator, Mapping

import numpy as np
import onnx
from onnx import helper

from onnxcar.runners import make_runner
from onnxcar.runners.config import RunnerConfig


def prefix_model(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """The nodes of ``model`` that compute the tensors ``names``, with those tensors as outputs."""
    graph = model.graph
    needed = set(names)
    nodes = []
    for node in reversed(graph.node):
        if needed.intersection(node.output):
            nodes.append(node)
            needed.update(name for name in node.input if name)
    types = _element_types(model)
    outputs = [helper.make_tensor_value_info(name, types.get(name, onnx.TensorProto.FLOAT), None) for name in names]
    initializers = [t for t in graph.initializer if t.name in needed]
    stored = {t.name for t in initializers}
    inputs = [i for i in graph.input if i.name in needed and i.name not in stored]
    part = helper.make_graph(nodes[::-1], graph.name, inputs, outputs, initializers)
    return helper.make_model(part, opset_imports=model.opset_import, ir_version=model.ir_version)


def _element_types(model: onnx.ModelProto) -> dict[str, int]:
    infos = (*model.graph.value_info, *model.graph.output, *model.graph.input)
    return {i.name: i.type.tensor_type.elem_type for i in infos if i.type.tensor_type.elem_type}


def tapped_batches(model: onnx.ModelProto, names: list[str], images: Mapping[str, np.ndarray],
                   runner: RunnerConfig) -> Iterator[tuple[slice, dict[str, np.ndarray]]]:
    """(item range, {name: value}) of the tensors ``names`` for each batch of ``images``."""
    count = len(next(iter(images.values())))
    with make_runner(prefix_model(model, names), runner) as session:
        feeds = {i.name for i in session.inputs()}
        for start in range(0, count, runner.batch_size):
            items = slice(start, min(start + runner.batch_size, count))
            values = session.run({k: v[items] for k, v in images.items() if k in feeds}, names)
            yield items, dict(zip(names, values))


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
