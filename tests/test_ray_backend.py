"""The Ray backend on a local Ray instance of 2 CPUs: scores, picks and reports equal the local
backend's (early stopping and global pruning included); a worker lost mid-run is retried, with
results complete and without duplicates (RELIABILITY 19); an unreachable cluster fails at once."""

import os
import time

import numpy as np
import pytest

import onnxcar
from onnxcar.importance import ray_backend
from tests.test_prune import labelled_data, save, two_conv_cnn

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # starting Ray takes 15 s or more on two cores
RAY = onnxcar.BackendConfig("ray")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    model = two_conv_cnn(channels=8, hw=8, seed=4)
    path = save(model, root / "model.onnx")
    labelled_data(model, root / "data.npz", 150, seed=6)
    return path, onnxcar.Data(root / "data.npz", preprocess="none")


def _without_timings(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "timings_s"}


def test_scores_equal_the_local_backend(cluster, sample):
    path, data = sample
    runner = onnxcar.RunnerConfig(batch_size=64)  # several shards per call
    local = onnxcar.score(path, data, "conv_b", runner=runner)
    remote = onnxcar.score(path, data, "conv_b", runner=runner, backend=RAY)
    assert local.by_criterion.keys() == remote.by_criterion.keys()
    for name, values in local.by_criterion.items():
        np.testing.assert_array_equal(remote.by_criterion[name], values)
    np.testing.assert_array_equal(remote.tie, local.tie)
    assert remote.to_dict() == local.to_dict()


@pytest.mark.parametrize("options", [
    dict(target=onnxcar.Ratio(0.5), layers=["conv_a", "conv_b"], per_iter=2),
    dict(target=onnxcar.Macs(0.6), per_iter=3),
], ids=["layers", "global-macs"])
def test_pruning_equals_the_local_backend(cluster, sample, options):
    path, data = sample
    runner = onnxcar.RunnerConfig(batch_size=64)
    local = onnxcar.prune(path, data=data, criterion="car", runner=runner, **options)
    remote = onnxcar.prune(path, data=data, criterion="car", runner=runner, backend=RAY, **options)
    assert remote.removals == local.removals
    assert _without_timings(remote.report) == _without_timings(local.report)
    assert remote.model.SerializeToString() == local.model.SerializeToString()


def test_a_lost_worker_is_retried(cluster, sample, tmp_path, monkeypatch):
    """Each shard of the first three image chunks kills its worker once; Ray reruns it elsewhere."""
    path, data = sample
    runner = onnxcar.RunnerConfig(batch_size=64)
    original = ray_backend._run_shard
    markers = str(tmp_path)

    def dies_once(key, holder, layout, task, config, current, shard, reduce):
        if int(shard.rows.min()) < 3 * len(shard.rows):
            try:
                name = f"{key}-{int(shard.rows.min())}-{int(shard.block[0])}"
                os.close(os.open(os.path.join(markers, name), os.O_CREAT | os.O_EXCL))
                os._exit(1)  # the worker process dies mid-shard
            except FileExistsError:
                pass
        return original(key, holder, layout, task, config, current, shard, reduce)

    monkeypatch.setattr(ray_backend, "_run_shard", dies_once)
    local = onnxcar.score(path, data, "conv_a", runner=runner)
    remote = onnxcar.score(path, data, "conv_a", runner=runner, backend=RAY)
    assert len(os.listdir(markers)) >= 3  # workers did die
    assert remote.to_dict() == local.to_dict()  # complete, no duplicates, equal


def test_an_unreachable_cluster_fails_before_any_work(sample):
    path, data = sample
    start = time.perf_counter()
    with pytest.raises(onnxcar.OnnxcarError, match="cannot reach the Ray cluster at 127.0.0.1:9"):
        onnxcar.prune(path, data=data, criterion="car", target=onnxcar.Count(1),
                      backend=onnxcar.BackendConfig("ray", "127.0.0.1:9"))
    assert time.perf_counter() - start < 30


def test_a_listener_that_is_not_ray_fails_within_the_timeout_in_one_line(sample, tmp_path):
    import socket
    import subprocess
    import threading

    from tests.test_prune import cli_command

    path, data = sample
    server = socket.create_server(("127.0.0.1", 0))  # accepts, never answers: ray.init waited minutes, logging
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    address = f"127.0.0.1:{server.getsockname()[1]}"
    start = time.perf_counter()
    done = subprocess.run([*cli_command(), "prune", path, "--criterion", "car", "--data", data.path, "--count", "1",
                           "--backend", "ray", "--ray-address", address, "--ray-timeout", "2", "-o", tmp_path / "o.onnx"],
                          capture_output=True, text=True, timeout=120)
    server.close()
    assert done.returncode == 2 and done.stderr.splitlines() == [
        f"onnxcar: error: the Ray cluster at {address} did not answer within 2 s (see --ray-address, --ray-timeout)"]
    assert time.perf_counter() - start < 30 and accepted


def test_a_ray_cluster_passes_the_check(cluster):
    ray_backend._check_reachable(ray.get_runtime_context().gcs_address, 5.0)  # raises if Ray's GCS does not answer
