"""``onnxcar score``: every filter's CAR (or RAR) and the baselines' scores for one layer."""

import click
from rich.console import Console
from rich.table import Table

import onnxcar
from onnxcar.cli.options import (
    backend_options, data_options, input_shape_option, runner_options, task_option, tie_break_option,
)
from onnxcar.cli.output import bars, emit_json


@click.command("score")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--layer", required=True, help="Layer to score (a name from `onnxcar inspect`).")
@data_options(required=True)
@runner_options
@backend_options
@task_option
@click.option("--random-seed", type=int, default=0, show_default=True, help="Seed of the random baseline.")
@tie_break_option
@input_shape_option
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
def score_command(model, layer, data_spec, runner, backend, task, random_seed, tie_break, input_shapes, as_json):
    """Score each filter of one layer of MODEL by CAR/RAR and by the baselines."""
    with bars(as_json) as progress:
        scores = onnxcar.score(model, data_spec, layer, task=task, seed=random_seed, tie_break=tie_break, runner=runner,
                               backend=backend, input_shapes=input_shapes, progress=progress)
    if scores.blocked:
        click.echo(f"note: this layer cannot be pruned: {scores.blocked}", err=True)
    report = scores.to_dict()
    if as_json:
        emit_json(report)
        return
    base_key = next(k for k in report if k.startswith("base_"))
    ties = ["tie"] if scores.tie is not None else []
    criteria = [scores.index, *ties, *(name for name in scores.by_criterion if name != scores.index)]
    table = Table(title=f"{scores.layer}: {len(report['filters'])} filters, {base_key} {scores.base:.4f}")
    table.add_column("index", justify="right")
    for name in criteria:
        table.add_column(name, justify="right")
    for row in sorted(report["filters"], key=lambda f: (f[scores.index], f.get("tie", 0.0), f["index"])):
        table.add_row(str(row["index"]), *(f"{row[name]:.4g}" for name in criteria))
    Console().print(table)
    ties = f", then lowest tie ({scores.tie_break} growth)" if scores.tie is not None else ""
    click.echo(f"lowest {scores.index} first{ties}; apoz is minus the share of zeros, so low means mostly zero",
               err=True)
