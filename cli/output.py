"""What commands print: results on stdout (JSON with --json), progress on stderr, nothing extra with -q."""

import click

from onnxcar.cli.progress import progress_bars
from onnxcar.report import dumps


def _quiet() -> bool:
    return click.get_current_context().find_root().obj["quiet"]


def bars(as_json: bool):
    """Progress bars on stderr, unless -q or --json."""
    return progress_bars(quiet=_quiet() or as_json)


def summary(text: str) -> None:
    """A human summary line on stdout, unless -q."""
    if not _quiet():
        click.echo(text)


def emit_json(data: dict) -> None:
    click.echo(dumps(data))
