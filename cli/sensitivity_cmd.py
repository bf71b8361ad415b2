"""``onnxcar sensitivity``: pruning-set accuracy of each layer after removing 10 %, 20 %, ... of its filters."""

import click

from onnxcar.cli.options import comma_floats, criterion_option, data_options, layers_option, runner_options, task_option
from onnxcar.cli.output import bars, emit_json
from onnxcar.interpret.sensitivity import DEFAULT_STEPS, SensitivityConfig, sensitivity
from onnxcar.io import check_output_path, load_model
from onnxcar.report import write_json
from onnxcar.tasks import Task


@click.command("sensitivity")
@click.argument("model", type=click.Path(dir_okay=False))
@criterion_option
@layers_option
@click.option("--steps", callback=comma_floats, help="Comma-separated shares of each layer to remove [default: 0.1,...,0.9].")
@click.option("--per-iter", type=click.IntRange(min=1), default=1, show_default=True, help="Filters removed per greedy iteration.")
@click.option("--random-seed", type=int, default=0, show_default=True, help="Seed of the random criterion.")
@data_options(required=True)
@runner_options
@task_option
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Also write the JSON report here (for onnxcar report).")
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report on stdout.")
def sensitivity_command(model, criterion, layers, steps, per_iter, random_seed, data_spec, runner, task, output,
                        force, as_json):
    """Prune each layer of MODEL alone by a criterion and report pruning-set accuracy at each step."""
    config = SensitivityConfig(criterion, steps or DEFAULT_STEPS, layers, per_iter, random_seed,
                               "regression" if criterion == "rar" and task == "classification" else task)
    output = check_output_path(output, force=force, source=model) if output else None
    with bars(as_json) as progress:
        result = sensitivity(load_model(model), config, data_spec, runner, progress)
    report = {"model": str(model), "data": data_spec.to_dict(), **result.to_dict()}
    if output:
        write_json(report, output)
    if as_json:
        emit_json(report)
        return
    accuracy = config.task == "classification"
    header = "layer        filters " + " ".join(f"{100 * s:>6.0f}%" for s in config.steps)
    click.echo(f"{Task(config.task).metric_name} on the pruning set after removing a share of one layer's "
               f"filters by {criterion} (unpruned {_value(result.original_metric, accuracy)})")
    click.echo(header)
    for layer in result.layers:
        at = {p.fraction: _value(p.metric, accuracy) for p in layer.points}
        click.echo(f"{layer.layer:<12} {layer.filters:>7} " + " ".join(f"{at.get(s, '-'):>7}" for s in config.steps))
    if output:
        click.echo(f"wrote {output}", err=True)


def _value(metric: float, accuracy: bool) -> str:
    return f"{100 * metric:.2f}" if accuracy else f"{metric:.4g}"
