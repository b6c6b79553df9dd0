"""Image folders as calibration data: how an image file becomes an input tensor.

``ImageOptions`` hold the user's preprocessing choices; ``image_plan``
resolves them against one rank-4 model input (layout, channels, resize and
crop defaults, dtype) and ``read_image`` applies the plan to one file. Pillow
is imported only when images are read.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rewriter.calibrate.inputs import Dim, InputSpec
from rewriter.calibrate.messages import short_message
from rewriter.errors import SourceLoc, UserError

__all__ = ["IMAGE_EXTENSIONS", "ImageOptions", "ImagePlan", "image_plan", "read_image", "require_pillow"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass(frozen=True)
class ImageOptions:
    """How image files become input tensors.

    The pipeline: decode -> RGB (or grayscale for a 1-channel input) -> resize
    -> center crop -> channel order -> ``(pixel * scale - mean) / std`` ->
    layout -> add the batch axis -> cast to the input's dtype.

    Attributes:
        size: resize to exactly (height, width).
        shorter_side: resize so the shorter side has this length, keeping the
            aspect ratio (the usual "resize 256, crop 224"). Not with ``size``.
        center_crop: crop (height, width) from the center after resizing.
        scale: multiplies the 0..255 pixel values first (1/255 gives 0..1).
        mean: subtracted after scaling; one value or one per channel, in the
            model's channel order.
        std: divides after the mean; one value or one per channel.
        channel_order: ``"RGB"`` or ``"BGR"`` (what the model expects).
        layout: ``"NCHW"`` or ``"NHWC"``; None derives it from the input shape.

    Defaults derived from a static input shape: with neither ``size`` nor
    ``shorter_side`` nor ``center_crop``, images are resized to the input's
    height and width; with ``shorter_side`` and no ``center_crop``, they are
    center-cropped to it. No normalization by default (raw 0..255 values):
    give the ``scale``/``mean``/``std`` the model was trained with.
    """

    size: tuple[int, int] | None = None
    shorter_side: int | None = None
    center_crop: tuple[int, int] | None = None
    scale: float = 1.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    channel_order: str = "RGB"
    layout: str | None = None

    def __post_init__(self) -> None:
        for field, value in (("size", self.size), ("center_crop", self.center_crop)):
            if value is not None and (len(value) != 2 or min(value) <= 0):
                raise UserError(f"image option {field} must be two positive integers (height, width), got {value}")
        if self.shorter_side is not None and self.shorter_side <= 0:
            raise UserError(f"image option shorter_side must be positive, got {self.shorter_side}")
        if self.size is not None and self.shorter_side is not None:
            raise UserError("image options size and shorter_side exclude each other; give one")
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise UserError(f"image option scale must be a positive number, got {self.scale}")
        if not self.std or any(s == 0 for s in self.std):
            raise UserError(f"image option std must be non-zero, got {self.std}")
        if not self.mean:
            raise UserError("image option mean must have one value or one per channel")
        if self.channel_order not in ("RGB", "BGR"):
            raise UserError(f"image option channel_order must be RGB or BGR, got {self.channel_order!r}")
        if self.layout not in (None, "NCHW", "NHWC"):
            raise UserError(f"image option layout must be NCHW or NHWC, got {self.layout!r}")

    @property
    def normalizes(self) -> bool:
        return self.scale != 1.0 or any(self.mean) or any(s != 1.0 for s in self.std)


@dataclass(frozen=True)
class ImagePlan:
    """ImageOptions resolved against one input: every choice made."""

    options: ImageOptions
    layout: str
    channels: int
    resize: tuple[int, int] | None
    shorter_side: int | None
    crop: tuple[int, int] | None
    dtype: np.dtype


def image_plan(options: ImageOptions, spec: InputSpec) -> ImagePlan:
    """Resolve ``options`` against the model input ``spec`` the images feed.

    Raises:
        UserError: the input is not rank 4, has neither 1 nor 3 channels, has a
            dtype images cannot give, or mean/std do not match its channels.
    """
    if spec.rank != 4:
        raise UserError(f"input {spec.name!r} has shape {spec.shape_text()}; images feed rank-4 inputs "
                        "(NCHW or NHWC). Use .npy/.npz files or a loader for this model.")
    layout = options.layout or _guess_layout(spec.shape)
    if layout == "NCHW":
        c_dim, h_dim, w_dim = spec.shape[1], spec.shape[2], spec.shape[3]
    else:
        h_dim, w_dim, c_dim = spec.shape[1], spec.shape[2], spec.shape[3]
    channels = c_dim if isinstance(c_dim, int) else 3
    if channels not in (1, 3):
        raise UserError(f"input {spec.name!r} ({layout} {spec.shape_text()}) has {channels} channels; "
                        "images give 1 (grayscale) or 3 (color). Check the layout option.")
    for field, values in (("mean", options.mean), ("std", options.std)):
        if len(values) not in (1, channels):
            raise UserError(f"image option {field} has {len(values)} values; "
                            f"input {spec.name!r} has {channels} channels")
    dtype = np.dtype(spec.dtype)
    if dtype == np.uint8:
        if options.normalizes:
            raise UserError(f"input {spec.name!r} takes uint8 pixels; scale/mean/std cannot apply to it")
    elif dtype.kind != "f":
        raise UserError(f"input {spec.name!r} has dtype {spec.dtype}; images feed float or uint8 inputs")
    static_hw = (h_dim, w_dim) if isinstance(h_dim, int) and isinstance(w_dim, int) else None
    resize, crop = options.size, options.center_crop
    if resize is None and options.shorter_side is None and crop is None:
        resize = static_hw  # nothing asked: fit the input exactly
    elif options.shorter_side is not None and crop is None:
        crop = static_hw  # "resize N, crop to the input" is the common recipe
    return ImagePlan(options, layout, channels, resize, options.shorter_side, crop, dtype)


def _guess_layout(shape: tuple[Dim, ...]) -> str:
    if shape[1] in (1, 3):
        return "NCHW"
    if shape[3] in (1, 3):
        return "NHWC"
    return "NCHW"


def read_image(path: Path, plan: ImagePlan) -> np.ndarray:
    """The image at ``path`` as the input tensor ``plan`` describes, batch axis included.

    Raises:
        UserError: naming the file, when it cannot be decoded or is smaller than the crop.
    """
    image_module = require_pillow()
    try:
        with image_module.open(path) as img:
            img = img.convert("L" if plan.channels == 1 else "RGB")
            img = _resize(img, plan, image_module)
            img = _center_crop(img, plan.crop, path)
            pixels = np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, image_module.DecompressionBombError) as e:
        raise UserError(f"cannot read the image ({short_message(e)}); replace or remove the file.",
                        SourceLoc(str(path))) from None
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if plan.options.channel_order == "BGR":
        pixels = pixels[:, :, ::-1]
    return _to_tensor(pixels, plan)


def require_pillow() -> Any:
    """Pillow's ``Image`` module.

    Raises:
        UserError: pillow is not installed (saying how to install it).
    """
    try:
        from PIL import Image
    except ImportError:
        raise UserError("reading images needs pillow: pip install pillow "
                        "(or convert the images to .npy files).") from None
    return Image


def _resize(img: Any, plan: ImagePlan, image_module: Any) -> Any:
    if plan.resize is not None:
        h, w = plan.resize
    elif plan.shorter_side is not None:
        ratio = plan.shorter_side / min(img.height, img.width)
        h, w = max(1, round(img.height * ratio)), max(1, round(img.width * ratio))
    else:
        return img
    if (h, w) == (img.height, img.width):
        return img
    return img.resize((w, h), image_module.Resampling.BILINEAR)


def _center_crop(img: Any, crop: tuple[int, int] | None, path: Path) -> Any:
    if crop is None:
        return img
    h, w = crop
    if h > img.height or w > img.width:
        raise UserError(f"the image is {img.height}x{img.width} after resizing, smaller than the "
                        f"{h}x{w} center crop; resize it larger first (size or shorter_side option).",
                        SourceLoc(str(path)))
    top, left = (img.height - h) // 2, (img.width - w) // 2
    return img.crop((left, top, left + w, top + h))


def _to_tensor(pixels: np.ndarray, plan: ImagePlan) -> np.ndarray:
    if plan.dtype == np.uint8:
        x = np.ascontiguousarray(pixels)
    else:
        opts = plan.options
        x = pixels.astype(np.float32) * np.float32(opts.scale)
        x = (x - np.asarray(opts.mean, np.float32)) / np.asarray(opts.std, np.float32)
        x = x.astype(plan.dtype)
    if plan.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None])
