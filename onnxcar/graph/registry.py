"""The op handler registry: how channels propagate through each op type.

A handler takes a :class:`~onnxcar.graph.context.NodeContext`, sets the channel slots of the
node's outputs and records the edits that channel removal implies. An op with no handler,
or a handler that raises :class:`~onnxcar.graph.context.Unhandled`, blocks every channel
that reaches it. Handlers are keyed by domain and op type, optionally for a range of opset
versions; custom domains register the same way::

    @register_handler("MyScale", domain="com.example", opsets=range(1, 3))
    def _my_scale(ctx: NodeContext) -> None:
        ctx.elementwise()
"""

from collections.abc import Callable
from dataclasses import dataclass

import onnx

from onnxcar.graph.context import NodeContext
from onnxcar.registry import load_plugins

Handler = Callable[[NodeContext], None]
_DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class HandlerEntry:
    handler: Handler
    opsets: range | None  # opset versions of the op's domain it covers; None: all


HANDLERS: dict[tuple[str, str], list[HandlerEntry]] = {}


def register_handler(op_type: str, *, domain: str = "", opsets: range | None = None) -> Callable[[Handler], Handler]:
    """Registers the decorated handler for ``op_type`` of ``domain`` (default: the ONNX domain)."""

    def decorate(handler: Handler) -> Handler:
        key = ("" if domain in _DEFAULT_DOMAINS else domain, op_type)
        HANDLERS.setdefault(key, []).append(HandlerEntry(handler, opsets))
        return handler

    return decorate


def register(*op_types: str) -> Callable[[Handler], Handler]:
    """Registers a handler for the ONNX-domain op types given, at every opset."""

    def decorate(handler: Handler) -> Handler:
        for op_type in op_types:
            register_handler(op_type)(handler)
        return handler

    return decorate


def handler_for(domain: str, op_type: str, opset: int | None = None) -> Handler | None:
    """The handler registered last for ``op_type`` of ``domain`` whose opset range holds ``opset``."""
    entries = HANDLERS.get(("" if domain in _DEFAULT_DOMAINS else domain, op_type), [])
    for entry in reversed(entries):
        if entry.opsets is None or opset is None or opset in entry.opsets:
            return entry.handler
    return None


def custom_ops_without_handler(model: onnx.ModelProto) -> list[str]:
    """``domain::OpType`` of each op of the main graph outside the ONNX domain that no handler covers, sorted."""
    load_handlers()
    return sorted({f"{node.domain}::{node.op_type}" for node in model.graph.node
                   if node.domain not in _DEFAULT_DOMAINS and handler_for(node.domain, node.op_type) is None})


def load_handlers() -> None:
    """Imports the built-in handler modules and the plugins, which fill the registry."""
    from onnxcar.graph import handlers_nn, handlers_tensor  # noqa: F401

    load_plugins()
