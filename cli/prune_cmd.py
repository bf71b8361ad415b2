"""``onnxcar prune``: remove filters by a criterion and write the smaller model."""

from pathlib import Path

import click

import onnxcar
from onnxcar.cli.options import (
    backend_options, criterion_option, data_options, input_shape_option, layers_option, output_options,
    repair_options, runner_options, task_option, tie_break_option,
)
from onnxcar.cli.output import bars, emit_json, summary
from onnxcar.pruning.journal import journal_path
from onnxcar.artifacts import output_paths
from onnxcar.pruning.targets import target_from
from onnxcar.tasks import Task


@click.command("prune")
@click.argument("model", type=click.Path(dir_okay=False))
@criterion_option
@click.option("--ratio", type=float, help="Fraction of each selected layer's filters to remove.")
@click.option("--count", type=int, help="Number of filters to remove from each selected layer.")
@click.option("--max-drop", type=float, help="Stop a layer before pruning-set accuracy falls this many points.")
@click.option("--target-macs", type=float, help="Keep this fraction of the MACs, pruning globally (implies --global).")
@click.option("--target-params", type=float, help="Keep this fraction of the parameters, pruning globally (implies --global).")
@click.option("--global", "global_scope", is_flag=True,
              help="One greedy loop over the filters of every selected layer; --ratio and --count count all of them.")
@layers_option
@click.option("--per-iter", type=click.IntRange(min=1), default=1, show_default=True, help="Filters removed per greedy iteration.")
@click.option("--random-seed", type=int, default=0, show_default=True, help="Seed of the random criterion.")
@tie_break_option
@click.option("--no-verify", is_flag=True, help="Skip checking the pruned model against the masked original.")
@click.option("--tolerance", type=click.FloatRange(min=0, min_open=True),
              help="Relative and absolute tolerance of the check (default: 1e-4 of each output's scale and of "
                   "each value, plus float rounding).")
@click.option("--resume", is_flag=True, help="Continue a killed run from its journal (OUTPUT.journal).")
@click.option("--report", "report_path", type=click.Path(path_type=Path), help="JSON report path [default: OUTPUT with .json].")
@repair_options
@data_options(required=False)
@runner_options
@backend_options
@task_option
@input_shape_option
@output_options
def prune_command(model, criterion, ratio, count, max_drop, target_macs, target_params, global_scope, layers, per_iter,
                  random_seed, tie_break, no_verify, tolerance, resume, report_path, repair, data_spec, runner, backend,
                  task, input_shapes, output, force, as_json):
    """Remove filters from MODEL and write the physically smaller model to -o.

    Layers are pruned one at a time; within a layer, each iteration rescores the remaining
    filters on the network pruned so far and removes the lowest (ties: the --tie-break key for
    CAR, then the lowest index). With
    --global (or a --target-macs/--target-params budget), one loop runs over every selected
    layer's filters, removing the least score per MAC or parameter saved. --repair then
    restores accuracy without training, after the pruned model is checked.
    """
    if output is None:
        raise click.UsageError("missing -o/--output")
    target = target_from(ratio, count, max_drop, target_macs, target_params)
    journal = journal_path(output)
    overwrite = force or (resume and journal.exists())  # a resumed run may finish its own half-written outputs
    output, report_path = output_paths(output, report_path, force=overwrite, source=model)
    with bars(as_json) as progress:
        result = onnxcar.prune(
            model, target=target, criterion=criterion, layers=layers, data=data_spec, input_shapes=input_shapes,
            per_iter=per_iter, seed=random_seed, verify=not no_verify, tolerance=tolerance, tie_break=tie_break,
            scope="global" if global_scope else "layer", task="regression" if criterion == "rar" and task == "classification" else task,
            runner=runner, backend=backend, journal=journal, resume=resume, force=force,
            repair=repair.name, repair_data=repair.data, progress=progress,
        )
    result.save(output, report=report_path, force=overwrite)
    if as_json:
        emit_json({**result.report, "output": str(output)})
        return
    before, after = result.before, result.after
    pruned_metric = result.removals[-1].metric if result.removals else result.original_metric
    metric = "" if result.original_metric is None else (
        f"; pruning-set {Task(result.settings['task']).metric_name} "
        f"{result.original_metric:.4g} -> {pruned_metric:.4g}"
    )
    if result.repair is not None:
        step = f"the {repair.name} repair ({result.repair['seconds']:.1f} s)"
        repaired = result.repair["metric_after"]
        if repaired is None:
            metric += f"; {step}"
        elif result.repair["kept"]:
            metric += f" -> {repaired:.4g} after {step}"
        else:
            metric += f"; {step} gave {repaired:.4g}: the unrepaired model was kept"
    macs = "MACs unknown (see --input-shape)" if before.macs is None else (
        f"MACs {before.macs:,} -> {after.macs:,} ({after.macs / max(before.macs, 1):.1%})")
    summary(
        f"removed {len(result.removals)} filters: params {before.params:,} -> {after.params:,} "
        f"({after.params / before.params:.1%}), {macs}{metric}; wrote {output} and {report_path}"
    )
