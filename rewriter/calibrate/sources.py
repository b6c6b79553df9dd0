"""Calibration data sources: where the samples come from, checked against the model's inputs.

A calibration sample is a ``dict`` of input name -> array, each array WITH its
batch dimension (usually 1). ``open_data`` turns what the user points at into a
``CalibrationData``:

- stacks: a ``.npy`` file (single-input models), an ``.npz`` file keyed by
  input name, a folder of either (each file a stack), a folder with one
  ``<input>.npy`` per model input, or (Python API) a bare array for a
  single-input model or a dict of input name -> array. ``stacks.stack_layout``
  says how many samples an array holds: an array of the input's rank whose
  first axis is the batch axis is one sample per row, so a (300, 3, 224, 224)
  file is 300 samples, counted, subset and batched one by one. ``.npy`` files
  are memory-mapped, so a subset reads only its rows;
- a folder of images (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``; needs pillow),
  preprocessed as ``ImageOptions`` say, one sample per file;
- a loader ``"module:function"`` or ``"path/to/file.py:function"``: a function
  called with no arguments that returns any of the Python sources here;
- (Python API) a list or other sequence of samples (a seeded random subset),
  or any other iterable: a re-iterable, a generator or a one-shot iterator, of
  which the first ``subset_size`` samples are taken, as NNCF does. A one-shot
  iterator is read once, so those samples are kept in memory; nothing past
  them is pulled. An item of a list, iterable or loader is one sample as
  given: a dict, or a bare array for a single-input model.

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

import bisect
import functools
import io
import itertools
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
from rewriter.calibrate.inputs import InputSpec, Sample, SampleChecker, is_array_like
from rewriter.calibrate.loaders import LOADER_PATTERN, import_loader
from rewriter.calibrate.messages import quoted_names, short_message
from rewriter.calibrate.stacks import StackPart, stack_rows
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


class _StackData(CalibrationData):
    """Stacked arrays: parts (files, or the arrays given in Python) each holding samples of every input.

    Sample ids run through the parts in order; a part's arrays are loaded (memory-mapped for .npy)
    once per pass, and only the rows asked for are copied out.
    """

    def __init__(self, inputs: Sequence[InputSpec], label: str, parts: Sequence[StackPart]) -> None:
        super().__init__(inputs, label)
        self.parts = tuple(parts)
        self._starts = list(itertools.accumulate((p.count for p in self.parts), initial=0))

    @property
    def size(self) -> int:
        return self._starts[-1]

    def _part_of(self, sample_id: int) -> tuple[int, int]:
        index = bisect.bisect_right(self._starts, sample_id) - 1
        return index, sample_id - self._starts[index]

    def sample_name(self, sample_id: int) -> str:
        index, row = self._part_of(sample_id)
        return self.parts[index].sample_name(row)

    def _read(self, ids: list[int] | None) -> Iterator[tuple[str, SourceLoc | None, object]]:
        ids = list(range(self.size)) if ids is None else ids
        _check_ids(ids, self.size, self.label)
        located = [self._part_of(i) for i in ids]
        for index, group in itertools.groupby(located, key=lambda pair: pair[0]):
            yield from self.parts[index].samples([row for _, row in group])


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
    """Samples from iterating: ``factory`` gives a fresh iterable per pass, or the one-shot iterator.

    A one-shot iterator is read once, when the subset is chosen: its first ``subset_size`` samples are
    kept (in memory) and every later pass reads them; nothing past them is pulled from it.
    """

    def __init__(self, inputs: Sequence[InputSpec], factory: Callable[[], Iterable[object]], label: str,
                 guard: _Guard, one_shot: bool = False) -> None:
        super().__init__(inputs, label)
        self._factory = factory
        self._guard = guard
        self._one_shot = one_shot
        self._passes = 0
        self._size: int | None = None
        self._kept: list[object] | None = None

    @property
    def size(self) -> int | None:
        return self._size

    def _count(self, at_most: int | None = None) -> int:
        if self._size is not None:
            return self._size
        if self._one_shot:
            if at_most is None:
                raise UserError(f"{self.label} is a one-shot iterator: it is read once and the samples taken are "
                                "kept in memory, so it needs a subset size (its first N samples are taken); pass "
                                "subset_size, a list, or a function returning a fresh iterable")
            self._kept = list(itertools.islice(self._pull(), at_most))  # islice pulls no sample past at_most
            self._size = len(self._kept)
            return self._size
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
            raise UserError(f"{self.label} gave {count} samples on a later pass, fewer than on the first (sample "
                            f"{target} is missing): it can be read only once. Pass it as an iterator (iter(...)), "
                            "whose first samples are kept, a list, or a function returning a fresh iterable.")

    def _pull(self) -> Iterator[object]:
        if self._kept is not None:
            yield from self._kept
            return
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
        source: a folder path (of .npy, .npz or image files, or one ``<input>.npy`` per input), a .npy or
            .npz file, a loader string ``"module:function"`` / ``"path/file.py:function"``, or (API) a bare
            array (single-input models), a dict of input name -> stacked array, a sequence or any iterable
            of samples, or a function returning one of these.
        inputs: the model inputs, from ``model_inputs(model)``.
        image_options: preprocessing for an image folder (ignored otherwise).

    Returns:
        The source; samples are read and checked when iterated.

    Raises:
        UserError: the folder is missing, empty or mixes file kinds, a stack's arrays do not fit the
            inputs, the loader cannot be imported, or the source is of no known kind.
    """
    if not inputs:
        raise UserError("the model has no inputs to feed calibration data to")
    if isinstance(source, (str, os.PathLike)):
        return _open_path_or_loader(os.fspath(source), inputs, image_options)
    return _from_object(source, inputs, "calibration data", _Guard(None))


