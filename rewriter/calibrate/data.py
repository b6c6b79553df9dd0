"""Calibration data sources: where the samples come from, checked against the model's inputs.

A calibration sample is a ``dict`` of input name -> array, each array WITH its
batch dimension (usually 1). ``open_data`` turns what the user points at into a
``CalibrationData``:

- a folder of ``.npy`` files (single-input models; one sample per file, the
  batch dimension added when the file's rank is one less than the input's);
- a folder of ``.npz`` files, each keyed by input name;
- a folder of images (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``; needs pillow),
  preprocessed as ``ImageOptions`` say;
- a loader ``"module:function"`` or ``"path/to/file.py:function"``: a function
  called with no arguments that returns an iterable of sample dicts;
- (Python API) a list or other sequence of dicts, any re-iterable of dicts, a
  function returning one, or a one-shot iterator (readable once: no subsets).

Folders are searched recursively (ImageNet-style class subfolders work) and
read in sorted order of their relative paths, one file at a time: a folder is
never loaded whole. Every sample is checked as it is read; a ``UserError``
names the file (or the loader and sample number) and the input.

Example:
    >>> data = open_data("calib/", model_inputs(model))          # doctest: +SKIP
    >>> ids = data.select(300, seed=0)                           # doctest: +SKIP
    >>> for sample in data.iter_samples(ids): ...                # doctest: +SKIP
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import re
import sys
import traceback
import warnings
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import onnx

from rewriter.errors import SourceLoc, UserError

__all__ = [
    "IMAGE_EXTENSIONS",
    "CalibrationData",
    "ImageOptions",
    "InputSpec",
    "Sample",
    "SampleChecker",
    "model_inputs",
    "open_data",
]

Dim = Union[int, str, None]
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
_KIND_OF_SUFFIX = {".npy": "npy", ".npz": "npz", **{ext: "image" for ext in IMAGE_EXTENSIONS}}
_LOADER_RE = re.compile(r"^(?P<module>.+):(?P<function>[A-Za-z_][A-Za-z0-9_]*)$")


# ----------------------------------------------------------------------------- model inputs


@dataclass(frozen=True)
class InputSpec:
    """One model input the calibration samples must feed.

    Attributes:
        name: the graph input name.
        dtype: numpy dtype name (``"float32"``, ``"int64"``, ...).
        shape: one entry per axis: an int for a static size, a str for a
            symbolic dimension (``"batch"``), None for an unnamed dynamic one.
    """

    name: str
    dtype: str
    shape: tuple[Dim, ...]

    def __post_init__(self) -> None:
        np.dtype(self.dtype)  # fails early on a dtype name numpy does not know

    @property
    def rank(self) -> int:
        return len(self.shape)

    def shape_text(self) -> str:
        return "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"


def model_inputs(model: onnx.ModelProto) -> list[InputSpec]:
    """The inputs a sample must feed: graph inputs that are not initializers, in graph order.

    Raises:
        UserError: an input is not a tensor (sequences, maps, optionals).
    """
    constants = {t.name for t in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in constants:
            continue  # an initializer listed as input is an overridable default, not data
        if value.type.WhichOneof("value") != "tensor_type":
            raise UserError(f"model input {value.name!r} is not a tensor; calibration feeds tensor inputs only.")
        tensor = value.type.tensor_type
        if tensor.elem_type == onnx.TensorProto.UNDEFINED:
            raise UserError(f"model input {value.name!r} has no element type; re-export the model.")
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
        shape = tuple(_dim(d) for d in tensor.shape.dim) if tensor.HasField("shape") else ()
        specs.append(InputSpec(value.name, dtype, shape))
    return specs


def _dim(d: onnx.TensorShapeProto.Dimension) -> Dim:
    if d.HasField("dim_value"):
        return int(d.dim_value)
    if d.HasField("dim_param") and d.dim_param:
        return d.dim_param
    return None


# ----------------------------------------------------------------------------- image options


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
class _ImagePlan:
    """ImageOptions resolved against one input: every choice made."""

    options: ImageOptions
    layout: str
    channels: int
    resize: tuple[int, int] | None
    shorter_side: int | None
    crop: tuple[int, int] | None
    dtype: np.dtype


def _image_plan(options: ImageOptions, spec: InputSpec) -> _ImagePlan:
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
    return _ImagePlan(options, layout, channels, resize, options.shorter_side, crop, dtype)


def _guess_layout(shape: tuple[Dim, ...]) -> str:
    if shape[1] in (1, 3):
        return "NCHW"
    if shape[3] in (1, 3):
        return "NHWC"
    return "NCHW"


def _read_image(path: Path, plan: _ImagePlan) -> np.ndarray:
    image_module = _pillow()
    try:
        with image_module.open(path) as img:
            img = img.convert("L" if plan.channels == 1 else "RGB")
            img = _resize(img, plan, image_module)
            img = _center_crop(img, plan.crop, path)
            pixels = np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, image_module.DecompressionBombError) as e:
        raise UserError(f"cannot read the image ({_short(e)}); replace or remove the file.",
                        SourceLoc(str(path))) from None
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if plan.options.channel_order == "BGR":
        pixels = pixels[:, :, ::-1]
    return _to_tensor(pixels, plan)


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise UserError("reading images needs pillow: pip install pillow "
                        "(or convert the images to .npy files).") from None
    return Image


def _resize(img: Any, plan: _ImagePlan, image_module: Any) -> Any:
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


def _to_tensor(pixels: np.ndarray, plan: _ImagePlan) -> np.ndarray:
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


# ----------------------------------------------------------------------------- samples and checks


class Sample(dict):
    """One checked sample: input name -> array (with batch axis), plus where it came from.

    ``source`` names the file, or the loader and sample number, for error messages.
    """

    source: str = ""


class SampleChecker:
    """Checks raw samples against the model inputs and converts them; warns about casts once.

    Used by every ``CalibrationData`` and by the collector for samples given directly.
    """

    def __init__(self, inputs: Sequence[InputSpec]) -> None:
        self.inputs = tuple(inputs)
        self.names = {spec.name for spec in self.inputs}
        self._warned: set[tuple[str, str]] = set()

    def check(self, raw: object, where: str, loc: SourceLoc | None = None) -> Sample:
        """The sample as a ``Sample`` of arrays matching the inputs (batch axis added, casts done).

        Raises:
            UserError: naming ``loc`` (a file) or ``where`` and the input at fault.
        """
        if not isinstance(raw, Mapping):
            raise _error(f"a sample must be a dict of input name -> array, got {type(raw).__name__}", where, loc)
        missing = [spec.name for spec in self.inputs if spec.name not in raw]
        if missing:
            have = ", ".join(map(repr, sorted(map(str, raw)))) or "nothing"
            extra = [str(k) for k in raw if k not in self.names]
            close = difflib.get_close_matches(missing[0], extra, n=1)
            hint = f"; is {close[0]!r} meant to be {missing[0]!r}?" if close else ""
            raise _error(f"missing model input {_names(missing)} (the sample has {have}){hint}", where, loc)
        extra = sorted(str(k) for k in raw if k not in self.names)
        if extra:
            raise _error(f"{_names(extra)} is not a model input (the model takes "
                         f"{_names([s.name for s in self.inputs])}){_hint(extra, self.names)}", where, loc)
        sample = Sample((spec.name, self._array(raw[spec.name], spec, where, loc)) for spec in self.inputs)
        sample.source = where
        return sample

    def _array(self, value: object, spec: InputSpec, where: str, loc: SourceLoc | None) -> np.ndarray:
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as e:
            raise _error(f"input {spec.name!r}: not an array ({_short(e)})", where, loc) from None
        arr = self._shape(arr, spec, where, loc)
        _check_finite(arr, spec, where, loc, "")
        cast = self._dtype(arr, spec, where, loc)
        if cast is not arr:
            _check_finite(cast, spec, where, loc, f" after the cast to {spec.dtype} (beyond its range)")
        return cast

    @staticmethod
    def _shape(arr: np.ndarray, spec: InputSpec, where: str, loc: SourceLoc | None) -> np.ndarray:
        if arr.ndim == spec.rank - 1:
            arr = arr[None]  # saved without the batch axis
        if arr.ndim != spec.rank:
            raise _error(f"input {spec.name!r} expects rank {spec.rank} {spec.shape_text()} (or rank "
                         f"{spec.rank - 1} without the batch axis), got shape {tuple(arr.shape)}", where, loc)
        for axis, (want, got) in enumerate(zip(spec.shape, arr.shape)):
            if isinstance(want, int) and want != got:
                raise _error(f"input {spec.name!r} expects shape {spec.shape_text()}, got {tuple(arr.shape)} "
                             f"(axis {axis} must be {want})", where, loc)
        return arr

    def _dtype(self, arr: np.ndarray, spec: InputSpec, where: str, loc: SourceLoc | None) -> np.ndarray:
        want = np.dtype(spec.dtype)
        if arr.dtype == want:
            return arr
        if (_is_float(arr.dtype) and _is_float(want)) or (arr.dtype.kind in "iu" and want.kind in "iu"
                                                           and _fits(arr, want)):
            self._warn_cast(arr.dtype, want, spec, where)
            with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported as inf just after
                return arr.astype(want)
        raise _error(f"input {spec.name!r} has dtype {want.name} in the model, the sample has "
                     f"{arr.dtype.name}; convert the data (only float<->float and lossless int<->int "
                     "casts are done automatically)", where, loc)

    def _warn_cast(self, got: np.dtype, want: np.dtype, spec: InputSpec, where: str) -> None:
        key = (spec.name, got.name)
        if key in self._warned:
            return
        self._warned.add(key)
        warnings.warn(f"calibration input {spec.name!r}: casting {got.name} samples to the model's "
                      f"{want.name} (first seen in {where}); said once per input.", UserWarning, stacklevel=4)


def _check_finite(arr: np.ndarray, spec: InputSpec, where: str, loc: SourceLoc | None, when: str) -> None:
    if (_is_float(arr.dtype) or arr.dtype.kind == "c") and not np.isfinite(arr).all():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise _error(f"input {spec.name!r} has {bad} NaN or inf value(s){when}; the quantizer cannot "
                     "calibrate on them: fix the sample or leave it out.", where, loc)


def _is_float(dtype: np.dtype) -> bool:
    # ml_dtypes' bfloat16/float8 types (registered by onnx) have kind "V".
    return dtype.kind == "f" or (dtype.kind == "V" and dtype.name.startswith(("float", "bfloat")))


def _fits(arr: np.ndarray, want: np.dtype) -> bool:
    if arr.size == 0:
        return True
    info = np.iinfo(want)
    return bool(arr.min() >= info.min and arr.max() <= info.max)


def _error(message: str, where: str, loc: SourceLoc | None) -> UserError:
    return UserError(message, loc) if loc is not None else UserError(f"{where}: {message}")


def _names(names: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _hint(unknown: Sequence[str], known: Iterable[object]) -> str:
    close = difflib.get_close_matches(str(unknown[0]), [str(k) for k in known], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _short(e: BaseException, limit: int = 200) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------- data sources


class CalibrationData(ABC):
    """A source of checked calibration samples, read lazily.

    Sample ids are 0-based positions in the source's order (sorted relative
    paths for a folder). ``select`` picks a seeded subset of them and
    ``iter_samples`` reads those samples one at a time.
    """

    def __init__(self, inputs: Sequence[InputSpec], label: str) -> None:
        self.inputs = tuple(inputs)
        self.label = label
        self._checker = SampleChecker(self.inputs)

    @property
    @abstractmethod
    def size(self) -> int | None:
        """The number of samples, or None while unknown (a loader that returns a generator)."""

    def __len__(self) -> int:
        if self.size is None:
            raise TypeError(f"{self.label}: the number of samples is not known before reading them")
        return self.size

    def select(self, subset_size: int | None, seed: int) -> list[int]:
        """A seeded, deterministic subset of sample ids, in increasing order.

        ``numpy.random.default_rng(seed).choice`` without replacement over the
        ids; ``subset_size`` None or at least the number of samples gives all.
        A source of unknown size is counted first (one extra pass of the loader).

        Raises:
            UserError: ``subset_size`` is not positive, or the source is empty.
        """
        if subset_size is not None and subset_size <= 0:
            raise UserError(f"the calibration subset size must be positive, got {subset_size}")
        total = self._count()
        if total == 0:
            raise UserError(f"{self.label}: the calibration data has no samples")
        if subset_size is None or subset_size >= total:
            return list(range(total))
        chosen = np.random.default_rng(seed).choice(total, size=subset_size, replace=False)
        return sorted(int(i) for i in chosen)

    def iter_samples(self, ids: Sequence[int] | None = None) -> Iterator[Sample]:
        """Read, check and yield the samples ``ids`` (all when None), in increasing id order.

        Raises:
            UserError: a sample is unreadable or does not fit the model's inputs.
        """
        wanted = None if ids is None else sorted(set(int(i) for i in ids))
        for where, loc, raw in self._read(wanted):
            yield self._checker.check(raw, where, loc)

    def sample_name(self, sample_id: int) -> str:
        """Where sample ``sample_id`` comes from (a file path, or the source and number), for reports."""
        return f"{self.label}, sample {sample_id}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label!r}, {self.size if self.size is not None else '?'} samples>"

    def _count(self) -> int:
        assert self.size is not None
        return self.size

    @abstractmethod
    def _read(self, ids: list[int] | None) -> Iterator[tuple[str, SourceLoc | None, object]]:
        """Yield (where, loc, raw sample) for ``ids`` in order (all when None)."""


def _check_ids(ids: list[int], total: int, label: str) -> None:
    if ids and (ids[0] < 0 or ids[-1] >= total):
        raise ValueError(f"{label}: sample ids must be in 0..{total - 1}, got {ids[0]}..{ids[-1]}")


class _FileData(CalibrationData):
    """A folder of files, one sample per file, read one at a time."""

    def __init__(self, inputs: Sequence[InputSpec], root: Path, files: list[Path],
                 reader: Callable[[Path], Mapping[str, object]]) -> None:
        super().__init__(inputs, str(root))
        self.root = root
        self.files = files
        self._reader = reader

    @property
    def size(self) -> int:
        return len(self.files)

    def sample_name(self, sample_id: int) -> str:
        return str(self.files[sample_id])

    def _read(self, ids: list[int] | None) -> Iterator[tuple[str, SourceLoc | None, object]]:
        ids = list(range(len(self.files))) if ids is None else ids
        _check_ids(ids, len(self.files), self.label)
        for i in ids:
            path = self.files[i]
            yield str(path), SourceLoc(str(path)), self._reader(path)


class _SequenceData(CalibrationData):
    """A sequence with random access (a list of dicts, or a lazy dataset with ``__getitem__``)."""

    def __init__(self, inputs: Sequence[InputSpec], items: Sequence[object], label: str,
                 guard: _Guard) -> None:
        super().__init__(inputs, label)
        self._items = items
        self._guard = guard

    @property
    def size(self) -> int:
        return len(self._items)

    def _read(self, ids: list[int] | None) -> Iterator[tuple[str, SourceLoc | None, object]]:
        ids = list(range(len(self._items))) if ids is None else ids
        _check_ids(ids, len(self._items), self.label)
        for i in ids:
            with self._guard:
                raw = self._items[i]
            yield f"{self.label}, sample {i}", None, raw


class _IterableData(CalibrationData):
    """Samples from iterating: ``factory`` gives a fresh iterable per pass, or the one-shot iterator."""

    def __init__(self, inputs: Sequence[InputSpec], factory: Callable[[], Iterable[object]], label: str,
                 guard: _Guard, one_shot: bool = False) -> None:
        super().__init__(inputs, label)
        self._factory = factory
        self._guard = guard
        self._one_shot = one_shot
        self._passes = 0
        self._size: int | None = None

    @property
    def size(self) -> int | None:
        return self._size

    def _count(self) -> int:
        if self._size is None:
            if self._one_shot:
                raise UserError(f"{self.label} is a one-shot iterator: it can be read once, so its samples "
                                "cannot be counted or subset. Pass a list, or a function returning a fresh "
                                "iterable of samples.")
            self._size = sum(1 for _ in self._pull())
        return self._size

    def _read(self, ids: list[int] | None) -> Iterator[tuple[str, SourceLoc | None, object]]:
        wanted = None if ids is None else iter(ids)
        target = None if wanted is None else next(wanted, None)
        if wanted is not None and target is None:
            return
        count = 0
        for i, raw in enumerate(self._pull()):
            count = i + 1
            if target is not None and i != target:
                continue
            yield f"{self.label}, sample {i}", None, raw
            if wanted is not None:
                target = next(wanted, None)
                if target is None:
                    return  # stop early: the rest would be read for nothing
        if self._size is None:
            self._size = count
        if target is not None:
            raise ValueError(f"{self.label}: sample id {target} is past the last sample ({count - 1})")

    def _pull(self) -> Iterator[object]:
        if self._one_shot and self._passes:
            raise UserError(f"{self.label} is a one-shot iterator and was already read; pass a list, or a "
                            "function returning a fresh iterable, to read the samples more than once.")
        self._passes += 1
        with self._guard:
            iterator = iter(self._factory())
        while True:
            with self._guard:
                try:
                    item = next(iterator)
                except StopIteration:
                    return
            yield item


class _Guard:
    """Turns exceptions raised by a user's loader code into a UserError naming the loader.

    The API's own iterables are not guarded: a Python caller wants their traceback.
    """

    def __init__(self, label: str | None) -> None:
        self.label = label

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or self.label is None or isinstance(exc, (UserError, KeyboardInterrupt)):
            return False
        if not isinstance(exc, Exception):
            return False
        frames = traceback.extract_tb(tb)
        at = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
        raise UserError(f"the calibration loader {self.label} raised "
                        f"{type(exc).__name__}{at}: {_short(exc)}") from exc


# ----------------------------------------------------------------------------- opening a source


def open_data(source: object, inputs: Sequence[InputSpec], *,
              image_options: ImageOptions | None = None) -> CalibrationData:
    """Open a calibration data source for a model with ``inputs``.

    Args:
        source: a folder path (of .npy, .npz or image files), a loader string
            ``"module:function"`` / ``"path/file.py:function"``, or (API) a
            sequence or iterable of sample dicts, or a function returning one.
        inputs: the model inputs, from ``model_inputs(model)``.
        image_options: preprocessing for an image folder (ignored otherwise).

    Returns:
        The source; samples are read and checked when iterated.

    Raises:
        UserError: the folder is missing, empty or mixes file kinds, the
            loader cannot be imported, or the source is of no known kind.
    """
    if not inputs:
        raise UserError("the model has no inputs to feed calibration data to")
    if isinstance(source, (str, os.PathLike)):
        return _open_path_or_loader(os.fspath(source), inputs, image_options)
    if isinstance(source, Mapping):
        raise UserError("the calibration data is a single dict; pass a list (or iterable) of sample dicts")
    if callable(source):
        label = f"loader {getattr(source, '__qualname__', repr(source))}"
        return _from_loader_result(source, inputs, label, _Guard(None))
    if isinstance(source, Sequence):
        return _SequenceData(inputs, source, "calibration data", _Guard(None))
    if isinstance(source, Iterable):
        one_shot = iter(source) is source  # type: ignore[comparison-overlap]
        return _IterableData(inputs, lambda: source, "calibration data", _Guard(None), one_shot=one_shot)
    raise UserError(f"calibration data of type {type(source).__name__} is not supported; give a folder, "
                    "a loader 'module:function', or a list of sample dicts")


def _open_path_or_loader(text: str, inputs: Sequence[InputSpec],
                         image_options: ImageOptions | None) -> CalibrationData:
    path = Path(text)
    if path.is_dir():
        return _open_folder(path, inputs, image_options)
    match = _LOADER_RE.match(text)
    if match and not path.exists():
        return _open_loader(match["module"], match["function"], inputs)
    if path.exists():
        raise UserError(f"{path}: calibration data must be a folder of .npy, .npz or image files "
                        "(or a loader 'module:function'), not a single file")
    raise UserError(f"{path}: no such calibration data folder (a loader is written 'module:function' "
                    "or 'path/to/file.py:function')")


def _open_folder(root: Path, inputs: Sequence[InputSpec], image_options: ImageOptions | None) -> CalibrationData:
    by_kind: dict[str, list[Path]] = {}
    ignored: list[Path] = []
    for path in _walk(root):
        kind = _KIND_OF_SUFFIX.get(path.suffix.lower())
        (by_kind.setdefault(kind, []) if kind else ignored).append(path)
    if ignored:
        shown = ", ".join(str(p.relative_to(root)) for p in ignored[:3])
        warnings.warn(f"{root}: ignoring {len(ignored)} file(s) that are not .npy, .npz or images ({shown}"
                      f"{', ...' if len(ignored) > 3 else ''})", UserWarning, stacklevel=3)
    if not by_kind:
        raise UserError(f"{root}: the folder has no calibration files (.npy, .npz, "
                        f"{', '.join(IMAGE_EXTENSIONS)})")
    if len(by_kind) > 1:
        examples = "; ".join(f"{kind}: {files[0].relative_to(root)}" for kind, files in sorted(by_kind.items()))
        raise UserError(f"{root}: the folder mixes kinds of calibration files ({examples}); "
                        "keep one kind per folder")
    kind, files = next(iter(by_kind.items()))
    return _FileData(inputs, root, files, _reader(kind, inputs, image_options))


def _walk(root: Path) -> list[Path]:
    """Files under root, hidden ones skipped, sorted by relative path (the same on every OS)."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(folder, n) for n in names if not n.startswith("."))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _reader(kind: str, inputs: Sequence[InputSpec],
            image_options: ImageOptions | None) -> Callable[[Path], Mapping[str, object]]:
    if kind == "npz":
        return _read_npz
    single = _single_input(inputs, kind)
    if kind == "npy":
        return lambda path: {single.name: _read_npy(path)}
    plan = _image_plan(image_options or ImageOptions(), single)
    _pillow()  # fail now, not at the first sample
    return lambda path: {single.name: _read_image(path, plan)}


