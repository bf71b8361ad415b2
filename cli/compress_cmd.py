"""``onnxcar compress`` (Deep Compression after filter pruning) and ``onnxcar decompress`` (restore a container)."""

import dataclasses
import hashlib

import click

from onnxcar.bridge.finetune_config import FinetuneConfig
from onnxcar.cli.options import byte_size, data_options, layers_option, output_options, runner_options
from onnxcar.cli.output import bars, emit_json, summary
from onnxcar.compression import CompressConfig, LayerValues, checkpoint_paths, compress, format_table
from onnxcar.compression.config import DEFAULT_BITS, DEFAULT_INDEX_BITS
from onnxcar.compression.container import MAX_DECODED_BYTES, read
from onnxcar.errors import OnnxcarError
from onnxcar.io import check_output_path, save_model


def _values(base: LayerValues | None):
    def parse(ctx, param, value: str | None) -> LayerValues | None:
        if value is None:
            return base
        return LayerValues.parse(value, param.name, base)

    return parse


@click.command("compress")
@click.argument("model", type=click.Path(dir_okay=False))
@data_options(required=True)
@click.option("--val", "val_path", help="Validation data (the pruning set): sensitivity scan, best epochs, "
              "accuracy after each stage. Default: --data. Read with --data's preprocessing.")
@click.option("--test", "test_path", help="Test data, measured after each stage (never used to choose anything).")
@click.option("--original", type=click.Path(dir_okay=False),
              help="The model before filter pruning: ratios are against its layers. Default: MODEL.")
@click.option("--sparsity", callback=_values(None), help="Weights to zero per layer: 0.8, or conv1=0.7,conv2=0.8,fc=0.9.")
@click.option("--max-drop", type=float, help="Instead of --sparsity: the most accuracy points weight pruning may cost "
              "(sensitivity scan on --val).")
@click.option("--scan-step", type=float, default=0.05, show_default=True, help="Sparsity step of the sensitivity scan.")
@click.option("--bits", callback=_values(DEFAULT_BITS), help="Codebook index bits (2**bits shared values) per layer "
              "or kind  [default: conv=5,fc=4].")
@click.option("--index-bits", callback=_values(DEFAULT_INDEX_BITS), help="Relative position index bits per layer "
              "or kind  [default: conv=4,fc=5].")
@click.option("--codebook-dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True,
              help="How shared values are stored (they are rounded to it).")
@layers_option
@click.option("--retrain-epochs", type=click.IntRange(min=0), default=0, show_default=True,
              help="Fine-tune the pruned float weights (zeros stay zero) before weight sharing.")
@click.option("--retrain-lr", type=float, default=0.01, show_default=True)
@click.option("--gradual", is_flag=True, help="Prune during retraining, along a cubic ramp over its first half "
              "(Zhu and Gupta 2017), instead of all at once before it.")
@click.option("--finetune-epochs", type=click.IntRange(min=0), default=0, show_default=True,
              help="Trained quantization: fine-tune the shared values (and the uncoded weights).")
@click.option("--finetune-lr", type=float, default=0.001, show_default=True)
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default="sgd", show_default=True,
              help="Of both fine-tuning stages.")
@click.option("--train-batch-size", type=click.IntRange(min=2), default=64, show_default=True)
@click.option("--teacher", type=click.Path(dir_okay=False),
              help="Fine-tuning distils from this model (e.g. the original): half cross-entropy, half distillation.")
@click.option("--container", type=click.Path(dir_okay=False), help="The compressed container [default: OUTPUT with .onnxz].")
@click.option("--resume", is_flag=True, help="Continue killed fine-tuning from its checkpoints (OUTPUT.<stage>.ckpt).")
@runner_options
@output_options
def compress_command(model, data_spec, val_path, test_path, original, sparsity, max_drop, scan_step, bits,
                     index_bits, codebook_dtype, layers, retrain_epochs, retrain_lr, gradual, finetune_epochs,
                     finetune_lr, optimizer, train_batch_size, teacher, container, resume, runner, output, force,
                     as_json):
    """Deep Compression of MODEL: weight pruning, weight sharing, trained quantization, Huffman coding.

    Writes the runnable model (-o; its weights hold only the shared values), the container that
    restores it bit for bit (--container) and the report (OUTPUT with .json), whose size table
    measures every coded layer against the original float32 layer. --seed seeds fine-tuning.
    """
    if output is None:
        raise OnnxcarError("missing -o/--output: where to write the compressed model")

    def stage(epochs: int, lr: float) -> FinetuneConfig | None:
        return FinetuneConfig(epochs=epochs, lr=lr, batch_size=train_batch_size, optimizer=optimizer,
                              device=runner.device, seed=data_spec.seed) if epochs else None

    config = CompressConfig(
        sparsity=sparsity, max_drop=max_drop, bits=bits, index_bits=index_bits, layers=layers, scan_step=scan_step,
        codebook_dtype=codebook_dtype, retrain=stage(retrain_epochs, retrain_lr), gradual=gradual,
        finetune=stage(finetune_epochs, finetune_lr), runner=runner,
    )
    for path in (output, container or output.with_suffix(".onnxz"), output.with_suffix(".json")):
        check_output_path(path, force=force, source=model)  # before hours of work, not after
    if force and not resume:
        for path in checkpoint_paths(output).values():
            path.unlink(missing_ok=True)
    with bars(as_json) as progress:
        result = compress(model, config, data_spec, val=_like(data_spec, val_path), test=_like(data_spec, test_path),
                          original=original, teacher=teacher, checkpoint=output, resume=resume, progress=progress)
    output, container, report_path = result.save(output, container=container, force=force)
    if as_json:
        emit_json({**result.report, "output": str(output), "container": str(container)})
        return
    summary(format_table(result.sizes))
    summary("top-1 after each stage: " + "; ".join(
        f"{r['stage']} {r['val']:.2%}" + (f" (test {r['test']:.2%})" if "test" in r else "") for r in result.accuracy))
    summary(f"wrote {output}, {container} ({len(result.container):,} bytes) and {report_path}")


def _like(spec, path: str | None):
    """``spec`` read from another file, whole (no --limit or --split)."""
    return None if path is None else dataclasses.replace(spec, path=path, limit=None, split=None)


@click.command("decompress")
@click.argument("container", type=click.Path(dir_okay=False))
@click.option("--max-decoded-bytes", callback=byte_size,
              help=f"Refuse a container whose coded weights restore to more (suffix K, M, G) "
                   f"[default: {MAX_DECODED_BYTES // 2**30}G].")
@output_options
def decompress_command(container, max_decoded_bytes, output, force, as_json):
    """Restore the runnable model from a CONTAINER written by compress, bit for bit."""
    if output is None:
        raise OnnxcarError("missing -o/--output: where to write the restored model")
    output = check_output_path(output, force=force, source=container)
    model = read(container, max_decoded_bytes or MAX_DECODED_BYTES)
    save_model(model, output, force=force, source=container)
    data = model.SerializeToString()
    report = {"container": str(container), "output": str(output), "bytes": len(data),
              "sha256": hashlib.sha256(data).hexdigest()}
    if as_json:
        emit_json(report)
    else:
        summary(f"restored {output} ({len(data):,} bytes, sha256 {report['sha256'][:16]}...)")
