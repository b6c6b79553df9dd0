"""Stacked calibration arrays: one array per model input holding many samples along its first axis.

Users hold calibration data as stacks: one ``.npy`` of shape (300, 3, 224, 224),
an ``.npz`` or one ``<input>.npy`` per input with the samples stacked, a bare
array in Python. ``stack_layout`` decides how many samples such an array holds
for a model input of rank R, from the input's declared shape:

- rank R - 1: one sample saved without its batch axis;
- rank R + 1: a stack of samples that each keep their batch axis, ``arr[i]``;
- rank R, the input's first axis dynamic or 1: that axis is the batch axis and
  each of its rows is one sample, ``arr[i:i+1]`` (so a (300, 3, 224, 224) stack
  is 300 samples of batch 1, batched and subset one by one);
- rank R, the first axis a fixed size above 1: one sample (the model takes
  that many rows at once).

The only reading a shape cannot settle is rank R with a dynamic first axis
that is not a batch axis (a sequence-first input [T, 80]): its rows are taken
as samples. Save such data as a rank R + 1 stack (N, T, 80), or give the
samples as items of a list or loader, which are fed as they are.

Every input of a stack must hold the same number of samples; a
``UserError`` names the inputs and their counts otherwise.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from rewriter.calibrate.inputs import InputSpec, SampleChecker, data_error
from rewriter.errors import SourceLoc

__all__ = ["StackLayout", "StackPart", "stack_layout", "stack_rows"]


@dataclass(frozen=True)
class StackLayout:
    """How one array holds samples: ``count`` of them, each the whole array (``one``), a row kept
    with its axis (``rows``: ``arr[i:i+1]``) or an item of the first axis (``items``: ``arr[i]``)."""

    count: int
    kind: Literal["one", "rows", "items"]

    def take(self, arr: np.ndarray, i: int) -> np.ndarray:
        """Sample ``i`` as an array of its own (a memory-mapped file reads only that sample)."""
        if self.kind == "one":
            return np.array(arr)
        return np.array(arr[i:i + 1] if self.kind == "rows" else arr[i])


def stack_layout(shape: Sequence[int], spec: InputSpec) -> StackLayout | None:
    """How an array of ``shape`` holds samples for ``spec`` (the module docstring's rule); None when its
    rank fits no reading."""
    rank, first = len(shape), spec.shape[0] if spec.shape else None
    if rank == spec.rank - 1:
        return StackLayout(1, "one")
    if rank == spec.rank + 1:
        return StackLayout(int(shape[0]), "items")
    if rank == spec.rank and rank >= 1 and (not isinstance(first, int) or first == 1):
        return StackLayout(int(shape[0]), "rows")
    if rank == spec.rank:
        return StackLayout(1, "one")
    return None


@dataclass(frozen=True)
class StackPart:
    """One file (or the arrays given in Python) holding ``count`` samples of every model input.

    ``load`` gives input name -> array (memory-mapped for .npy files); ``name`` is the file, for
    messages and reports.
    """

    name: str
    loc: SourceLoc | None
    layouts: Mapping[str, StackLayout]
    count: int
    load: Callable[[], Mapping[str, np.ndarray]]

    def samples(self, rows: Sequence[int]) -> Iterator[tuple[str, SourceLoc | None, dict[str, np.ndarray]]]:
        """(where, loc, raw sample) for ``rows`` in order, the arrays loaded once."""
        arrays = self.load()
        for row in rows:
            where = self.name if self.count == 1 else f"{self.name}, sample {row}"
            yield where, self.loc if self.count == 1 else None, {
                name: layout.take(arrays[name], row) for name, layout in self.layouts.items()}

    def sample_name(self, row: int) -> str:
        return self.name if self.count == 1 else f"{self.name}, sample {row}"


def stack_rows(shapes: Mapping[str, Sequence[int]], inputs: Sequence[InputSpec], checker: SampleChecker,
               where: str, loc: SourceLoc | None) -> tuple[dict[str, StackLayout], int]:
    """The layout of each input's array and the number of samples they hold together.

    Raises:
        UserError: an input is missing or unknown, an array's rank fits no reading, or the inputs hold
            different numbers of samples.
    """
    checker.check_names(shapes, where, loc)
    layouts: dict[str, StackLayout] = {}
    for spec in inputs:
        shape = tuple(shapes[spec.name])
        layout = stack_layout(shape, spec)
        if layout is None:
            raise data_error(f"input {spec.name!r} expects rank {spec.rank} {spec.shape_text()} (rank {spec.rank - 1} "
                         f"for one sample without the batch axis, rank {spec.rank + 1} for a stack of samples), "
                         f"got shape {shape}", where, loc)
        layouts[spec.name] = layout
    counts = {name: layout.count for name, layout in layouts.items()}
    if len(set(counts.values())) > 1:
        shown = ", ".join(f"{name!r} {count}" for name, count in counts.items())
        raise data_error(f"the inputs hold different numbers of samples ({shown}; a sample count is the first axis "
                     "of an array of the input's rank, docs/calibration-data.md); give every input the same number",
                     where, loc)
    return layouts, next(iter(counts.values()))

