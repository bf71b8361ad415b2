"""Where candidate shards run: in this process (``local``), or on a Ray cluster (``ray``).

A backend opens a *suffix session* per probe: it receives the suffix model, the cached prefix
tensors and the targets once, then runs shards (see ``importance.shards``) in order. Register
another backend with ``@register_backend("name")`` on a factory that takes a
:class:`BackendConfig` and returns an object with ``open(...)`` and ``close()``.
"""

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
import onnx

from onnxcar.errors import OnnxcarError
from onnxcar.importance.shards import Layout, Shard, reduction, run_shard
from onnxcar.registry import Registry
from onnxcar.runners import make_runner
from onnxcar.runners.config import RunnerConfig


@dataclass(frozen=True)
class BackendConfig:
    """Which backend evaluates candidates: ``local``, or ``ray`` at ``address`` (a running
    cluster, ``host:port``; None starts a local Ray instance for the run and stops it after),
    which must answer within ``timeout_s`` seconds."""

    kind: str = "local"
    address: str | None = None
    timeout_s: float = 10.0

    def __post_init__(self):
        if not 0 < self.timeout_s < float("inf"):
            raise OnnxcarError(f"timeout_s must be a positive number of seconds, got {self.timeout_s}",
                               arguments=("ray_timeout",))

    def to_dict(self) -> dict:
        return asdict(self)


class SuffixSession(Protocol):
    def run(self, current: np.ndarray, shards: list[Shard], reduce: str) -> Iterator[np.ndarray]:
        """Each shard's reduced outputs (see ``shards.reduction``), in the order of ``shards``."""
        ...

    def close(self) -> None: ...


class Backend(Protocol):
    def open(self, suffix: onnx.ModelProto, layout: Layout, cache: dict[str, np.ndarray], targets: np.ndarray,
             task, config: RunnerConfig) -> SuffixSession: ...

    def close(self) -> None: ...


class LocalSuffix:
    """Runs shards one after another on one runner in this process."""

    def __init__(self, suffix, layout, cache, targets, task, config):
        self.runner = make_runner(suffix, config)
        self.layout, self.cache, self.targets, self.task = layout, cache, targets, task

    def run(self, current: np.ndarray, shards: list[Shard], reduce: str) -> Iterator[np.ndarray]:
        function = reduction(self.task, reduce)
        for shard in shards:
            yield run_shard(self.runner, self.layout, self.cache, self.targets, function, current, shard)

    def close(self) -> None:
        self.runner.close()


class LocalBackend:
    """Evaluates candidates in this process."""

    def __init__(self, config: BackendConfig = BackendConfig()):
        self.config = config

    def open(self, suffix, layout, cache, targets, task, config) -> LocalSuffix:
        return LocalSuffix(suffix, layout, cache, targets, task, config)

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class BackendKind:
    name: str
    make: Callable[[BackendConfig], Backend]
    help: str = ""


def _builtins() -> None:
    from onnxcar.importance import ray_backend  # noqa: F401  (its decorator registers; ray loads lazily)


BACKENDS: Registry[BackendKind] = Registry("backend", _builtins)


def register_backend(name: str, *, help: str = ""):
    """Registers the decorated factory as the backend ``name``."""

    def decorate(make):
        BACKENDS.add(name, BackendKind(name, make, help))
        return make

    return decorate


register_backend("local", help="this process")(LocalBackend)


def open_backend(config: BackendConfig) -> Backend:
    """The backend ``config`` names, connected (a cluster that cannot be reached is an error here)."""
    return BACKENDS.get(config.kind).make(config)
