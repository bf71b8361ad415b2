"""Runners execute an ONNX model on numpy feeds: onnxruntime, or torch through the bridge.

A new backend registers a factory with ``@register_runner("name", precisions=(...))``; the
factory takes the model and a :class:`RunnerConfig` and returns a :class:`Runner`.
"""

from collections.abc import Callable
from dataclasses import dataclass

import onnx

from onnxcar.errors import OnnxcarError
from onnxcar.registry import Registry
from onnxcar.runners.base import Runner, ValueInfo
from onnxcar.runners.config import RunnerConfig


@dataclass(frozen=True)
class RunnerKind:
    """A registered backend."""

    name: str
    make: Callable[[onnx.ModelProto, RunnerConfig], Runner]
    precisions: tuple[str, ...] = ("fp32",)
    help: str = ""


def _builtins() -> None:
    from onnxcar.runners import ort, torch_runner  # noqa: F401  (their decorators register)


RUNNERS: Registry[RunnerKind] = Registry("runner", _builtins)


def register_runner(name: str, *, precisions: tuple[str, ...] = ("fp32",), help: str = ""):
    """Registers the decorated factory (a Runner class, say) as the backend ``name``."""

    def decorate(make):
        RUNNERS.add(name, RunnerKind(name, make, precisions, help))
        return make

    return decorate


def make_runner(model: onnx.ModelProto, config: RunnerConfig = RunnerConfig()) -> Runner:
    """The runner ``config.runner`` names, built for ``model``; it closes on exit."""
    kind = RUNNERS.get(config.runner)
    if config.precision not in kind.precisions:
        raise OnnxcarError(
            f"the {kind.name} runner runs {', '.join(kind.precisions)}, not {config.precision}",
            arguments=("precision", "runner"),
        )
    return kind.make(model, config)


__all__ = ["RUNNERS", "Runner", "RunnerConfig", "RunnerKind", "ValueInfo", "make_runner", "register_runner"]
