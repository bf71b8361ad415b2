"""Progress of long library work: a callback that front ends render (the CLI as bars on stderr)."""

from typing import Protocol


class Progress(Protocol):
    """Told that ``done`` of ``total`` steps (None: unknown) of ``task`` are finished."""

    def __call__(self, task: str, done: int, total: int | None, status: str = "") -> None: ...


def silent(task: str, done: int, total: int | None, status: str = "") -> None:
    """A Progress that shows nothing."""
