"""A pruning run's contract: exact resume in every case, a validated and locked journal, and
targets that say what they will do (issue: robustness of resume and concurrent runs)."""

import fcntl
import json
import signal
import subprocess

import numpy as np
import pytest

import onnxcar
from onnxcar.pruning.journal import Journal
from tests.test_pipeline import SAMPLES
from tests.test_prune import cli_command, invoke, kill_after, ok, save, two_conv_cnn, uninterrupted_run


@pytest.fixture(scope="module")
def run4(tmp_path_factory):
    """CAR with four filters per iteration (two layers of 16, 600 images), and its uninterrupted result."""
    root = tmp_path_factory.mktemp("run4")
    return root, *uninterrupted_run(root, 600, 2, "--per-iter", "4")


def journal_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_killed_per_iter_run_resumes_to_the_same_model(tmp_path, run4):
    root, args, full_bytes, full_report = run4
    out, journal = tmp_path / "out.onnx", tmp_path / "out.onnx.journal"
    assert kill_after([*args, "-o", out], journal, 1).returncode == -signal.SIGKILL
    first = journal_lines(journal)[1]["removals"]
    assert len(first) == 4 and first == full_report["removed"][:4]  # a whole iteration, or nothing
    with open(journal, "a") as f:  # the next iteration, torn by the kill
        f.write(json.dumps({"removals": full_report["removed"][4:6]})[:-3])
    resumed = json.loads(ok(invoke(*args, "-o", out, "--resume", "--json")).stdout)
    assert out.read_bytes() == full_bytes
    assert resumed["removed"] == full_report["removed"]


def test_each_removal_records_its_iteration(run4):
    removed = run4[3]["removed"]
    assert [r["iteration"] for r in removed] == [0] * 4 + [1] * 4 + [0] * 4 + [1] * 4
    for iteration in range(0, 16, 4):  # the metric after the whole iteration, on each of its removals
        assert len({r["metric"] for r in removed[iteration : iteration + 4]}) == 1


def test_resume_refuses_other_data_of_the_same_shape(tmp_path, run4):
    root, args, _, _ = run4
    out, journal = tmp_path / "out.onnx", tmp_path / "out.onnx.journal"
    kill_after([*args, "-o", out], journal, 1)
    data = dict(np.load(root / "data.npz"))
    other = tmp_path / "data.npz"
    np.savez(other, images=data["images"][::-1].copy(), labels=data["labels"][::-1].copy())
    args = [other if a == root / "data.npz" else a for a in args]
    result = invoke(*args, "-o", out, "--resume")
    assert result.exit_code == 2 and "different model, data or settings" in result.stderr, result.stderr


def test_resume_refuses_another_runner_setting(tmp_path, run4):
    root, args, _, _ = run4
    out, journal = tmp_path / "out.onnx", tmp_path / "out.onnx.journal"
    kill_after([*args, "-o", out], journal, 1)
    result = invoke(*args, "-o", out, "--resume", "--batch-size", "7")
    assert result.exit_code == 2 and "different model, data or settings" in result.stderr, result.stderr


BAD_ENTRIES = {
    "negative-channel": lambda e: [{**e, "channel": -1}],
    "channel-out-of-range": lambda e: [{**e, "channel": 16}],
    "duplicate": lambda e: [e, e],
    "unknown-layer": lambda e: [{**e, "layer": "conv_x"}],
    "unknown-group": lambda e: [{**e, "group": 99}],
    "missing-field": lambda e: [{k: v for k, v in e.items() if k != "score"}],
    "wrong-type": lambda e: [{**e, "channel": "3"}],
    "extra-field": lambda e: [{**e, "note": 1}],
    "empty-iteration": lambda e: [],
}


@pytest.mark.parametrize("name", list(BAD_ENTRIES))
def test_a_bad_journal_is_refused_in_one_line(tmp_path, run4, name):
    root, args, _, full_report = run4
    out, journal = tmp_path / "out.onnx", tmp_path / "out.onnx.journal"
    kill_after([*args, "-o", out], journal, 1)
    header = journal.read_text().splitlines()[0]
    entries = BAD_ENTRIES[name](full_report["removed"][0])
    journal.write_text(header + "\n" + json.dumps({"removals": entries}) + "\n")
    result = invoke(*args, "-o", out, "--resume")
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("onnxcar: error: ") and "journal" in lines[0], result.stderr
    assert not out.exists()


