"""Pixel transforms: channel-axis detection, resize and centre crop, normalisation."""

import numpy as np
from PIL import Image

from onnxcar.data.spec import Preprocess
from onnxcar.errors import OnnxcarError


def to_nhwc(images: np.ndarray) -> np.ndarray:
    """Stored uint8 images as NHWC.

    Rank 3 is (N, H, W) grayscale. Rank 4 is NHWC when the last axis has 1 or 3
    entries (this wins when both could be channels), else NCHW when axis 1 has.
    """
    if images.ndim == 3:
        return images[..., None]
    if images.ndim == 4:
        if images.shape[3] in (1, 3):
            return images
        if images.shape[1] in (1, 3):
            return images.transpose(0, 2, 3, 1)
    raise OnnxcarError(
        f"cannot tell the channel axis of uint8 images shaped {images.shape}: "
        "expected (N, H, W), (N, H, W, 1|3) or (N, 1|3, H, W)"
    )


def resize_crop(image: Image.Image, pre: Preprocess) -> np.ndarray:
    """One image resized (shorter side, bilinear) and centre-cropped, as HWC uint8."""
    if pre.resize is not None:
        w, h = image.size
        size = (pre.resize, int(pre.resize * h / w)) if w <= h else (int(pre.resize * w / h), pre.resize)
        image = image.resize(size, Image.BILINEAR)
    pixels = np.asarray(image)
    return center_crop(pixels[..., None] if pixels.ndim == 2 else pixels, pre.crop)


def center_crop(pixels: np.ndarray, crop: int | None) -> np.ndarray:
    """Centre ``crop`` x ``crop`` of HWC or NHWC pixels (torchvision's rounding)."""
    if crop is None:
        return pixels
    h, w = pixels.shape[-3:-1]
    if crop > h or crop > w:
        raise OnnxcarError(f"crop {crop} is larger than the {h}x{w} images; resize them first")
    top, left = int(round((h - crop) / 2)), int(round((w - crop) / 2))
    return pixels[..., top : top + crop, left : left + crop, :]


def resize_crop_batch(images: np.ndarray, pre: Preprocess) -> np.ndarray:
    """NHWC uint8 images resized and cropped."""
    if pre.resize is None:
        return center_crop(images, pre.crop)
    return np.stack([resize_crop(Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img), pre) for img in images])


def normalize(images: np.ndarray, pre: Preprocess) -> np.ndarray:
    """NHWC uint8 images scaled, normalised, laid out and cast: the model input."""
    channels = images.shape[-1]
    pixels = images.astype(np.result_type(pre.dtype, np.float32))
    if pre.scale:
        pixels /= 255
    pixels = (pixels - _per_channel(pre.mean, channels, "mean")) / _per_channel(pre.std, channels, "std")
    if pre.layout == "NCHW":
        pixels = pixels.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(pixels, dtype=pre.dtype)


def _per_channel(values: tuple[float, ...], channels: int, name: str) -> np.ndarray:
    if len(set(values)) == 1:
        return np.float32(values[0])
    if len(values) != channels:
        raise OnnxcarError(f"{name} has {len(values)} values but the images have {channels} channel(s)")
    return np.asarray(values, dtype=np.float32)
