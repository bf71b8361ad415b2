"""Progress off a terminal: plain lines on stderr, one per interval, first and last always."""

import itertools

import onnx

from onnxcar.cli.progress import plain_lines
from tests.zoo import tasks


def test_plain_lines_throttle_and_estimate(capsys):
    ticks = itertools.count(0, 4)  # each report 4 s after the last
    update = plain_lines(interval=10, clock=lambda: float(next(ticks)))
    for done in range(0, 7):
        update("pruning", done, 6, f"conv{done}")
    update("pruning", 6, 6)  # the driver's closing report, already printed
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "pruning 0/6 conv0 elapsed 0:00:00",
        "pruning 3/6 conv3 elapsed 0:00:12 eta 0:00:12",
        "pruning 6/6 conv6 elapsed 0:00:24",
    ]


def test_plain_lines_without_a_total(capsys):
    update = plain_lines(interval=0, clock=lambda: 0.0)
    update("scoring", 5, None)
    assert capsys.readouterr().err == "scoring 5/? elapsed 0:00:00\n"


def test_cli_prints_progress_lines_to_a_pipe(tmp_path, run_cli):
    path = tmp_path / "m.onnx"
    onnx.save(tasks.sigmoid_map(), path)
    result = run_cli("prune", path, "-o", tmp_path / "out.onnx", "--ratio", "0.5")
    assert result.exit_code == 0
    assert "pruning 8/8" in result.stderr and "elapsed" in result.stderr
