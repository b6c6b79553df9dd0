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

import os
import traceback
import warnings
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rewriter.calibrate.images import IMAGE_EXTENSIONS, ImageOptions, image_plan, read_image, require_pillow
from rewriter.calibrate.inputs import InputSpec, Sample, SampleChecker
from rewriter.calibrate.loaders import LOADER_PATTERN, import_loader
from rewriter.calibrate.messages import quoted_names, short_message
from rewriter.errors import SourceLoc, UserError

__all__ = ["CalibrationData", "MAX_UNSIZED_SAMPLES", "open_data"]

#: Most samples counted from a source that does not say its size (a generator) when no subset is
#: asked: beyond it the source is taken for one that never ends.
MAX_UNSIZED_SAMPLES = 100_000

_KIND_OF_SUFFIX = {".npy": "npy", ".npz": "npz", **{ext: "image" for ext in IMAGE_EXTENSIONS}}


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
        A source of unknown size (a generator) is not counted for a subset: it gives
        its first ``subset_size`` samples, as the original tool does without
        ``shuffle_data``, so a loader that never ends stops there. Without a subset it is
        counted first (one extra pass of the loader, at most ``MAX_UNSIZED_SAMPLES``).

        Raises:
            UserError: ``subset_size`` is not positive, the source is empty, or a source of
                unknown size goes on past ``MAX_UNSIZED_SAMPLES`` with no subset asked.
        """
        if subset_size is not None and subset_size <= 0:
            raise UserError(f"the calibration subset size must be positive, got {subset_size}")
        total = self._count(at_most=subset_size)
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

    def _count(self, at_most: int | None = None) -> int:
        """The number of samples; a source of unknown size may stop counting at ``at_most``."""
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

    def _count(self, at_most: int | None = None) -> int:
        if self._size is not None:
            return self._size
        if self._one_shot:
            raise UserError(f"{self.label} is a one-shot iterator: it can be read once, so its samples "
                            "cannot be counted or subset. Pass a list, or a function returning a fresh "
                            "iterable of samples.")
        limit = MAX_UNSIZED_SAMPLES if at_most is None else at_most
        count = 0
        for _ in self._pull():
            if count == limit:  # more than the limit: the generator is closed unread
                if at_most is not None:
                    return at_most
                raise UserError(f"{self.label} gave more than {MAX_UNSIZED_SAMPLES:,} samples without ending "
                                "(a loader that never stops?); pass --subset-size to take its first N samples, "
                                "or make it finite")
            count += 1
        self._size = count
        return count

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

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> Literal[False]:
        if exc is None or self.label is None or isinstance(exc, (UserError, KeyboardInterrupt)):
            return False
        if not isinstance(exc, Exception):
            return False
        frames = traceback.extract_tb(tb)
        at = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
        raise UserError(f"the calibration loader {self.label} raised "
                        f"{type(exc).__name__}{at}: {short_message(exc)}") from exc


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
        one_shot = iter(source) is source
        return _IterableData(inputs, lambda: source, "calibration data", _Guard(None), one_shot=one_shot)
    raise UserError(f"calibration data of type {type(source).__name__} is not supported; give a folder, "
                    "a loader 'module:function', or a list of sample dicts")


def _open_path_or_loader(text: str, inputs: Sequence[InputSpec],
                         image_options: ImageOptions | None) -> CalibrationData:
    path = Path(text)
    if path.is_dir():
        return _open_folder(path, inputs, image_options)
    match = LOADER_PATTERN.match(text)
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
    found: list[Path] = []
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
    plan = image_plan(image_options or ImageOptions(), single)
    require_pillow()  # fail now, not at the first sample
    return lambda path: {single.name: read_image(path, plan)}


def _single_input(inputs: Sequence[InputSpec], kind: str) -> InputSpec:
    if len(inputs) != 1:
        what = ".npy files" if kind == "npy" else "images"
        raise UserError(f"a folder of {what} feeds single-input models; this model has inputs "
                        f"{quoted_names(s.name for s in inputs)}: use .npz files keyed by input name, or a loader")
    return inputs[0]


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise UserError(f"cannot read the .npy file ({short_message(e)}); replace or remove it.",
                        SourceLoc(str(path))) from None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise UserError(f"cannot read the .npz file ({short_message(e)}); replace or remove it.",
                        SourceLoc(str(path))) from None


# ----------------------------------------------------------------------------- loaders


def _open_loader(module: str, function: str, inputs: Sequence[InputSpec]) -> CalibrationData:
    label = f"{module}:{function}"
    return _from_loader_result(import_loader(module, function), inputs, f"loader {label}", _Guard(label))


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