def _from_object(source: object, inputs: Sequence[InputSpec], label: str, guard: _Guard,
                 factory: Callable[[], object] | None = None) -> CalibrationData:
    """A Python object as a source; ``factory`` is the loader function that returned it, if any."""
    if isinstance(source, Mapping) or is_array_like(source):
        return _StackData(inputs, label, [_python_stack(source, inputs, label)])
    if callable(source) and factory is None:
        with guard:
            result = source()
        return _from_object(result, inputs, f"loader {getattr(source, '__qualname__', repr(source))}"
                            if label == "calibration data" else label, guard, factory=source)
    if isinstance(source, (str, bytes)) or not isinstance(source, Iterable):
        what = f"{label} returned" if factory is not None else "calibration data of type"
        raise UserError(f"{what} {type(source).__name__}, which is not calibration data; give a folder, a "
                        ".npy/.npz file, a loader 'module:function', an array, a dict of input name -> array, "
                        "or a list (or any iterable) of sample dicts")
    if isinstance(source, Sequence):
        return _SequenceData(inputs, source, label, guard)
    if iter(source) is not source:
        return _IterableData(inputs, lambda: source, label, guard)
    if factory is None:
        return _IterableData(inputs, lambda: source, label, guard, one_shot=True)
    # A loader's generator: call the function again for every pass (the first result is used first).
    first: list[Iterable[object]] = [source]

    def fresh() -> Iterable[object]:
        return first.pop() if first else factory()  # type: ignore[return-value]

    return _IterableData(inputs, fresh, label, guard)


def _python_stack(source: object, inputs: Sequence[InputSpec], label: str) -> StackPart:
    """A bare array (single-input models) or a dict of input name -> array, as one stack."""
    if not isinstance(source, Mapping):
        if len(inputs) != 1:
            raise UserError(f"{label} is a bare array, which feeds a single-input model; this model has inputs "
                            f"{quoted_names(s.name for s in inputs)}: give a dict of input name -> array, or a "
                            "list of sample dicts")
        source = {inputs[0].name: source}
    arrays: dict[str, np.ndarray] = {}
    for name, value in source.items():
        try:
            arrays[str(name)] = np.asarray(value)
        except (ValueError, TypeError) as e:
            raise UserError(f"{label}: input {name!r}: not an array ({short_message(e)})") from None
    layouts, count = stack_rows({k: v.shape for k, v in arrays.items()}, inputs, SampleChecker(inputs), label, None)
    return StackPart(label, None, layouts, count, lambda: arrays)


def _open_path_or_loader(text: str, inputs: Sequence[InputSpec],
                         image_options: ImageOptions | None) -> CalibrationData:
    path = Path(text)
    if path.is_dir():
        return _open_folder(path, inputs, image_options)
    match = LOADER_PATTERN.match(text)
    if match and not path.exists():
        return _open_loader(match["module"], match["function"], inputs)
    if path.is_file() and path.suffix.lower() in (".npy", ".npz"):
        checker = SampleChecker(inputs)
        part = _npz_part(path, inputs, checker) if path.suffix.lower() == ".npz" else \
            _npy_part(path, _single_input(inputs, "a .npy file", path), checker)
        return _StackData(inputs, str(path), [part])
    if path.exists():
        raise UserError(f"{path}: calibration data must be a folder (of .npy, .npz or image files), a .npy or "
                        ".npz file, or a loader 'module:function'")
    raise UserError(f"{path}: no such calibration data folder or file (a loader is written 'module:function' "
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
    checker = SampleChecker(inputs)
    if kind == "npz":
        return _StackData(inputs, str(root), [_npz_part(path, inputs, checker) for path in files])
    if kind == "npy":
        if len(inputs) > 1:
            return _StackData(inputs, str(root), [_per_input_part(root, files, inputs, checker)])
        return _StackData(inputs, str(root), [_npy_part(path, inputs[0], checker) for path in files])
    single = _single_input(inputs, "a folder of images", root)
    plan = image_plan(image_options or ImageOptions(), single)
    require_pillow()  # fail now, not at the first sample
    return _FileData(inputs, root, files, lambda path: {single.name: read_image(path, plan)})


def _walk(root: Path) -> list[Path]:
    """Files under root, hidden ones skipped, sorted by relative path (the same on every OS)."""
    found: list[Path] = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(folder, n) for n in names if not n.startswith("."))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _single_input(inputs: Sequence[InputSpec], what: str, where: Path) -> InputSpec:
    if len(inputs) != 1:
        raise UserError(f"{where}: {what} feeds a single-input model; this model has inputs "
                        f"{quoted_names(s.name for s in inputs)}: use .npz files keyed by input name, a folder "
                        "with one <input>.npy per input, or a loader")
    return inputs[0]


