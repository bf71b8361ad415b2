"""Progress bars on stderr for long work, silenced by -q and --json."""

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from onnxcar.progress import Progress as ProgressCallback
from onnxcar.progress import silent

_COLUMNS = (
    TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
)


@contextlib.contextmanager
def progress_bars(*, quiet: bool) -> Iterator[ProgressCallback]:
    """Yields a progress callback that draws one bar per task on stderr, from the first report on;
    a bar left short ends where its task did."""
    if quiet:
        yield silent
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
