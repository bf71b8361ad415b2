"""A YOLO-style detector and a U-Net-style segmenter, built in torch and exported to ONNX.

API::

    export(name, *, exporter="torchscript" | "dynamo") -> onnx.ModelProto   # BN kept
    build_torch(name) -> torch.nn.Module
    NAMES                # ["detector", "segmenter"]
    INPUT_CHW            # (3, 64, 64)

``detector`` (YOLOv8-like, about 0.2 M parameters): a backbone of strided Conv-BN-SiLU
layers and C2f blocks (a 1x1 conv split in two halves by ``chunk``, bottlenecks on the
second, everything concatenated), an SPPF block (three chained 5x5 max pools,
concatenated), a PAN neck (nearest 2x ``Upsample`` as Resize, skip Concats, strided convs)
and a decoupled head per level (box branch ending in ``4 * REG_MAX`` channels, class branch
in ``CLASSES``), whose outputs are reshaped to ``[N, no, H * W]`` and concatenated over the
three levels; boxes are decoded with a distribution-focal (DFL) softmax over a fixed axis
and a fixed 1x1 conv, then by constant anchors and strides; classes go through a sigmoid.
Output ``output``: ``[batch, 4 + CLASSES, 84]`` (84 anchors for a 64x64 input).

``segmenter`` (U-Net-like): two encoder stages of double Conv-BN-ReLU with max pooling, a
bottleneck, a decoder with a ConvTranspose upsampling and a bilinear ``Upsample`` (Resize),
skip Concats, and a 1x1 conv to ``CLASSES`` maps. Output ``output``: ``[batch, CLASSES, 64, 64]``.

Input ``input``: ``[batch, 3, 64, 64]``, dynamic batch. Exports use tests.zoo.exported's
exporters and are cached per process (each call returns a fresh copy).
"""

from __future__ import annotations

import functools

import onnx
import torch
import torch.nn as nn

from .exported import _export_dynamo, _export_torchscript, seeded

__all__ = ["NAMES", "INPUT_CHW", "CLASSES", "REG_MAX", "export", "build_torch"]

INPUT_CHW = (3, 64, 64)
CLASSES = 4
REG_MAX = 8
STRIDES = (8, 16, 32)


class ConvBnAct(nn.Module):
    def __init__(self, cin: int, cout: int, k: int = 1, s: int = 1, act: nn.Module | None = None):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = act if act is not None else nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


