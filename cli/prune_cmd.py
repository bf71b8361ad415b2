"""``onnxcar prune``: remove filters by a criterion and write the smaller model."""

from pathlib import Path

import click

from onnxcar.graph import analyze
from onnxcar.importance import DATA_FREE, data_free_importance
from onnxcar.io import check_output_path, load_model, save_model
from onnxcar.prune.config import PruneConfig, Target
from onnxcar.prune.driver import prune
from onnxcar.report import dumps, write_json
from onnxcar.cli.options import output_options


def _layers(ctx, param, value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()


@click.command("prune")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--criterion", type=click.Choice(DATA_FREE), default="l1", show_default=True, help="How filters are ranked.")
@click.option("--ratio", type=float, help="Fraction of each selected group's filters to remove.")
@click.option("--count", type=int, help="Number of filters to remove from each selected group.")
@click.option("--layers", callback=_layers, help="Comma-separated layer names (see inspect); default: every prunable group.")
@click.option("--per-iter", type=click.IntRange(min=1), default=1, show_default=True, help="Filters removed per greedy iteration.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random criterion.")
@click.option("--no-verify", is_flag=True, help="Skip checking the pruned model against the masked original.")
@click.option("--report", "report_path", type=click.Path(path_type=Path), help="JSON report path [default: OUTPUT with .json].")
@output_options
def prune_command(model, criterion, ratio, count, layers, per_iter, seed, no_verify, report_path, output, force, as_json):
    """Remove filters from MODEL and write the physically smaller model to -o."""
    if output is None:
        raise click.UsageError("missing -o/--output")
    config = PruneConfig(criterion, Target(ratio=ratio, count=count), layers, per_iter, seed, not no_verify)
    output = check_output_path(output, force=force, source=model)
    report_path = check_output_path(report_path or output.with_suffix(".json"), force=force, source=model)
    analysis = analyze(load_model(model))
    result = prune(analysis, config, data_free_importance(criterion, seed))
    save_model(result.model, output, force=force, source=model)
    report = {"model": str(model), "output": str(output), "config": config.to_dict(), **result.summary()}
    write_json(report, report_path)
    if as_json:
        click.echo(dumps(report))
    else:
        before, after = result.before, result.after
        click.echo(
            f"removed {len(result.removals)} filters: params {before.params:,} -> {after.params:,} "
            f"({after.params / before.params:.1%}), MACs {before.macs:,} -> {after.macs:,} "
            f"({after.macs / max(before.macs, 1):.1%}); wrote {output} and {report_path}"
        )
