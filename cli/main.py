"""The ``onnxcar`` command-line entry point."""

import logging
import sys

import click

from onnxcar import __version__
from onnxcar.errors import OnnxcarError

_VERBOSITY_HELP = {"verbose": "More log output (repeatable).", "quiet": "Only errors: no progress bars, logs or summary."}


class _Group(click.Group):
    """A click group that turns OnnxcarError into one line on stderr and an exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OnnxcarError as err:
            click.echo(f"onnxcar: error: {_one_line(err)}{_flags(err.arguments)}", err=True)
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
            if ctx.obj and ctx.obj["verbose"]:
                raise
            click.echo(f"onnxcar: internal error: {type(err).__name__}: {_one_line(err)} "
                       "(rerun with -v for the traceback)", err=True)
            sys.exit(1)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        """Adds ``cmd`` with -v/-q of its own, so they work after the subcommand too."""
        cmd.params.extend([
            click.Option(["-v", "--verbose"], count=True, expose_value=False, callback=_more_verbose,
                         help=_VERBOSITY_HELP["verbose"]),
            click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, callback=_quieter,
                         help=_VERBOSITY_HELP["quiet"]),
        ])
        super().add_command(cmd, name)


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())


def _flags(arguments: tuple[str, ...]) -> str:
    """The options behind the library arguments an error names, e.g. `` (see --max-drop, --data)``."""
    flags = [_FLAGS.get(a, "--" + a.replace("_", "-")) for a in arguments]
    return f" (see {', '.join(flags)})" if arguments else ""


_FLAGS = {"input_shapes": "--input-shape"}  # arguments whose option is not their name with dashes


def _configure_logging(settings: dict) -> None:
    verbose, quiet = settings["verbose"], settings["quiet"]
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger().setLevel(level)


def _more_verbose(ctx: click.Context, param, value: int) -> None:
    settings = ctx.find_root().obj
    settings["verbose"] += value
    _configure_logging(settings)


def _quieter(ctx: click.Context, param, value: bool) -> None:
    settings = ctx.find_root().obj
    settings["quiet"] = settings["quiet"] or value
    _configure_logging(settings)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="onnxcar")
@click.option("-v", "--verbose", count=True, help=_VERBOSITY_HELP["verbose"])
@click.option("-q", "--quiet", is_flag=True, help=_VERBOSITY_HELP["quiet"])
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Compress ONNX CNNs by greedy filter pruning (CAR, Abbasi-Asl and Yu 2017)."""
    ctx.obj = {"quiet": quiet, "verbose": verbose}
    _configure_logging(ctx.obj)


def _register() -> None:
    """Adds every command module's command to the group."""
    from onnxcar.cli import commands

    for command in commands.ALL:
        main.add_command(command)


_register()