# ------------------------------------------------------------------------------------ detector
class Bottleneck(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.cv1, self.cv2 = ConvBnAct(c, c, 3), ConvBnAct(c, c, 3)

    def forward(self, x):
        return x + self.cv2(self.cv1(x))


class C2f(nn.Module):
    """1x1 conv to two halves, a bottleneck on the second, all three parts concatenated, 1x1 conv."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.c = cout // 2
        self.cv1 = ConvBnAct(cin, 2 * self.c)
        self.m = Bottleneck(self.c)
        self.cv2 = ConvBnAct(3 * self.c, cout)

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        y.append(self.m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        hidden = cin // 2
        self.cv1, self.cv2 = ConvBnAct(cin, hidden), ConvBnAct(4 * hidden, cout)
        self.m = nn.MaxPool2d(5, 1, 2)

    def forward(self, x):
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class DFL(nn.Module):
    """Expected distance under a softmax over REG_MAX bins: a fixed 1x1 conv with weights 0..REG_MAX-1."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(REG_MAX, 1, 1, bias=False).requires_grad_(False)
        self.conv.weight.data[:] = torch.arange(REG_MAX, dtype=torch.float32).view(1, REG_MAX, 1, 1)

    def forward(self, x):
        b, _, a = x.shape
        return self.conv(x.view(b, 4, REG_MAX, a).transpose(2, 1).softmax(1)).view(b, 4, a)


def _anchors(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor centres [1, 2, A] and strides [1, 1, A] of the three levels, in pixels / stride."""
    points, strides = [], []
    for stride in STRIDES:
        cells = size // stride
        y, x = torch.meshgrid(torch.arange(cells) + 0.5, torch.arange(cells) + 0.5, indexing="ij")
        points.append(torch.stack((x, y)).reshape(2, -1))
        strides.append(torch.full((1, cells * cells), float(stride)))
    return torch.cat(points, 1)[None], torch.cat(strides, 1)[None]


class Detect(nn.Module):
    def __init__(self, channels: tuple[int, ...]):
        super().__init__()
        c2, c3 = max(16, channels[0] // 4, 4 * REG_MAX), max(channels[0], CLASSES)
        self.no = 4 * REG_MAX + CLASSES
        self.box = nn.ModuleList(
            nn.Sequential(ConvBnAct(c, c2, 3), ConvBnAct(c2, c2, 3), nn.Conv2d(c2, 4 * REG_MAX, 1)) for c in channels)
        self.cls = nn.ModuleList(
            nn.Sequential(ConvBnAct(c, c3, 3), ConvBnAct(c3, c3, 3), nn.Conv2d(c3, CLASSES, 1)) for c in channels)
        self.dfl = DFL()
        anchors, strides = _anchors(INPUT_CHW[1])
        self.register_buffer("anchors", anchors)
        self.register_buffer("strides", strides)

    def forward(self, levels):
        b = levels[0].shape[0]
        x = torch.cat([torch.cat((box(f), cls(f)), 1).view(b, self.no, -1)
                       for f, box, cls in zip(levels, self.box, self.cls)], 2)
        distance, scores = x.split((4 * REG_MAX, CLASSES), 1)
        lt, rb = self.dfl(distance).chunk(2, 1)
        top_left, bottom_right = self.anchors - lt, self.anchors + rb
        boxes = torch.cat(((top_left + bottom_right) / 2, bottom_right - top_left), 1) * self.strides
        return torch.cat((boxes, scores.sigmoid()), 1)


class Detector(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(ConvBnAct(3, 8, 3, 2), ConvBnAct(8, 16, 3, 2), C2f(16, 16))
        self.p3 = nn.Sequential(ConvBnAct(16, 32, 3, 2), C2f(32, 32))
        self.p4 = nn.Sequential(ConvBnAct(32, 64, 3, 2), C2f(64, 64))
        self.p5 = nn.Sequential(ConvBnAct(64, 64, 3, 2), C2f(64, 64), SPPF(64, 64))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.top4, self.top3 = C2f(128, 32), C2f(64, 16)
        self.down3, self.bottom4 = ConvBnAct(16, 16, 3, 2), C2f(48, 32)
        self.down4, self.bottom5 = ConvBnAct(32, 32, 3, 2), C2f(96, 64)
        self.detect = Detect((16, 32, 64))

    def forward(self, x):
        p3 = self.p3(self.stem(x))
        p4 = self.p4(p3)
        p5 = self.p5(p4)
        h4 = self.top4(torch.cat((self.up(p5), p4), 1))
        o3 = self.top3(torch.cat((self.up(h4), p3), 1))
        o4 = self.bottom4(torch.cat((self.down3(o3), h4), 1))
        o5 = self.bottom5(torch.cat((self.down4(o4), p5), 1))
        return self.detect([o3, o4, o5])


# ----------------------------------------------------------------------------------- segmenter
def _double(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(ConvBnAct(cin, cout, 3, act=nn.ReLU()), ConvBnAct(cout, cout, 3, act=nn.ReLU()))


class Segmenter(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc1, self.enc2, self.middle = _double(3, 8), _double(8, 16), _double(16, 32)
        self.pool = nn.MaxPool2d(2)
        self.up2 = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.dec2 = _double(32, 16)
        self.up1 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.dec1 = _double(24, 8)
        self.head = nn.Conv2d(8, CLASSES, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        m = self.middle(self.pool(e2))
        d2 = self.dec2(torch.cat((self.up2(m), e2), 1))
        d1 = self.dec1(torch.cat((self.up1(d2), e1), 1))
        return self.head(d1)


_BUILDERS = {"detector": (Detector, 200), "segmenter": (Segmenter, 201)}
NAMES: list[str] = list(_BUILDERS)


def build_torch(name: str) -> nn.Module:
    """The seeded, eval-mode module, with BatchNorm statistics that are not the identity."""
    ctor, seed = _BUILDERS[name]
    return seeded(ctor, seed)


@functools.lru_cache(maxsize=None)
def _export_cached(name: str, exporter: str) -> bytes:
    model = build_torch(name)
    x = torch.randn(2, *INPUT_CHW, generator=torch.Generator().manual_seed(0))
    exporters = {"torchscript": _export_torchscript, "dynamo": _export_dynamo}
    proto = exporters[exporter](model, x, False)
    proto.graph.name = name
    return proto.SerializeToString()


def export(name: str, *, exporter: str = "torchscript") -> onnx.ModelProto:
    """Export ``name`` (one of NAMES) with BatchNorm kept; returns a fresh copy."""
    if name not in _BUILDERS:
        raise KeyError(f"unknown model {name!r}; known: {NAMES}")
    return onnx.load_from_string(_export_cached(name, exporter))
