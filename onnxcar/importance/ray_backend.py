"""The Ray backend: shards of candidate evaluation on a Ray cluster (``pip install onnxcar[ray]``).

The suffix model, the cached prefix tensors and the targets go to Ray's object store once per
probe (a tensor that several probes share, once in all); each shard is a task that names them
by reference, so it carries only its candidate indices, image indices and mask row. A worker
process keeps the runner it built for a suffix (a session per probe; every shard of a call has
the same shape) for the shards that follow. Ray reruns a task whose worker died
(``RETRIES`` times), and results are gathered by shard, so a lost worker leaves neither a gap
nor a duplicate, and the numbers equal the local backend's: the same shards, the same runner.
"""

import logging
import os
import socket
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import onnx

from onnxcar.errors import OnnxcarError
from onnxcar.importance.backends import BackendConfig, register_backend
from onnxcar.io import first_line
from onnxcar.importance.shards import Layout, Shard, reduction, run_shard
from onnxcar.runners import make_runner
from onnxcar.runners.config import RunnerConfig

log = logging.getLogger(__name__)
RETRIES = 3  # reruns of a shard whose worker died
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")  # preface, empty SETTINGS
_SETTINGS = 0x04  # the HTTP/2 frame type a gRPC server (Ray's GCS) answers the preface with
SESSIONS_KEPT = 8  # suffix sessions a worker process keeps (global pruning has one probe per group)


def require_ray():
    try:
        import ray
    except ImportError as err:
        raise OnnxcarError("the ray backend needs Ray: pip install onnxcar[ray]", arguments=("backend",)) from err
    return ray


@register_backend("ray", help="a Ray cluster at ray_address, or a local Ray instance started for the run")
class RayBackend:
    """Connects to the cluster at ``config.address`` (or starts a local instance, stopped by
    ``close``; a Ray session the caller already opened is used as it is). Ray logs only errors."""

    def __init__(self, config: BackendConfig):
        ray = require_ray()
        self._ray, self._started = ray, False
        if config.address:
            _check_reachable(config.address, config.timeout_s)
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # Ray's core logs to stderr, past Python's logging
        logging.getLogger("ray").setLevel(logging.ERROR)
        if not ray.is_initialized():
            try:
                ray.init(address=config.address, include_dashboard=False, log_to_driver=False, configure_logging=False)
            except Exception as err:
                where = f"the Ray cluster at {config.address}" if config.address else "a local Ray instance"
                raise OnnxcarError(f"cannot connect to {where}: {first_line(err)}", arguments=("ray_address",)) from err
            self._started = True
        self._task = ray.remote(_run_shard).options(max_retries=RETRIES, num_cpus=1)
        self._stored: dict[int, tuple[weakref.ref, object]] = {}  # id(array) -> (the array, its object ref)
        log.info("ray backend: %d CPUs in the cluster", int(ray.cluster_resources().get("CPU", 0)))

    def put(self, array: np.ndarray):
        """The object ref of ``array``, stored once while it lives."""
        self._stored = {k: v for k, v in self._stored.items() if v[0]() is not None}
        entry = self._stored.get(id(array))
        if entry is None or entry[0]() is not array:
            entry = (weakref.ref(array), self._ray.put(array))
            self._stored[id(array)] = entry
        return entry[1]

    def open(self, suffix: onnx.ModelProto, layout: Layout, cache: dict[str, np.ndarray], targets: np.ndarray, task,
             config: RunnerConfig) -> "RaySuffix":
        stored = (self._ray.put(suffix.SerializeToString()), {k: self.put(v) for k, v in cache.items()},
                  self.put(targets))
        return RaySuffix(self, uuid.uuid4().hex, stored, layout, task, replace(config, threads=config.threads or 1))

    def close(self) -> None:
        self._stored.clear()
        if self._started:
            self._ray.shutdown()
            self._started = False


class RaySuffix:
    """One probe's suffix on the cluster: each shard a task, results in shard order."""

    def __init__(self, backend: RayBackend, key: str, stored: tuple, layout: Layout, task, config: RunnerConfig):
        self.backend, self.key, self.stored, self.layout, self.task, self.config = backend, key, stored, layout, task, config

    def run(self, current: np.ndarray, shards: list[Shard], reduce: str) -> Iterator[np.ndarray]:
        ray = self.backend._ray
        # the stored refs ride in a list, so that a worker fetches them only when it lacks the session
        futures = [self.backend._task.remote(self.key, [self.stored], self.layout, self.task, self.config, current,
                                             shard, reduce) for shard in shards]
        # Shards left over when the search stops early (or fails) run to their end and are dropped:
        # ray.cancel races with a task's completion in Ray's core and aborts the driver
        # ("Tried to complete task that was not pending", ray-project/ray#54798).
        try:
            for future in futures:
                yield ray.get(future)
        except ray.exceptions.RayTaskError as err:
            if isinstance(err.cause, OnnxcarError):
                raise err.cause from None
            raise OnnxcarError(f"a shard failed on the Ray cluster: {first_line(err.cause)}") from err
        except ray.exceptions.RayError as err:
            raise OnnxcarError(f"the Ray cluster lost a shard {RETRIES + 1} times: {first_line(err)}") from err

    def close(self) -> None:
        self.stored = None


_SESSIONS: "OrderedDict[str, tuple]" = OrderedDict()  # in each worker process: key -> (runner, cache, targets)


def _run_shard(key: str, holder: list, layout: Layout, task, config: RunnerConfig, current: np.ndarray, shard: Shard,
               reduce: str) -> np.ndarray:
    """A Ray task: one shard on this worker's session of the suffix ``key`` (built on first use)."""
    session = _SESSIONS.get(key)
    if session is None:
        import ray

        suffix, cache, targets = holder[0]
        session = (make_runner(onnx.load_from_string(ray.get(suffix)), config),
                   {name: ray.get(ref) for name, ref in cache.items()}, ray.get(targets))
        _SESSIONS[key] = session
        while len(_SESSIONS) > SESSIONS_KEPT:
            _SESSIONS.popitem(last=False)[1][0].close()
    _SESSIONS.move_to_end(key)
    runner, cache, targets = session
    return run_shard(runner, layout, cache, targets, reduction(task, reduce), current, shard)


def _check_reachable(address: str, timeout_s: float) -> None:
    """Refuses, within ``timeout_s``, an address where nothing listens or what listens does not answer
    as Ray's GCS (gRPC) does (``ray.init`` would wait for minutes, logging all the while)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise OnnxcarError(f"a Ray address is host:port (or auto), got {address!r}", arguments=("ray_address",))
    deadline = time.monotonic() + timeout_s
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as connection:
            connection.settimeout(max(deadline - time.monotonic(), 0.001))
            connection.sendall(_HTTP2_HELLO)
            reply = connection.recv(9)
    except TimeoutError:
        raise OnnxcarError(f"the Ray cluster at {address} did not answer within {timeout_s:g} s",
                           arguments=("ray_address", "ray_timeout")) from None
    except OSError as err:
        raise OnnxcarError(f"cannot reach the Ray cluster at {address}: {err.strerror or err}",
                           arguments=("ray_address",)) from err
    if len(reply) < 4 or reply[3] != _SETTINGS:
        raise OnnxcarError(f"what listens at {address} does not answer as a Ray cluster does",
                           arguments=("ray_address",))