@pytest.mark.parametrize("line", ['"just a string"', '{"removals": 3}', '{"removals": [1, 2]}', "[1, 2]"])
def test_a_journal_line_that_is_no_iteration_is_refused(tmp_path, run4, line):
    root, args, _, _ = run4
    out, journal = tmp_path / "out.onnx", tmp_path / "out.onnx.journal"
    kill_after([*args, "-o", out], journal, 1)
    journal.write_text(journal.read_text().splitlines()[0] + "\n" + line + "\n")
    result = invoke(*args, "-o", out, "--resume")
    assert result.exit_code == 2 and result.stderr.startswith("onnxcar: error: "), result.stderr


def test_too_many_journaled_removals_are_refused(tmp_path, run4):
    root, args, _, full_report = run4
    out, journal = tmp_path / "out.onnx", tmp_path / "out.onnx.journal"
    kill_after([*args, "-o", out], journal, 1)
    extra = [{**full_report["removed"][0], "channel": c, "iteration": c} for c in range(9)]  # 9 > 8 of conv_a
    journal.write_text(journal.read_text().splitlines()[0] + "\n"
                       + "".join(json.dumps({"removals": [e]}) + "\n" for e in extra))
    result = invoke(*args, "-o", out, "--resume")
    assert result.exit_code == 2 and "more channels than the target" in result.stderr, result.stderr


def test_resume_drops_a_torn_tail_without_rewriting_the_journal(tmp_path):
    path = tmp_path / "j"
    journal = Journal(path, "id", resume=False)
    journal.record([{"a": 1}])
    journal.close()
    with open(path, "a") as f:
        f.write('{"removals": [{"a"')
    inode = path.stat().st_ino
    resumed = Journal(path, "id", resume=True)
    assert resumed.iterations == [[{"a": 1}]]
    assert path.read_text() == '{"run": "id"}\n{"removals": [{"a": 1}]}\n' and path.stat().st_ino == inode
    resumed.close()


def test_resume_finishes_a_run_killed_after_writing_the_model(tmp_path, run4):
    """Killed after the model was written but before the report: --resume writes both, and removes
    the temporaries that an earlier kill in the middle of a write left behind."""
    root, args, full_bytes, full_report = run4
    out = tmp_path / "out.onnx"
    result = onnxcar.prune(root / "model.onnx", target=onnxcar.Ratio(0.5), criterion="car", per_iter=4,
                           data=onnxcar.Data(root / "data.npz", preprocess="none"), runner=onnxcar.RunnerConfig(threads=1),
                           journal=tmp_path / "out.onnx.journal")
    out.write_bytes(full_bytes)  # the model was written; the kill came before the report
    result.journal.close()
    stale = tmp_path / ".out.onnx.0123abcd.tmp"
    stale.write_bytes(b"half a model")
    resumed = json.loads(ok(invoke(*args, "-o", out, "--resume", "--json")).stdout)
    assert resumed["removed"] == full_report["removed"] and out.read_bytes() == full_bytes
    assert (tmp_path / "out.json").exists() and not stale.exists()
    assert not (tmp_path / "out.onnx.journal").exists()


def test_a_second_run_on_the_same_output_is_refused(tmp_path, run4):
    root, args, _, _ = run4
    out = tmp_path / "out.onnx"
    with open(tmp_path / "out.onnx.journal", "a+b") as held:  # another run holds the journal
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = invoke(*args, "-o", out, "--force")
    assert result.exit_code == 2 and "another run is writing" in result.stderr, result.stderr
    assert not out.exists()


