"""``onnxcar score``: every filter's CAR (or RAR) and the baselines' scores for one layer."""

import click
from rich.console import Console
from rich.table import Table

from onnxcar.cli.options import data_options, runner_options, task_option
from onnxcar.data import load_dataset
from onnxcar.graph import analyze
from onnxcar.importance import DataScorer, make_importance
from onnxcar.importance.batch import make_batch
from onnxcar.importance.evaluator import Task
from onnxcar.io import load_model
from onnxcar.report import dumps


@click.command("score")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--layer", required=True, help="Layer to score (a name from `onnxcar inspect`).")
@data_options(required=True)
@runner_options
@task_option
@click.option("--random-seed", type=int, default=0, show_default=True, help="Seed of the random baseline.")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
def score_command(model, layer, data_spec, runner, task, random_seed, as_json):
    """Score each filter of one layer of MODEL by CAR/RAR and by the baselines."""
    onnx_model = load_model(model)
    task = Task(task)
    batch = make_batch(onnx_model, load_dataset(data_spec), task, runner)
    analysis = analyze(onnx_model)
    group = analysis.group(layer)
    if not group.prunable:
        click.echo(f"note: this layer cannot be pruned: {group.reasons[0]}", err=True)
    scorer = DataScorer(batch, task, runner)
    index = "car" if task.higher_is_better else "rar"
    criteria = (index, "l1", "l2", "mean-act", "apoz", "random")
    columns = {name: make_importance(name, scorer, random_seed)(analysis, group, frozenset()) for name in criteria}
    base = scorer.metric(analysis, group, frozenset())
    scorer.close()
    filters = [{"index": i, **{name: float(columns[name][i]) for name in criteria}} for i in range(group.size)]
    base_key = "base_top1" if task.higher_is_better else "base_mse"
    if as_json:
        click.echo(dumps({"layer": analysis.layer_name(group.producers[0]), base_key: base, "filters": filters}))
        return
    table = Table(title=f"{analysis.layer_name(group.producers[0])}: {group.size} filters, {base_key} {base:.4f}")
    table.add_column("index", justify="right")
    for name in criteria:
        table.add_column(name, justify="right")
    for row in sorted(filters, key=lambda f: (f[index], f["index"])):
        table.add_row(str(row["index"]), *(f"{row[name]:.4g}" for name in criteria))
    Console().print(table)
    click.echo(f"lowest {index} first; apoz is minus the share of zeros, so low means mostly zero", err=True)
