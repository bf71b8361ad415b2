"""``onnxcar run``: a recipe's stages and gates as one CI step."""

import time
from pathlib import Path

import click

from onnxcar.cli.output import bars, emit_json, summary
from onnxcar.errors import GateError
from onnxcar.io import atomic_write, check_output_path
from onnxcar.pipeline import load_recipe, run_recipe
from onnxcar.pipeline.junit import junit_xml


@click.command("run")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--output-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where the final model, report.json and the stage cache go; a rerun reuses finished stages.")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write JUnit XML, one test case per gate.")
@click.option("--dry-run", is_flag=True, help="Check the recipe, its files, layers and data, print the plan, run nothing.")
@click.option("--force", is_flag=True, help="Use an output folder that holds other files.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's report (or the plan) as JSON.")
def run_command(recipe, output_dir, junit_path, dry_run, force, as_json):
    """Run RECIPE (TOML): prune, fine-tune, compress and evaluate, then check its gates.

    Exit codes: 0 every gate passed; 3 a gate failed (the artifacts are still written); 2 a
    usage or input error; 1 an internal error.
    """
    started = time.perf_counter()
    parsed = load_recipe(recipe)
    if junit_path is not None:
        check_output_path(junit_path, force=True)
    with bars(as_json) as progress:
        result = run_recipe(parsed, output_dir, dry_run=dry_run, force=force, progress=progress)
    if dry_run:
        if as_json:
            emit_json({"recipe": recipe, "plan": result.plan, "gates": parsed.gates})
            return
        for step in result.plan:
            summary(f"stage {step['stage']}: {step['kind']} (data: {', '.join(step['data']) or 'none'})")
        summary(f"gates: {', '.join(f'{k} {v:g}' for k, v in parsed.gates.items()) or 'none'}; "
                f"outputs in {output_dir}; checked, nothing run")
        return
    if junit_path is not None:
        xml = junit_xml(result.gates, suite=f"onnxcar run {recipe}", seconds=time.perf_counter() - started)
        atomic_write(junit_path, lambda f: f.write(xml))
    if as_json:
        emit_json(result.report)
    else:
        for record in result.stages:
            summary(f"{record.kind}: {'cached' if record.cached else f'{record.seconds:.1f} s'}")
        for gate in result.gates:
            summary(gate.message)
        summary(f"wrote {result.model_path} and {result.report_path}")
    failed = [g for g in result.gates if not g.passed]
    if failed:
        raise GateError(f"{len(failed)} of {len(result.gates)} gates failed: " + "; ".join(g.message for g in failed))