def test_an_unwritable_output_folder_is_one_line(tmp_path, run4, monkeypatch):
    root, args, _, _ = run4

    def refused(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("onnxcar.pruning.journal.open", refused, raising=False)
    result = invoke(*args, "-o", tmp_path / "out.onnx")
    assert result.exit_code == 2 and "cannot write the journal" in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_at_journal_creation_leaves_no_journal(tmp_path, run4, monkeypatch):
    root, args, _, _ = run4
    out = tmp_path / "out.onnx"

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("onnxcar.pruning.journal.os.fsync", full)
    result = invoke(*args, "-o", out)
    assert result.exit_code == 2 and "No space left" in result.stderr, result.stderr
    assert not (tmp_path / "out.onnx.journal").exists()


def test_a_count_beyond_a_layer_warns(tmp_path):
    model = save(two_conv_cnn(channels=4), tmp_path / "m.onnx")
    done = subprocess.run([*cli_command(), "prune", model, "-o", tmp_path / "o.onnx", "--count", "9", "--layers",
                           "conv_a"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "conv_a (4 filters): removing 3" in done.stderr, done.stderr


def test_a_ratio_that_removes_nothing_is_one_error_line(tmp_path):
    model = save(two_conv_cnn(channels=4), tmp_path / "m.onnx")
    done = subprocess.run([*cli_command(), "prune", model, "-o", tmp_path / "o.onnx", "--ratio", "0.2", "--layers",
                           "conv_a"], capture_output=True, text=True, timeout=120)  # a subprocess: logging as users see it
    assert done.returncode == 2 and done.stderr.splitlines() == [
        "onnxcar: error: the target removes no filter from any selected layer (conv_a (4 filters)); raise it "
        "(see --ratio, --count)"], done.stderr
    assert not (tmp_path / "o.onnx").exists()


def test_the_report_names_the_layers_an_all_layers_run_pruned(tmp_path):
    model = save(two_conv_cnn(channels=4), tmp_path / "m.onnx")
    report = json.loads(ok(invoke("prune", model, "-o", tmp_path / "o.onnx", "--ratio", "0.5", "--json")).stdout)
    assert report["config"]["layers"] == ["conv_a", "conv_b"]


def test_score_and_eval_show_progress_on_stderr(tmp_path, run4):
    root, _, _, _ = run4
    model, data = root / "model.onnx", root / "data.npz"
    scored = ok(invoke("score", model, "--data", data, "--layer", "conv_a", "--json"))
    assert json.loads(scored.stdout)["layer"] == "conv_a"  # --json: no bars
    scored = ok(invoke("score", model, "--data", data, "--layer", "conv_a"))
    assert "scoring" in scored.stderr and "600/600" in scored.stderr
    evaluated = ok(invoke("eval", model, "--data", data))
    assert "evaluating" in evaluated.stderr and "600/600" in evaluated.stderr
    assert evaluated.stdout.startswith("top-1 ")


def test_an_early_stop_ends_the_bar_where_pruning_ended(tmp_path):
    result = ok(invoke("prune", SAMPLES / "alexnet_cifar10.onnx", "--criterion", "l1", "--max-drop", "3", "--data",
                       SAMPLES / "cifar10_prune_1000.npz", "--preprocess", "cifar10", "--limit", "200",
                       "--layers", "conv1", "-o", tmp_path / "o.onnx"))
    removed = len(json.loads((tmp_path / "o.json").read_text())["removed"])
    assert 0 < removed < 47, removed
    bar = [line for line in result.stderr.splitlines() if line.startswith("pruning")][-1]  # plain lines off a terminal
    assert f"{removed}/{removed}" in bar, bar


def test_a_fast_run_does_not_sync_its_journal_per_iteration(tmp_path, monkeypatch):
    """Data-free pruning of 1,000 filters is 500 iterations: syncing each one took 4 ms of disk wait (issue 23)."""
    import onnxcar.pruning.journal as journal

    syncs = []
    real = journal.os.fsync
    monkeypatch.setattr(journal.os, "fsync", lambda fd: syncs.append(fd) or real(fd))
    model = save(two_conv_cnn(channels=1000, hw=4), tmp_path / "m.onnx")
    ok(invoke("prune", model, "-o", tmp_path / "o.onnx", "--ratio", "0.5", "--layers", "conv_a"))
    assert 1 <= len(syncs) <= 10, len(syncs)  # the first line, one a second at most, the close
