"""OnnxModule: an ONNX graph run node by node with torch ops, trainable like any module."""

import keyword
import re
from typing import NamedTuple

import onnx
import torch
from onnx import AttributeProto, numpy_helper

from onnxcar.bridge import ops_math, ops_nn, ops_resize, ops_tensor  # noqa: F401  (fill OPS)
from onnxcar.bridge.registry import OPS, Handler, NodeCtx, to_torch
from onnxcar.errors import OnnxcarError
from onnxcar.graph.window import is_window

_DEFAULT_DOMAINS = ("", "ai.onnx")


class _Step(NamedTuple):
    """One node, ready to run."""

    handler: Handler
    name: str
    op_type: str
    attrs: dict
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


class OnnxModule(torch.nn.Module):
    """Runs ``model``'s graph with torch ops.

    Float initializers become parameters, except BatchNormalization running mean/var and
    the fixed channel window of a pruned LRN (see onnxcar.graph.window), which become
    buffers (both in ``state_dict``); other initializers and Constant outputs are
    non-persistent buffers. ``onnx_names`` maps each attribute name to its
    initializer name. ``forward`` takes the graph inputs that are not initializers, in
    order, and returns one tensor or a tuple for several graph outputs.
    """

    def __init__(self, model: onnx.ModelProto):
        super().__init__()
        graph = model.graph
        _check_supported(graph)
        if graph.sparse_initializer:
            raise OnnxcarError("the torch bridge does not support sparse initializers")
        self.opset = next((o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS), None)
        if self.opset is None:
            raise OnnxcarError("model imports no default-domain opset")
        initializer_names = {i.name for i in graph.initializer}
        self.input_names = [i.name for i in graph.input if i.name not in initializer_names]
        self.output_names = [o.name for o in graph.output]
        self.onnx_names: dict[str, str] = {}
        self._stored: dict[str, str] = {}  # ONNX value name -> attribute holding it
        self._steps: list[_Step] = []
        fixed = _fixed_initializers(graph)
        for init in graph.initializer:
            self._add_initializer(init, init.name in fixed)
        for node in _toposort(graph, set(self.input_names) | initializer_names):
            step = _Step(OPS[node.op_type], node.name, node.op_type, _attributes(node),
                         tuple(node.input), tuple(node.output))
            if node.op_type == "Constant":
                self._store(node.output[0], step.handler(self._ctx(step), [], step.attrs), persistent=False)
            else:
                self._steps.append(step)

    def initializers(self) -> dict[str, torch.Tensor]:
        """The live parameter or buffer of each ONNX initializer, by initializer name."""
        return {onnx_name: getattr(self, attr) for attr, onnx_name in self.onnx_names.items()}

    def forward(self, *inputs: torch.Tensor):
        if len(inputs) != len(self.input_names):
            raise TypeError(f"expected {len(self.input_names)} inputs {self.input_names}, got {len(inputs)}")
        env = dict(zip(self.input_names, inputs))
        env.update((value, getattr(self, attr)) for value, attr in self._stored.items())
        for step in self._steps:
            out = step.handler(self._ctx(step), [env[n] if n else None for n in step.inputs], step.attrs)
            if isinstance(out, torch.Tensor):
                out = (out,)
            env.update((name, value) for name, value in zip(step.outputs, out) if name)
        outputs = tuple(env[name] for name in self.output_names)
        return outputs[0] if len(outputs) == 1 else outputs

    def extra_repr(self) -> str:
        return f"opset={self.opset}, nodes={len(self._steps)}, inputs={self.input_names}, outputs={self.output_names}"

    def _ctx(self, step: _Step) -> NodeCtx:
        return NodeCtx(step.name, step.op_type, self.opset, len(step.outputs), self.training)

    def _add_initializer(self, init: onnx.TensorProto, fixed: bool) -> None:
        tensor = to_torch(numpy_helper.to_array(init), f"initializer {init.name!r}")
        if tensor.is_floating_point() and not fixed:
            tensor = torch.nn.Parameter(tensor)
        self.onnx_names[self._store(init.name, tensor, persistent=tensor.is_floating_point())] = init.name

    def _store(self, value: str, tensor: torch.Tensor, persistent: bool) -> str:
        """Hold ONNX value ``value`` as a parameter (if ``tensor`` is one) or buffer; return its name."""
        attr = self._attr_name(value)
        if isinstance(tensor, torch.nn.Parameter):
            self.register_parameter(attr, tensor)
        else:
            self.register_buffer(attr, tensor, persistent=persistent)
        self._stored[value] = attr
        return attr

    def _attr_name(self, value: str) -> str:
        """A fresh attribute name: ``value`` made a valid, unused Python identifier."""
        base = re.sub(r"\W", "_", value)
        if not base.isidentifier() or keyword.iskeyword(base):
            base = "_" + base
        attr, suffix = base, 1
        while hasattr(self, attr):
            attr, suffix = f"{base}_{suffix}", suffix + 1
        return attr


