"""Progress bars on stderr for long work, silenced by -q and --json."""

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from onnxcar.progress import Progress as ProgressCallback
from onnxcar.progress import silent


@contextlib.contextmanager
def progress_bars(*, quiet: bool) -> Iterator[ProgressCallback]:
    """Yields a progress callback that draws one bar per task on stderr; a bar left short ends where its task did."""
    if quiet:
        yield silent
        return
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
    )
    bars: dict[str, int] = {}
    done_by_bar: dict[int, int] = {}
    with Progress(*columns, console=Console(stderr=True)) as progress:

        def update(task: str, done: int, total: int | None, status: str = "") -> None:
            if task not in bars:
                bars[task] = progress.add_task(task, total=total, status="")
            progress.update(bars[task], completed=done, total=total, status=status)
            done_by_bar[bars[task]] = done

        try:
            yield update
        finally:
            for bar, done in done_by_bar.items():  # an early stop ends the bar where the work ended
                progress.update(bar, total=done)
