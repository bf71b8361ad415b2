"""``onnxcar finetune``: train a (pruned) model's weights through the torch bridge and write them back."""

import dataclasses

import click

import onnxcar
from onnxcar.bridge import require_torch
from onnxcar.cli.options import data_options, input_shape_option, output_options, task_option
from onnxcar.cli.output import bars, emit_json, summary
from onnxcar.errors import OnnxcarError
from onnxcar.artifacts import output_paths
from onnxcar.io import check_output_path


@click.command("finetune")
@click.argument("model", type=click.Path(dir_okay=False))
@data_options(required=True)
@click.option("--val", "val_path", help="Validation data that picks the best epoch, read with --data's preprocessing.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--lr", type=float, default=0.01, show_default=True, help="Initial learning rate.")
@click.option("--batch-size", type=click.IntRange(min=2), default=64, show_default=True)
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default="sgd", show_default=True,
              help="SGD with Nesterov momentum, or AdamW.")
@click.option("--schedule", type=click.Choice(["cosine", "step"]), default="cosine", show_default=True,
              help="Cosine to 0, or divide by 10 every third of the epochs.")
@click.option("--weight-decay", type=float, default=5e-4, show_default=True)
@click.option("--momentum", type=float, default=0.9, show_default=True, help="SGD momentum (Nesterov).")
@click.option("--no-augment", is_flag=True, help="No random crop (4-pixel zero padding) and horizontal flip.")
@click.option("--keep-sparsity", is_flag=True, help="Weights that are exactly zero at the start stay zero.")
@click.option("--teacher", type=click.Path(dir_okay=False), help="Distil from this model, e.g. the unpruned original.")
@click.option("--distill-weight", type=float, default=0.5, show_default=True,
              help="Share of the distillation loss (1 for data without labels).")
@click.option("--temperature", type=float, default=4.0, show_default=True, help="Distillation temperature.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--resume", is_flag=True, help="Continue a killed run from its checkpoint (OUTPUT.ckpt).")
@task_option
@input_shape_option
@output_options
def finetune_command(model, data_spec, val_path, epochs, lr, batch_size, optimizer, schedule, weight_decay,
                     momentum, no_augment, keep_sparsity, teacher, distill_weight, temperature, device, resume, task,
                     input_shapes, output, force, as_json):
    """Fine-tune MODEL on --data and write the weights of its best epoch on --val to -o.

    The output is MODEL's graph with only its weights changed. --seed seeds training as
    well as --limit and --split; the same seed gives the same weights.
    """
    require_torch("onnxcar finetune")
    from onnxcar.bridge.finetune import FinetuneConfig, checkpoint_path

    if output is None:
        raise OnnxcarError("missing -o/--output: where to write the fine-tuned model")
    if val_path is None:
        raise OnnxcarError("missing --val: validation data, apart from the training data, picks the best epoch")
    config = FinetuneConfig(
        epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, schedule=schedule,
        weight_decay=weight_decay, momentum=momentum, augment=not no_augment, keep_sparsity=keep_sparsity,
        distill_weight=distill_weight, temperature=temperature, device=device, seed=data_spec.seed, task=task,
    )
    output, report_path = output_paths(output, force=force, source=model)
    checkpoint = check_output_path(checkpoint_path(output), force=True, source=model)  # never the input's weights
    if force and not resume:
        checkpoint.unlink(missing_ok=True)
    val_spec = dataclasses.replace(data_spec, path=val_path, limit=None, split=None)
    with bars(as_json) as progress:
        result = onnxcar.finetune(model, data_spec, val_spec, config, teacher=teacher, checkpoint=checkpoint,
                                  resume=resume, input_shapes=input_shapes, progress=progress)
    result.save(output, force=force)
    report = {**result.report, "output": str(output)}
    if as_json:
        emit_json(report)
        return
    summary(f"val {result.metric} {result.before:.4g} -> {result.after:.4g} (best epoch {result.best_epoch} of "
            f"{epochs}, {result.seconds:.1f} s); wrote {output} and {report_path}")
