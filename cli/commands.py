"""The list of commands; each lives in a module of its own."""

from onnxcar.cli.inspect_cmd import inspect_command
from onnxcar.cli.prune_cmd import prune_command

ALL = [inspect_command, prune_command]