# ----------------------------------------------------------------------------- stacked files


def _npy_part(path: Path, spec: InputSpec, checker: SampleChecker) -> StackPart:
    """One .npy file of a single-input model: its header says how many samples it holds."""
    loc = SourceLoc(str(path))
    layouts, count = stack_rows({spec.name: _npy_shape(path)}, [spec], checker, str(path), loc)
    return StackPart(str(path), loc, layouts, count, lambda: {spec.name: _open_npy(path)})


def _per_input_part(root: Path, files: list[Path], inputs: Sequence[InputSpec], checker: SampleChecker) -> StackPart:
    """A folder with one ``<input>.npy`` per model input, each a stack of the same samples."""
    by_name = {path.relative_to(root).as_posix()[: -len(path.suffix)]: path for path in files}
    loc = SourceLoc(str(root))
    if not any(spec.name in by_name for spec in inputs):
        raise UserError(f"{root}: a folder of .npy files feeds a multi-input model when it holds one <input>.npy "
                        f"per input ({', '.join(s.name + '.npy' for s in inputs)}); it has "
                        f"{', '.join(sorted(str(p.relative_to(root)) for p in files)[:5])}. Use .npz files "
                        "keyed by input name, or a loader")
    checker.check_names(by_name, str(root), loc)
    shapes = {name: _npy_shape(path) for name, path in by_name.items()}
    layouts, count = stack_rows(shapes, inputs, checker, str(root), loc)
    return StackPart(str(root), loc, layouts, count,
                     lambda: {spec.name: _open_npy(by_name[spec.name]) for spec in inputs})


def _npz_part(path: Path, inputs: Sequence[InputSpec], checker: SampleChecker) -> StackPart:
    """One .npz file keyed by input name: its members' headers say how many samples it holds."""
    loc = SourceLoc(str(path))
    layouts, count = stack_rows(_npz_shapes(path), inputs, checker, str(path), loc)
    return StackPart(str(path), loc, layouts, count, lambda: _read_npz(path))


def _npy_shape(path: Path) -> tuple[int, ...]:
    """The array's shape from the file's header, without reading its data."""
    try:
        with open(path, "rb") as f:
            prefix = f.read(12)
            if prefix[:6] != b"\x93NUMPY":
                raise ValueError("not a .npy file (no NUMPY magic)")
            if len(prefix) < 12:
                raise ValueError("the file ends inside its header")
            size = 2 if prefix[6] == 1 else 4  # the header length's bytes: 2 in format 1.0, 4 after
            header = prefix + f.read(int.from_bytes(prefix[8:8 + size], "little") - (4 - size))
        return _parsed_header(header)
    except (OSError, ValueError, EOFError) as e:
        raise UserError(f"cannot read the .npy file ({short_message(e)}); replace or remove it.",
                        SourceLoc(str(path))) from None


@functools.lru_cache(maxsize=64)
def _parsed_header(header: bytes) -> tuple[int, ...]:
    """The shape a .npy header gives; a folder of one-sample files parses its one header once (the
    parse costs about ten times the read)."""
    return _header_shape(io.BytesIO(header))


def _npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    try:
        with zipfile.ZipFile(path) as archive:
            shapes = {}
            for name in archive.namelist():
                with archive.open(name) as member:
                    shapes[name[:-4] if name.endswith(".npy") else name] = _header_shape(member)
            return shapes
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise UserError(f"cannot read the .npz file ({short_message(e)}); replace or remove it.",
                        SourceLoc(str(path))) from None


def _header_shape(f: Any) -> tuple[int, ...]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return tuple(np.lib.format.read_array_header_1_0(f)[0])
    if version == (2, 0):
        return tuple(np.lib.format.read_array_header_2_0(f)[0])
    raise ValueError(f".npy format version {version[0]}.{version[1]} is not read here; save it with numpy's "
                     "default format")


def _open_npy(path: Path) -> np.ndarray:
    """The file's array, memory-mapped (a subset reads only its rows) when it can be."""
    try:
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError:  # numpy cannot map every file (an empty array): read it
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
    func = import_loader(module, function)
    guard = _Guard(label)
    with guard:
        result = func()
    return _from_object(result, inputs, f"loader {label}", guard, factory=func)
