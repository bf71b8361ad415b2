"""``onnxcar report``: one self-contained HTML page from pruning, scoring and sensitivity reports."""

from pathlib import Path

import click

from onnxcar.cli.options import runner_options
from onnxcar.cli.output import bars, emit_json, summary
from onnxcar.htmlreport import KINDS, ReportConfig, render_report
from onnxcar.io import atomic_write, check_output_path


@click.command("report")
@click.argument("reports", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The HTML page to write.")
@click.option("--png", "png_dir", type=click.Path(file_okay=False, path_type=Path), help="Also write each figure as PNG here.")
@click.option("--first", type=click.IntRange(min=1), default=20, show_default=True,
              help="Removed filters counted in the colour-selectivity table.")
@click.option("--patches", type=click.IntRange(min=1, max=16), default=4, show_default=True,
              help="Top-activating patches drawn per filter of deeper layers.")
@runner_options
@click.option("--force", is_flag=True, help="Overwrite an existing page or PNGs.")
@click.option("--json", "as_json", is_flag=True, help="Print what the page shows (figures, problems, colour table) as JSON.")
def report_command(reports, output, png_dir, first, patches, runner, force, as_json):
    """Render REPORTS (JSON from prune, score, sensitivity, ...) as one HTML page readable offline.

    Several prune reports of one layer draw one line per criterion. Filter pictures and colour
    indices are computed from the model and pruning set each report names.
    """
    output = check_output_path(output, force=force)
    with bars(as_json) as progress:
        rendered = render_report(list(reports), ReportConfig(first, patches, runner), progress)
    if png_dir:
        png_dir.mkdir(parents=True, exist_ok=True)
    pngs = [(check_output_path(png_dir / f"{f.name}.png", force=force), f.png) for f in rendered.figures] if png_dir else []
    atomic_write(output, lambda f: f.write(rendered.html.encode()))
    for path, data in pngs:
        atomic_write(path, lambda f, data=data: f.write(data))
    if as_json:
        emit_json({"output": str(output), **rendered.to_dict()})
        return
    for problem in rendered.problems:
        click.echo(f"note: not shown: {problem}", err=True)
    extra = f" and {len(pngs)} PNGs in {png_dir}" if png_dir else ""
    summary(f"wrote {output} ({len(rendered.figures)} figures){extra}")


report_command.help += f"\n\nReport kinds read: {', '.join(sorted(KINDS))}."
