"""``onnxcar inspect``: the channel groups of a model."""

import click
from rich.console import Console
from rich.table import Table

import onnxcar
from onnxcar.cli.options import input_shape_option
from onnxcar.cli.output import emit_json


@click.command("inspect")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (schema in the README).")
@click.option("--all", "show_all", is_flag=True, help="Also list groups that cannot be pruned.")
@input_shape_option
def inspect_command(model: str, as_json: bool, show_all: bool, input_shapes) -> None:
    """List the channel groups of MODEL: what can be pruned, and at what share of the cost."""
    inspection = onnxcar.inspect(model, input_shapes=input_shapes)
    if as_json:
        emit_json(inspection.to_dict())
        return
    shapes = inspection.input_shapes
    custom = ", ".join(inspection.custom_ops)
    unsized = ", ".join(name for name, shape in shapes.items() if shape is None)
    if inspection.macs is None and not unsized and custom:
        macs = f"MACs unknown (shape inference cannot size the outputs of {custom})"
    elif inspection.macs is None:
        macs = f"MACs unknown (no size for {unsized or 'an intermediate tensor'}: see --input-shape)"
    else:
        macs = f"{inspection.macs:,} MACs per sample at " + ", ".join(
            f"{name} {'x'.join(map(str, shape))}" for name, shape in shapes.items())
    table = Table(title=f"{model}: {inspection.params:,} parameters, {macs}")
    for column in ("id", "layers", "channels", "params", "MACs", "prunable"):
        table.add_column(column, justify="right" if column in ("id", "channels", "params", "MACs") else "left")
    for group in inspection.groups:
        if group["prunable"] or show_all:
            table.add_row(
                str(group["id"]),
                ", ".join(group["layers"]),
                str(group["channels"]),
                f"{group['params_share']:.1%}",
                "unknown" if group["macs_share"] is None else f"{group['macs_share']:.1%}",
                "yes" if group["prunable"] else f"no: {group['reason']}",
            )
    console = Console()
    console.print(table)
    console.print(f"{len(inspection.prunable)} of {len(inspection.groups)} groups prunable"
                  + ("" if show_all else " (--all lists the rest)")
                  + (f"; ops of other domains without a channel handler block theirs: {custom}" if custom else ""))
    if inspection.unsupported:
        console.print(f"not pruned: {inspection.unsupported}")
