"""The op handler registry: how channels propagate through each op type.

A handler takes a :class:`~onnxcar.graph.context.NodeContext`, sets the channel slots of the
node's outputs and records the edits that channel removal implies. An op with no handler,
or a handler that raises :class:`~onnxcar.graph.context.Unhandled`, blocks every channel
that reaches it.
"""

from typing import Callable

from onnxcar.graph.context import NodeContext

Handler = Callable[[NodeContext], None]

HANDLERS: dict[str, Handler] = {}


def register(*op_types: str) -> Callable[[Handler], Handler]:
    """Registers a handler for the default-domain op types given."""

    def decorate(handler: Handler) -> Handler:
        for op_type in op_types:
            HANDLERS[op_type] = handler
        return handler

    return decorate


def handler_for(domain: str, op_type: str) -> Handler | None:
    if domain not in ("", "ai.onnx"):
        return None
    return HANDLERS.get(op_type)


def load_handlers() -> None:
    """Imports the handler modules, which fill the registry."""
    from onnxcar.graph import handlers_nn, handlers_tensor  # noqa: F401
