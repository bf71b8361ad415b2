"""``onnxcar eval``: accuracy (or MSE) of a model on a data set."""

import click

from onnxcar.cli.options import data_options, runner_options, task_option
from onnxcar.data import load_dataset
from onnxcar.importance.batch import evaluate, make_batch
from onnxcar.importance.evaluator import Task
from onnxcar.io import load_model
from onnxcar.report import dumps


@click.command("eval")
@click.argument("model", type=click.Path(dir_okay=False))
@data_options(required=True)
@runner_options
@task_option
@click.option("--json", "as_json", is_flag=True, help='Print {"top1", "top5", "n"} (or "mse") as JSON.')
def eval_command(model, data_spec, runner, task, as_json):
    """Top-1/top-5 accuracy (or MSE) of MODEL on --data."""
    onnx_model = load_model(model)
    task = Task(task)
    batch = make_batch(onnx_model, load_dataset(data_spec), task, runner)
    result = evaluate(onnx_model, batch, task, runner)
    if as_json:
        click.echo(dumps(result))
    elif task.kind == "regression":
        click.echo(f"mse {result['mse']:.6g} on {result['n']} samples")
    else:
        click.echo(f"top-1 {result['top1']:.2%}  top-5 {result['top5']:.2%}  on {result['n']} images")
