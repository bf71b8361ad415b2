"""Compression on the sample, side by side: onnxruntime int8, Deep Compression alone, CAR + Deep Compression.

The int8 model is made here (onnxruntime.quantization, calibrated on the pruning set). The
two Deep Compression rows are containers written by ``onnxcar compress`` (shipped in
samples/compression/; samples/README.md has the commands that made them); this script
restores each one, measures the restored model's test top-1 with onnxruntime, and measures
every size against the ORIGINAL float32 model: per conv layer, all conv layers, the whole
model (file bytes). Prints a Markdown table; writes it as JSON.

    python benchmarks/compression_table.py [--dc DC.onnxz] [--car-dc CAR_DC.onnxz] \\
        [--calibration PRUNE.npz] [--test TEST.npz] [--out samples/compression_table.json]
"""

import argparse
import json
import math
import pathlib
import time

import onnx

from onnxcar.compression import size_table, unpack_with_layout
from onnxcar.compression.int8 import quantize_int8
from onnxcar.compression.layers import weight_layers
from onnxcar.data import DataSpec, Preprocess, load_dataset
from onnxcar.importance.batch import evaluate, make_batch
from onnxcar.tasks import Task
from onnxcar.io import load_model
from onnxcar.runners.config import RunnerConfig

INT8_SUFFIXES = ("_quantized", "_scale", "_zero_point")  # what quantize_static stores for a weight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", default="samples/alexnet_cifar10.onnx")
    parser.add_argument("--dc", default="samples/compression/dc.onnxz",
                        help="container of Deep Compression alone (no filter pruning)")
    parser.add_argument("--car-dc", default="samples/compression/car_dc.onnxz",
                        help="container of CAR filter pruning + Deep Compression")
    parser.add_argument("--calibration", default="samples/cifar10_prune_1000.npz", help="int8 calibration data")
    parser.add_argument("--calibration-images", type=int, default=1000)
    parser.add_argument("--test", default="samples/cifar10_test_2000.npz")
    parser.add_argument("--out", default="samples/compression_table.json")
    args = parser.parse_args()

    original = load_model(args.original)
    runner, task, preprocess = RunnerConfig(device="cpu"), Task(), Preprocess.preset("cifar10")
    test = make_batch(original, load_dataset(DataSpec(args.test, preprocess=preprocess)), task, runner)
    conv = [layer for layer in weight_layers(original) if layer.kind == "conv"]
    original_bytes = {layer.name: 4 * _elements(original, layer.tensor) for layer in conv}

    def row(method: str, model: onnx.ModelProto, layer_bytes: dict[str, int], model_bytes: int, seconds: float):
        top1 = evaluate(model, test, runner)["top1"]
        print(f"{method}: test top-1 {top1:.2%}, {model_bytes:,} bytes", flush=True)
        return {
            "method": method, "test_top1": top1, "bytes": model_bytes,
            "whole_model_ratio": round(original.ByteSize() / model_bytes, 3),
            "conv_ratio": round(sum(original_bytes.values()) / sum(layer_bytes.values()), 3),
            "layer_ratios": {name: round(original_bytes[name] / layer_bytes[name], 3) for name in original_bytes},
            "layer_bytes": layer_bytes, "seconds": round(seconds, 1),
        }

    rows = [row("original fp32", original, original_bytes, original.ByteSize(), 0.0)]
    start = time.perf_counter()
    calibration = load_dataset(DataSpec(args.calibration, preprocess=preprocess, limit=args.calibration_images))
    int8 = quantize_int8(original, calibration)
    int8_sizes = {i.name: len(i.SerializeToString()) for i in int8.graph.initializer}
    int8_bytes = {layer.name: sum(int8_sizes[layer.tensor + s] for s in INT8_SUFFIXES) for layer in conv}
    rows.append(row("onnxruntime int8 (QDQ, per channel)", int8, int8_bytes, int8.ByteSize(),
                    time.perf_counter() - start))
    tables = {}
    for method, path in (("Deep Compression alone", args.dc), ("CAR + Deep Compression", args.car_dc)):
        start = time.perf_counter()
        data = pathlib.Path(path).read_bytes()
        model, packed = unpack_with_layout(data, path)
        table = size_table(packed, [l for l in weight_layers(model) if l.tensor in packed.records], original)
        tables[method] = table.to_dict()
        coded = {r.layer: r.compressed_bytes for r in table.layers}
        rows.append(row(method, model, {name: coded[name] for name in original_bytes}, len(data),
                        time.perf_counter() - start))
    print(_markdown(rows, list(original_bytes)))
    result = {"original": args.original, "test_images": len(test.targets), "calibration_images": len(calibration),
              "containers": {"Deep Compression alone": args.dc, "CAR + Deep Compression": args.car_dc},
              "rows": rows, "size_tables": tables}
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}")


def _elements(model: onnx.ModelProto, name: str) -> int:
    return math.prod(next(i for i in model.graph.initializer if i.name == name).dims)


def _markdown(rows: list[dict], layers: list[str]) -> str:
    head = ["method", "test top-1", *layers, "all conv", "whole model (bytes)"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        cells = [r["method"], f"{r['test_top1']:.2%}", *(f"{r['layer_ratios'][n]:.1f}x" for n in layers),
                 f"{r['conv_ratio']:.1f}x", f"{r['whole_model_ratio']:.1f}x ({r['bytes']:,})"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