def _fixed_initializers(graph: onnx.GraphProto) -> set[str]:
    """Float initializers that training must not change: BatchNorm statistics, and the window and
    constants of a pruned LRN (a channel-window Conv, then Mul, Add, Pow by scalars; see
    onnxcar.surgery.lrn)."""
    fixed = {n.input[i] for n in graph.node if n.op_type == "BatchNormalization" for i in (3, 4)}
    values = {init.name: init for init in graph.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    for node in graph.node:
        weight = values.get(node.input[1]) if node.op_type == "Conv" and len(node.input) == 2 else None
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if weight is None or group != 1 or not is_window(node.name, numpy_helper.to_array(weight)):
            continue
        fixed.add(weight.name)
        for op_type in ("Mul", "Add", "Pow"):
            following = readers.get(node.output[0], [])
            if len(following) != 1 or following[0].op_type != op_type:
                break
            node = following[0]
            fixed.update(name for name in node.input if name in values and not values[name].dims)
    return fixed


def _check_supported(graph: onnx.GraphProto) -> None:
    """Raise OnnxcarError listing the ops that have no handler, with a node of each."""
    missing: dict[str, str] = {}
    for node in graph.node:
        if node.domain not in _DEFAULT_DOMAINS:
            missing.setdefault(f"{node.domain}.{node.op_type}", node.name)
        elif node.op_type not in OPS:
            missing.setdefault(node.op_type, node.name)
    if missing:
        listed = ", ".join(f"{op} (node {name!r})" for op, name in missing.items())
        raise OnnxcarError(f"the torch bridge does not support these ops: {listed}")


def _toposort(graph: onnx.GraphProto, available: set[str]) -> list[onnx.NodeProto]:
    """The graph's nodes in an order where every input is produced before it is used."""
    ready, pending, ordered = set(available) | {""}, list(graph.node), []
    while pending:
        waiting = []
        for node in pending:  # one pass when the graph is already sorted, as ONNX asks
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            node = waiting[0]
            missing = next(i for i in node.input if i not in ready)
            raise OnnxcarError(f"node {node.name!r} ({node.op_type}) reads {missing!r}, which nothing produces")
        pending = waiting
    return ordered


def _attributes(node: onnx.NodeProto) -> dict:
    """The node's attributes as Python values: tensors as torch tensors, strings as str."""
    attrs = {}
    for attr in node.attribute:
        value = onnx.helper.get_attribute_value(attr)
        if attr.type == AttributeProto.TENSOR:
            value = to_torch(numpy_helper.to_array(value), f"attribute {attr.name!r} of node {node.name!r}")
        elif attr.type == AttributeProto.STRING:
            value = value.decode()
        elif attr.type in (AttributeProto.INTS, AttributeProto.FLOATS):
            value = list(value)
        attrs[attr.name] = value
    return attrs
