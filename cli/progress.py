"""Progress bars for long work, silenced by -q."""

import contextlib

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextlib.contextmanager
def removal_progress(total: int, *, quiet: bool):
    """Yields a callback that advances a bar by one removal and shows its layer and metric."""
    if quiet:
        yield lambda removal: None
        return
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("pruning", total=total, status="")

        def advance(removal) -> None:
            status = removal.layer if removal.metric is None else f"{removal.layer} metric {removal.metric:.4f}"
            progress.update(task, advance=1, status=status)

        yield advance
