"""Data-free pruning at scale: `prune --criterion l1 --ratio 0.5` on every layer of large networks.

Builds AlexNet- and VGG-16-shaped networks at 224x224 and a torchvision-style ResNet-50 with
random weights (torch export, no downloads), prunes half of every prunable group by L1 through
``onnxcar.prune`` (analysis, ranking, surgery and verification included) and prints the seconds
of each phase. Then it shows how the ranking scales with a layer's width: one FC group of width
w, pruned by half, for doubling w; a cost linear in w doubles, a quadratic one quadruples.
Run from the repository root (needs the torch extra):

    PYTHONPATH=. python benchmarks/dataless_speed.py [--models alexnet,vgg16,resnet50]
"""

import argparse
import io
import time

import onnx
import torch
from torch import nn

import onnxcar
from tests.zoo.exported import ResNet50Like


def alexnet() -> nn.Module:
    """torchvision's AlexNet layout: 5 conv layers (64-192-384-256-256), 9216-4096-4096-1000."""
    conv = lambda cin, cout, k, s, p: [nn.Conv2d(cin, cout, k, s, p), nn.ReLU()]  # noqa: E731
    return nn.Sequential(
        *conv(3, 64, 11, 4, 2), nn.MaxPool2d(3, 2), *conv(64, 192, 5, 1, 2), nn.MaxPool2d(3, 2),
        *conv(192, 384, 3, 1, 1), *conv(384, 256, 3, 1, 1), *conv(256, 256, 3, 1, 1), nn.MaxPool2d(3, 2),
        nn.AdaptiveAvgPool2d(6), nn.Flatten(), nn.Linear(9216, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(),
        nn.Linear(4096, 1000),
    )


def vgg16() -> nn.Module:
    """VGG-16 (configuration D): 13 conv layers, 25088-4096-4096-1000."""
    layers, cin = [], 3
    for cout in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if cout == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
            cin = cout
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(25088, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(),
                         nn.Linear(4096, 1000))


def mlp(width: int) -> nn.Module:
    """A 1x1 conv stem, then one FC group of ``width`` units between two layers."""
    return nn.Sequential(nn.Conv2d(3, 8, 1), nn.Flatten(), nn.Linear(8 * 16 * 16, width), nn.ReLU(),
                         nn.Linear(width, 10))


def export(module: nn.Module, hw: int) -> onnx.ModelProto:
    torch.manual_seed(0)
    for p in module.parameters():
        nn.init.normal_(p, std=0.01)
    buffer = io.BytesIO()
    torch.onnx.export(module.eval(), (torch.randn(1, 3, hw, hw),), buffer, dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}})
    return onnx.load_from_string(buffer.getvalue())


def prune_half(model: onnx.ModelProto, **options) -> onnxcar.PruneResult:
    return onnxcar.prune(model, criterion="l1", target=onnxcar.Ratio(0.5), **options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="alexnet,vgg16,resnet50")
    parser.add_argument("--widths", default="1024,2048,4096,8192")
    args = parser.parse_args()
    builders = {"alexnet": (alexnet, 224), "vgg16": (vgg16, 224), "resnet50": (ResNet50Like, 224)}
    print("model      params      removed  analysis  ranking  surgery  verify   total (s)")
    for name in args.models.split(","):
        build, hw = builders[name]
        model = export(build(), hw)
        start = time.perf_counter()
        result = prune_half(model)
        total = time.perf_counter() - start
        t = result.timings
        print(f"{name:9s} {result.before.params:>11,} {len(result.removals):>8,} {t['analysis']:9.2f} "
              f"{t['scoring']:8.2f} {t['surgery']:8.2f} {t['verify']:7.2f} {total:8.2f}", flush=True)
    print("\nranking one FC group by half, against its width (verification off):")
    previous = None
    for width in map(int, args.widths.split(",")):
        result = prune_half(export(mlp(width), 16), layers=["2"], verify=False)
        seconds = result.timings["scoring"]
        growth = "" if previous is None else f"  x{seconds / previous:.2f} for x2 width"
        print(f"  width {width:5d}: {len(result.removals):5d} removals in {seconds:.3f} s{growth}", flush=True)
        previous = seconds


if __name__ == "__main__":
    main()
