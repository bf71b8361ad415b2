"""``onnxcar eval``: accuracy (or MSE) of a model on a data set."""

import click

import onnxcar
from onnxcar.cli.options import data_options, input_shape_option, runner_options, task_option
from onnxcar.cli.output import bars, emit_json, summary


@click.command("eval")
@click.argument("model", type=click.Path(dir_okay=False))
@data_options(required=True)
@runner_options
@task_option
@input_shape_option
@click.option("--json", "as_json", is_flag=True, help='Print {"top1", "top5", "n"} (or the task\'s metric) as JSON.')
def eval_command(model, data_spec, runner, task, input_shapes, as_json):
    """Top-1/top-5 accuracy (or MSE) of MODEL on --data (whose items must have the --input-shape, if given)."""
    with bars(as_json) as progress:
        result = onnxcar.evaluate(model, data_spec, task=task, runner=runner, input_shapes=input_shapes,
                                  progress=progress)
    if as_json:
        emit_json(result.to_dict())
    elif task == "regression":
        summary(f"mse {result.mse:.6g} on {result.n} samples")
    elif task == "classification":
        summary(f"top-1 {result.top1:.2%}  top-5 {result.top5:.2%}  on {result.n} images")
    else:
        summary(f"{result.metric} {result.score:.6g} against the original model on {result.n} samples")
