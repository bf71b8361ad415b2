"""Small torch CNNs exported to ONNX with ``torch.onnx.export``.

API::

    export(name, *, exporter="torchscript" | "dynamo", fold_bn: bool) -> onnx.ModelProto
    build_torch(name) -> torch.nn.Module        # the seeded eval-mode module itself
    seeded(ctor, seed) -> torch.nn.Module       # any module built the same way
    input_shape(name) -> (C, H, W)
    NAMES  # small models (fast)
    LARGE  # ["resnet50_like"] -- 25.6 M params, 224x224; use in slow tests only
    resnet50_like() -> onnx.ModelProto           # torchscript, BN not folded

Every exported model has one float32 input ``input`` of shape
``["batch", C, H, W]`` (dynamic batch) and one output ``output`` of shape
``["batch", 10]`` (1000 for resnet50_like). Exports are cached per process
(``functools.lru_cache``); each call returns a fresh copy.

Exporter / BN behaviour (torch 2.13, onnxscript 0.7):

* ``torchscript`` (``dynamo=False``, opset 17, ``training=EVAL``):
  ``fold_bn=True``  -> ``do_constant_folding=True``: the eval peephole fuses every
  Conv->BatchNormalization pair, no BatchNormalization nodes remain.
  ``fold_bn=False`` -> ``do_constant_folding=False``: BatchNormalization nodes kept.
  (``training=PRESERVE`` on an eval module would also keep BN.)  Conv weights of
  folded pairs get anonymous names (``onnx::Conv_43``); unfolded ones keep the
  torch parameter names (``layer1.0.conv1.weight``).  ``F.relu6`` is exported as
  ``Clip`` whose min/max come from ``Constant`` nodes (through ``Cast`` when not
  folding).  IR version 8, no value_info.
* ``dynamo`` (``dynamo=True``): the model comes out at **opset 18** (torchlib's
  native opset; asking for 17 makes the onnxscript version converter fail and
  leave the model at 18 anyway, with a logged traceback).  The exporter's
  default ``optimize=True`` runs onnxscript's rewriter, whose default rules
  include Conv+BatchNormalization fusion, so:
  ``fold_bn=True``  -> default optimize: no BatchNormalization nodes.
  ``fold_bn=False`` -> the same optimizer with the fuse-batchnorm rules removed
  (so the graph is otherwise as clean as the default export): BN kept.
  Quirks: ``torch.flatten`` becomes ``Reshape(allowzero=1)`` with a constant
  shape ``[-1, C*H*W]`` (the channel count is baked in: the pruner must rewrite
  it); ``AdaptiveAvgPool2d(1)`` becomes ``ReduceMean(keepdims=1)`` with an
  ``axes`` *input* ``[-1, -2]`` (negative); ``F.relu6`` becomes ``Clip`` with
  initializer min/max.  IR version 10.  ``value_info`` is populated for every
  intermediate *and for every initializer* (stale after pruning unless updated
  or stripped); the only symbolic dim is ``batch``.  Node names are
  ``node_Conv_25`` / ``node_relu`` style, value names ``getitem_3``, ``conv2d_1``;
  initializers keep the torch parameter names.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
import functools
import io
import logging
import warnings
from typing import Callable

import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["NAMES", "LARGE", "EXPORTERS", "export", "build_torch", "seeded", "input_shape", "resnet50_like"]

NUM_CLASSES = 10
INPUT_CHW = (3, 32, 32)
EXPORTERS = ("torchscript", "dynamo")


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Conv2d(bias=False) + BatchNorm2d as a Sequential with children ``conv`` and ``bn``."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False),
            bn=nn.BatchNorm2d(cout),
        )
    )


# ---------------------------------------------------------------- resnet_blocks
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = _conv_bn(cin, cout, k=1, stride=stride)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


class ResNetBlocks(nn.Module):
    """stem conv-bn-relu, layer1 = 2 identity BasicBlocks, layer2 = 1 BasicBlock with 1x1 projection."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.stem = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(3, width, 3, padding=1, bias=False), bn=nn.BatchNorm2d(width), relu=nn.ReLU()))
        self.layer1 = nn.Sequential(BasicBlock(width, width), BasicBlock(width, width))
        self.layer2 = nn.Sequential(BasicBlock(width, 2 * width, stride=2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, NUM_CLASSES)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ---------------------------------------------------------------- mobilenet_se
class SqueezeExcite(nn.Module):
    def __init__(self, c: int, reduced: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, c, 1)

    def forward(self, x):
        s = F.relu(self.fc1(self.avgpool(x)))
        return x * F.hardsigmoid(self.fc2(s))


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise -> SE(hardsigmoid) -> 1x1 project, + residual."""

    def __init__(self, c: int, expand: int):
        super().__init__()
        hidden = c * expand
        self.expand = _conv_bn(c, hidden, k=1)
        self.depthwise = _conv_bn(hidden, hidden, k=3, groups=hidden)
        self.se = SqueezeExcite(hidden, hidden // 4)
        self.project = _conv_bn(hidden, c, k=1)

    def forward(self, x):
        y = F.relu6(self.expand(x))
        y = F.hardswish(self.depthwise(y))
        y = self.se(y)
        return x + self.project(y)


class MobileNetSE(nn.Module):
    def __init__(self, width: int = 8):
        super().__init__()
        self.stem = _conv_bn(3, width, k=3, stride=2)
        self.block1 = InvertedResidual(width, expand=2)
        self.block2 = InvertedResidual(width, expand=2)
        self.head_conv = _conv_bn(width, 16, k=1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(16, NUM_CLASSES)

    def forward(self, x):
        x = F.hardswish(self.stem(x))
        x = self.block2(self.block1(x))
        x = F.hardswish(self.head_conv(x))
        return self.classifier(torch.flatten(self.avgpool(x), 1))


# ---------------------------------------------------------------- densenet_block
class DenseLayer(nn.Module):
    """conv1x1-bn-relu -> conv3x3-bn-relu producing ``growth`` new channels, concatenated to the input.

    (Post-activation order so that Conv->BN fusion removes every BN when folding.)
    """

    def __init__(self, cin: int, growth: int, bottleneck: int = 8):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, bottleneck, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(bottleneck)
        self.conv2 = nn.Conv2d(bottleneck, growth, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(growth)

    def forward(self, x):
        new = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return torch.cat([x, new], 1)


class DenseNetBlock(nn.Module):
    def __init__(self, width: int = 8, growth: int = 4, layers: int = 3):
        super().__init__()
        self.stem = _conv_bn(3, width, k=3)
        self.dense = nn.Sequential(*[DenseLayer(width + i * growth, growth) for i in range(layers)])
        c = width + layers * growth
        self.transition = _conv_bn(c, 8, k=1)
        self.pool = nn.AvgPool2d(2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(8, NUM_CLASSES)

    def forward(self, x):
        x = self.dense(F.relu(self.stem(x)))
        x = self.pool(F.relu(self.transition(x)))
        return self.classifier(torch.flatten(self.avgpool(x), 1))


# ---------------------------------------------------------------- inception_block
class BasicConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class InceptionBlock(nn.Module):
    """4 parallel branches (1x1 | 1x1-3x3 | 1x1-3x3-3x3 | maxpool-1x1) concatenated."""

    def __init__(self, cin: int = 8):
        super().__init__()
        self.branch1x1 = BasicConv(cin, 4, 1)
        self.branch3x3 = nn.Sequential(BasicConv(cin, 4, 1), BasicConv(4, 6, 3))
        self.branch3x3dbl = nn.Sequential(BasicConv(cin, 2, 1), BasicConv(2, 4, 3), BasicConv(4, 4, 3))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), BasicConv(cin, 4, 1))

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch3x3(x), self.branch3x3dbl(x), self.branch_pool(x)], 1)


class InceptionNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = BasicConv(3, 8, 3)
        self.pool = nn.MaxPool2d(2)
        self.mixed = InceptionBlock(8)
        self.reduce = BasicConv(18, 12, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, NUM_CLASSES)

    def forward(self, x):
        x = self.reduce(self.mixed(self.pool(self.stem(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ---------------------------------------------------------------- grouped_conv
class ResNeXtBlock(nn.Module):
    """1x1 reduce-in -> 3x3 grouped (groups=4) -> 1x1 out, + identity."""

    def __init__(self, c: int = 8, width: int = 16, groups: int = 4):
        super().__init__()
        self.conv_reduce = _conv_bn(c, width, k=1)
        self.conv_grouped = _conv_bn(width, width, k=3, groups=groups)
        self.conv_expand = _conv_bn(width, c, k=1)

    def forward(self, x):
        y = F.relu(self.conv_reduce(x))
        y = F.relu(self.conv_grouped(y))
        return F.relu(x + self.conv_expand(y))


class GroupedConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _conv_bn(3, 8, k=3, stride=2)
        self.block = ResNeXtBlock(8, 16, 4)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, NUM_CLASSES)

    def forward(self, x):
        x = self.block(F.relu(self.stem(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ---------------------------------------------------------------- vgg_flatten
class VGGFlatten(nn.Module):
    """(conv-bn-relu-maxpool) x3 -> Flatten -> Linear -> ReLU -> Dropout -> Linear (VGG-BN style)."""

    def __init__(self):
        super().__init__()
        chans = [3, 8, 16, 16]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, NUM_CLASSES))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


# ---------------------------------------------------------------- shufflenet_v1 / shufflenet_v2
def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """torchvision's channel shuffle: view as [N, groups, C / groups, H, W], swap, flatten back."""
    batch, channels, height, width = x.size()
    x = x.view(batch, groups, channels // groups, height, width)
    return torch.transpose(x, 1, 2).contiguous().view(batch, -1, height, width)


class ShuffleV1Unit(nn.Module):
    """Grouped 1x1 conv -> shuffle -> depthwise 3x3 -> grouped 1x1 conv; Add (stride 1) or Concat
    with an average-pooled shortcut (stride 2)."""

    def __init__(self, cin: int, cout: int, stride: int, groups: int = 2):
        super().__init__()
        mid, self.stride, self.groups = cout // 4, stride, groups
        self.gconv1 = _conv_bn(cin, mid, k=1, groups=groups)
        self.depthwise = _conv_bn(mid, mid, k=3, stride=stride, groups=mid)
        self.gconv2 = _conv_bn(mid, cout - cin if stride == 2 else cout, k=1, groups=groups)

    def forward(self, x):
        y = channel_shuffle(F.relu(self.gconv1(x)), self.groups)
        y = self.gconv2(self.depthwise(y))
        if self.stride == 2:
            return F.relu(torch.cat((F.avg_pool2d(x, 3, 2, 1), y), 1))
        return F.relu(x + y)


class ShuffleNetV1(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _conv_bn(3, 16, k=3)
        self.units = nn.Sequential(ShuffleV1Unit(16, 32, 2), ShuffleV1Unit(32, 32, 1))
        self.fc = nn.Linear(32, NUM_CLASSES)

    def forward(self, x):
        return self.fc(self.units(F.relu(self.stem(x))).mean((2, 3)))


class ShuffleV2Unit(nn.Module):
    """torchvision's InvertedResidual: chunk in two and transform one half (stride 1), or
    transform both branches (stride 2); Concat, then a shuffle of two groups."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        half, self.stride = cout // 2, stride
        if stride == 2:
            self.branch1 = nn.Sequential(_conv_bn(cin, cin, k=3, stride=2, groups=cin), _conv_bn(cin, half, k=1), nn.ReLU())
        self.branch2 = nn.Sequential(
            _conv_bn(cin if stride == 2 else half, half, k=1), nn.ReLU(),
            _conv_bn(half, half, k=3, stride=stride, groups=half), _conv_bn(half, half, k=1), nn.ReLU())

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), 1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), 1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _conv_bn(3, 16, k=3)
        self.units = nn.Sequential(ShuffleV2Unit(16, 32, 2), ShuffleV2Unit(32, 32, 1), ShuffleV2Unit(32, 32, 1))
        self.conv5 = _conv_bn(32, 48, k=1)
        self.fc = nn.Linear(48, NUM_CLASSES)

    def forward(self, x):
        x = F.relu(self.conv5(self.units(F.relu(self.stem(x)))))
        return self.fc(x.mean((2, 3)))


# ---------------------------------------------------------------- resnet50_like
class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50Like(nn.Module):
    """torchvision.models.resnet50 layout (module names match torchvision's)."""

    def __init__(self, layers=(3, 4, 6, 3), num_classes: int = 1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ------------------------------------------------------------------ registry
_BUILDERS: dict[str, tuple[Callable[[], nn.Module], tuple[int, int, int], int]] = {
    # name: (constructor, input CHW, seed)
    "resnet_blocks": (ResNetBlocks, INPUT_CHW, 100),
    "mobilenet_se": (MobileNetSE, INPUT_CHW, 101),
    "densenet_block": (DenseNetBlock, INPUT_CHW, 102),
    "inception_block": (InceptionNet, INPUT_CHW, 103),
    "grouped_conv": (GroupedConvNet, INPUT_CHW, 104),
    "vgg_flatten": (VGGFlatten, INPUT_CHW, 105),
    "resnet50_like": (ResNet50Like, (3, 224, 224), 106),
    "shufflenet_v1": (ShuffleNetV1, INPUT_CHW, 107),
    "shufflenet_v2": (ShuffleNetV2, INPUT_CHW, 108),
}

NAMES: list[str] = ["resnet_blocks", "mobilenet_se", "densenet_block", "inception_block",
                    "grouped_conv", "vgg_flatten", "shufflenet_v1", "shufflenet_v2"]
LARGE: list[str] = ["resnet50_like"]


def input_shape(name: str) -> tuple[int, int, int]:
    return _BUILDERS[name][1]


def build_torch(name: str) -> nn.Module:
    """The seeded, eval-mode torch module (BN with random non-trivial running stats)."""
    ctor, _, seed = _BUILDERS[name]
    return seeded(ctor, seed)


def seeded(ctor: Callable[[], nn.Module], seed: int) -> nn.Module:
    """``ctor()`` built under ``seed``, in eval mode, its BatchNorms given random non-trivial statistics."""
    torch.manual_seed(seed)
    model = ctor()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
    return model.eval()


@contextlib.contextmanager
def _without_bn_fusion():
    """Temporarily drop onnxscript's Conv+BatchNormalization fusion rules from its default rewriter."""
    try:
        import onnxscript.rewriter as rw
        from onnxscript.rewriter.rules.common import _fuse_batchnorm
    except ImportError:  # pragma: no cover - onnxscript layout changed
        yield False
        return
    saved = rw._DEFAULT_REWRITE_RULES
    fuse = set(map(id, _fuse_batchnorm.rules))
    rw._DEFAULT_REWRITE_RULES = tuple(r for r in saved if id(r) not in fuse)
    try:
        yield True
    finally:
        rw._DEFAULT_REWRITE_RULES = saved


def _export_torchscript(model: nn.Module, x: torch.Tensor, fold_bn: bool, dynamic_hw: bool = False) -> onnx.ModelProto:
    f = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_hw else {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), f, dynamo=False, opset_version=17,
            do_constant_folding=fold_bn, training=torch.onnx.TrainingMode.EVAL,
            input_names=["input"], output_names=["output"],
            dynamic_axes={"input": axes, "output": {0: "batch"}},
        )
    return onnx.load_from_string(f.getvalue())


def _export_dynamo(model: nn.Module, x: torch.Tensor, fold_bn: bool) -> onnx.ModelProto:
    ctx = contextlib.nullcontext() if fold_bn else _without_bn_fusion()
    quiet = logging.getLogger("torch.onnx").level
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        with ctx, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            prog = torch.onnx.export(
                model, (x,), dynamo=True, opset_version=18, optimize=True, verbose=False,
                input_names=["input"], output_names=["output"],
                dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=1024)}},
            )
    finally:
        logging.getLogger("torch.onnx").setLevel(quiet)
    return prog.model_proto


@functools.lru_cache(maxsize=None)
def _export_cached(name: str, exporter: str, fold_bn: bool, dynamic_hw: bool = False) -> bytes:
    model = build_torch(name)
    x = torch.randn(2, *input_shape(name), generator=torch.Generator().manual_seed(0))
    if exporter == "torchscript":
        proto = _export_torchscript(model, x, fold_bn, dynamic_hw)
    elif exporter == "dynamo":
        proto = _export_dynamo(model, x, fold_bn)
    else:
        raise ValueError(f"unknown exporter {exporter!r}; expected one of {EXPORTERS}")
    proto.producer_name = f"{proto.producer_name or 'pytorch'} ({exporter}, fold_bn={fold_bn})"
    proto.graph.name = name
    return proto.SerializeToString()


def export(name: str, *, exporter: str = "torchscript", fold_bn: bool, dynamic_hw: bool = False) -> onnx.ModelProto:
    """Export zoo model ``name`` (one of NAMES / LARGE); returns a fresh ModelProto copy.

    ``dynamic_hw`` (torchscript only) also makes the input's height and width symbolic.
    """
    if name not in _BUILDERS:
        raise KeyError(f"unknown exported model {name!r}; known: {NAMES + LARGE}")
    if dynamic_hw and exporter != "torchscript":
        raise ValueError("dynamic_hw is only supported with the torchscript exporter")
    return onnx.load_from_string(_export_cached(name, exporter, bool(fold_bn), dynamic_hw))


def resnet50_like() -> onnx.ModelProto:
    """torchvision-style ResNet-50 (Bottleneck [3,4,6,3], 1000 classes), torchscript, 3x224x224, BN kept."""
    return export("resnet50_like", exporter="torchscript", fold_bn=False)
