"""Training augmentation of image batches: random crop after zero padding, and horizontal flip."""

import torch
import torch.nn.functional as F

from onnxcar.data import Dataset

PAD = 4  # pixels of zero padding around an image before its random crop


def augment(images: torch.Tensor, layout: str, generator: torch.Generator) -> torch.Tensor:
    """Per image: zero-pad by PAD pixels, crop back to size at a random offset, flip horizontally half the time."""
    nchw = images if layout == "NCHW" else images.permute(0, 3, 1, 2)
    n, _, h, w = nchw.shape
    padded = F.pad(nchw, (PAD,) * 4)
    dy, dx = torch.randint(0, 2 * PAD + 1, (2, n, 1, 1), generator=generator)
    flip = torch.rand(n, 1, 1, generator=generator) < 0.5
    rows = dy + torch.arange(h).view(1, h, 1)
    cols = dx + torch.arange(w).view(1, 1, w)
    cols = torch.where(flip, cols.flip(2), cols)
    out = padded[torch.arange(n).view(n, 1, 1), :, rows, cols]  # advanced indices first: N, H, W, C
    return out if layout == "NHWC" else out.permute(0, 3, 1, 2)


def augment_layout(ds: Dataset) -> str | None:
    """NCHW or NHWC for 4-D image data, else None (not images: nothing to augment)."""
    shape = ds.images.shape
    if len(shape) != 4:
        return None
    if not ds.spec.preprocess.passthrough:
        return ds.spec.preprocess.layout
    return "NHWC" if shape[3] in (1, 3) and shape[1] not in (1, 3) else "NCHW"
