"""Progress on stderr for long work, silenced by -q and --json: bars on a terminal, plain lines elsewhere."""

import contextlib
import datetime
import sys
import time
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from onnxcar.progress import Progress as ProgressCallback
from onnxcar.progress import silent

_COLUMNS = (
    TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
)


PLAIN_INTERVAL_S = 10.0
"""Off a terminal, the least time between two lines of one task (its first and last lines always print)."""


@contextlib.contextmanager
def progress_bars(*, quiet: bool) -> Iterator[ProgressCallback]:
    """Yields a progress callback that draws one bar per task on stderr, from the first report on;
    a bar left short ends where its task did. Where stderr is not a terminal (CI logs, a pipe), it
    prints :func:`plain_lines` instead."""
    if quiet:
        yield silent
        return
    if not Console(stderr=True).is_terminal:
        yield plain_lines()
        return
    display: Progress | None = None
    bars: dict[str, int] = {}
    done: dict[int, int] = {}

    def update(task: str, completed: int, total: int | None, status: str = "") -> None:
        nonlocal display
        if display is None:
            display = Progress(*_COLUMNS, console=Console(stderr=True))
            display.start()
        if task not in bars:
            bars[task] = display.add_task(task, total=total, status="")
        display.update(bars[task], completed=completed, total=total, status=status)
        done[bars[task]] = completed

    try:
        yield update
    finally:
        if display is not None:
            for bar, completed in done.items():  # an early stop ends the bar where the work ended
                display.update(bar, total=completed)
            display.stop()


def plain_lines(interval: float = PLAIN_INTERVAL_S, clock=time.monotonic) -> ProgressCallback:
    """A progress callback that writes one plain line to stderr per report of a task, at most one per
    ``interval`` seconds, but always its first and its last: ``pruning 12/64 conv2 metric 0.81 elapsed
    0:01:05 eta 0:04:40`` (eta from the mean pace so far, when the total is known)."""
    started: dict[str, tuple[float, int]] = {}
    last: dict[str, tuple[float, int]] = {}  # when each task's last line was printed, and at what count

    def update(task: str, done: int, total: int | None, status: str = "") -> None:
        now = clock()
        start, first = started.setdefault(task, (now, done))
        finished = total is not None and done >= total
        if task in last and (now - last[task][0] < interval and not finished or finished and last[task][1] == done):
            return
        last[task] = (now, done)
        elapsed = now - start
        line = f"{task} {done}/{'?' if total is None else total}{f' {status}' if status else ''} elapsed {_clock(elapsed)}"
        if total is not None and not finished and done > first:
            line += f" eta {_clock(elapsed / (done - first) * (total - done))}"
        print(line, file=sys.stderr, flush=True)

    return update


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))