def _single_input(inputs: Sequence[InputSpec], kind: str) -> InputSpec:
    if len(inputs) != 1:
        what = ".npy files" if kind == "npy" else "images"
        raise UserError(f"a folder of {what} feeds single-input models; this model has inputs "
                        f"{_names(s.name for s in inputs)}: use .npz files keyed by input name, or a loader")
    return inputs[0]


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise UserError(f"cannot read the .npy file ({_short(e)}); replace or remove it.",
                        SourceLoc(str(path))) from None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise UserError(f"cannot read the .npz file ({_short(e)}); replace or remove it.",
                        SourceLoc(str(path))) from None


# ----------------------------------------------------------------------------- loaders


def _open_loader(module: str, function: str, inputs: Sequence[InputSpec]) -> CalibrationData:
    label = f"{module}:{function}"
    loaded = _import_loader_module(module, label)
    if not hasattr(loaded, function):
        public = [n for n in dir(loaded) if not n.startswith("_")]
        raise UserError(f"calibration loader {label}: the module has no {function!r}"
                        f"{_hint([function], public)}")
    func = getattr(loaded, function)
    if not callable(func):
        raise UserError(f"calibration loader {label}: {function!r} is not a function")
    return _from_loader_result(func, inputs, f"loader {label}", _Guard(label))


