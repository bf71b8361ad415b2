"""``onnxcar prune``: remove filters by a criterion and write the smaller model."""

from pathlib import Path

import click

from onnxcar.cli.options import data_options, output_options, runner_options, task_option
from onnxcar.cli.progress import progress_bars
from onnxcar.data import load_dataset
from onnxcar.graph import analyze
from onnxcar.importance import CRITERIA, DataScorer, make_importance
from onnxcar.importance.batch import make_batch
from onnxcar.importance.evaluator import Task
from onnxcar.io import check_output_path, load_model, save_model
from onnxcar.prune.config import PruneConfig, Target
from onnxcar.errors import OnnxcarError
from onnxcar.prune.driver import check_run, prune
from onnxcar.prune.journal import Journal, fingerprint, journal_path
from onnxcar.report import dumps, write_json


def _layers(ctx, param, value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()


@click.command("prune")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--criterion", type=click.Choice(CRITERIA), default="l1", show_default=True,
              help="How filters are ranked; car/rar/mean-act/apoz need --data.")
@click.option("--ratio", type=float, help="Fraction of each selected layer's filters to remove.")
@click.option("--count", type=int, help="Number of filters to remove from each selected layer.")
@click.option("--max-drop", type=float, help="Stop a layer before pruning-set accuracy falls this many points.")
@click.option("--layers", callback=_layers, help="Comma-separated layers, pruned in order (see inspect); default: all.")
@click.option("--per-iter", type=click.IntRange(min=1), default=1, show_default=True, help="Filters removed per greedy iteration.")
@click.option("--random-seed", type=int, default=0, show_default=True, help="Seed of the random criterion.")
@click.option("--no-verify", is_flag=True, help="Skip checking the pruned model against the masked original.")
@click.option("--resume", is_flag=True, help="Continue a killed run from its journal (OUTPUT.journal).")
@click.option("--report", "report_path", type=click.Path(path_type=Path), help="JSON report path [default: OUTPUT with .json].")
@data_options(required=False)
@runner_options
@task_option
@output_options
@click.pass_context
def prune_command(ctx, model, criterion, ratio, count, max_drop, layers, per_iter, random_seed, no_verify, resume,
                  report_path, data_spec, runner, task, output, force, as_json):
    """Remove filters from MODEL and write the physically smaller model to -o.

    Layers are pruned one at a time; within a layer, each iteration rescores the remaining
    filters on the network pruned so far and removes the lowest (ties: lowest index).
    """
    if output is None:
        raise click.UsageError("missing -o/--output")
    task = Task("regression" if criterion == "rar" else task)
    config = PruneConfig(criterion, Target(ratio, count, max_drop), layers, per_iter, random_seed, not no_verify)
    output = check_output_path(output, force=force, source=model)
    report_path = check_output_path(report_path or output.with_suffix(".json"), force=force, source=model)
    if report_path.resolve() == output.resolve():
        raise OnnxcarError(f"the report would overwrite the model {output}: give --report another path")
    onnx_model = load_model(model)
    scorer = None
    if data_spec is not None:
        scorer = DataScorer(make_batch(onnx_model, load_dataset(data_spec), task, runner), task, runner)
    importance = make_importance(criterion, scorer, random_seed)
    analysis = analyze(onnx_model)
    settings = {"config": config.to_dict(), "data": data_spec.to_dict() if data_spec else None, "task": task.kind}
    total = sum(config.target.removals(g.size) for g in check_run(analysis, config, scorer))
    journal = Journal(journal_path(output), fingerprint(onnx_model.SerializeToString(), settings), resume=resume, force=force)
    with progress_bars(quiet=ctx.find_root().obj["quiet"] or as_json) as progress:
        done = 0

        def advance(removal) -> None:
            nonlocal done
            done += 1
            status = removal.layer if removal.metric is None else f"{removal.layer} metric {removal.metric:.4f}"
            progress("pruning", done, total, status)

        result = prune(analysis, config, importance, scorer=scorer, journal=journal, on_removal=advance)
    save_model(result.model, output, force=force, source=model)
    report = {"model": str(model), "output": str(output), **settings, "task": task.kind, **result.summary()}
    write_json(report, report_path)
    journal.remove()
    if as_json:
        click.echo(dumps(report))
        return
    before, after = result.before, result.after
    metric = "" if result.original_metric is None else (
        f"; pruning-set {'accuracy' if task.higher_is_better else 'MSE'} "
        f"{result.original_metric:.4g} -> {report['final_metric']:.4g}"
    )
    click.echo(
        f"removed {len(result.removals)} filters: params {before.params:,} -> {after.params:,} "
        f"({after.params / before.params:.1%}), MACs {before.macs:,} -> {after.macs:,} "
        f"({after.macs / max(before.macs, 1):.1%}){metric}; wrote {output} and {report_path}"
    )
