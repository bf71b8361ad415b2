"""The list of commands; each lives in a module of its own."""

from onnxcar.cli.compress_cmd import compress_command, decompress_command
from onnxcar.cli.eval_cmd import eval_command
from onnxcar.cli.finetune_cmd import finetune_command
from onnxcar.cli.inspect_cmd import inspect_command
from onnxcar.cli.prune_cmd import prune_command
from onnxcar.cli.report_cmd import report_command
from onnxcar.cli.run_cmd import run_command
from onnxcar.cli.score_cmd import score_command
from onnxcar.cli.sensitivity_cmd import sensitivity_command

ALL = [
    inspect_command, eval_command, score_command, prune_command, finetune_command,
    compress_command, decompress_command, sensitivity_command, report_command, run_command,
]