def _import_loader_module(module: str, label: str) -> Any:
    is_file = module.endswith(".py") or "/" in module or os.sep in module
    try:
        if is_file:
            return _import_file(Path(module), label)
        # Like `python -m`, let modules in the working directory be found.
        sys.path.insert(0, os.getcwd())
        try:
            return importlib.import_module(module)
        finally:
            sys.path.remove(os.getcwd())
    except UserError:
        raise
    except Exception as e:  # the user's module failed while importing: report it as theirs
        raise UserError(f"calibration loader {label}: cannot import {module!r} "
                        f"({type(e).__name__}: {_short(e)})") from e


def _import_file(path: Path, label: str) -> Any:
    if not path.is_file():
        raise UserError(f"calibration loader {label}: no such file {path}")
    name = f"_rewriter_loader_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"calibration loader {label}: {path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _from_loader_result(func: Callable[[], object], inputs: Sequence[InputSpec], label: str,
                        guard: _Guard) -> CalibrationData:
    with guard:
        result = func()
    if isinstance(result, Mapping):
        raise UserError(f"{label} returned a single dict; return a list (or iterable) of sample dicts")
    if isinstance(result, (str, bytes)) or not isinstance(result, Iterable):
        raise UserError(f"{label} returned {type(result).__name__}; return a list (or iterable) of sample dicts")
    if isinstance(result, Sequence):
        return _SequenceData(inputs, result, label, guard)
    if iter(result) is result:
        # A generator: call the function again for every pass (the first result is used first).
        first: list[Iterable[object]] = [result]

        def fresh() -> Iterable[object]:
            return first.pop() if first else func()  # type: ignore[return-value]

        return _IterableData(inputs, fresh, label, guard)
    return _IterableData(inputs, lambda: result, label, guard)
