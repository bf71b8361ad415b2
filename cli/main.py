"""The ``onnxcar`` command-line entry point."""

import logging
import sys

import click

from onnxcar import __version__
from onnxcar.errors import OnnxcarError


class _Group(click.Group):
    """A click group that turns OnnxcarError into one line on stderr and an exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OnnxcarError as err:
            click.echo(f"onnxcar: error: {err}", err=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("onnxcar: interrupted", err=True)
            sys.exit(130)
        except click.ClickException as err:
            click.echo(f"onnxcar: error: {err.format_message()}", err=True)
            sys.exit(err.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except Exception as err:  # a bug in onnxcar: one line, the traceback with -v
            if ctx.params.get("verbose"):
                raise
            click.echo(f"onnxcar: internal error: {type(err).__name__}: {err} (rerun with -v for the traceback)", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="onnxcar")
@click.option("-v", "--verbose", count=True, help="More log output (repeatable).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress bars.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Compress ONNX CNNs by greedy filter pruning (CAR, Abbasi-Asl and Yu 2017)."""
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    ctx.obj = {"quiet": quiet, "verbose": verbose}


def _register() -> None:
    """Adds every command module's command to the group."""
    from onnxcar.cli import commands

    for command in commands.ALL:
        main.add_command(command)


_register()
