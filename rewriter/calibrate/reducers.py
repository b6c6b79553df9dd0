"""The reducer protocols of the statistics pass, and how the lean session can serve each reducer.

A reducer is any object with a ``name`` and a ``__call__`` mapping a batch of
activations ``(N, ...)`` (axis 0: the samples, the other axes the tensor's
own after its batch axis; a channel axis is where it is in the model) to
per-sample statistics ``(N, ...)``::

    @dataclass(frozen=True)
    class AbsMax:
        name: str = "abs_max"
        def __call__(self, x):
            return np.abs(x.reshape(len(x), -1)).max(axis=1)

Tensors whose axis 0 is not the batch axis (``batch_axis[t] is None`` in
``CollectedStats``: scalars, shape vectors, sequence-first layouts) are given to the
reducers whole, with a new leading axis of size 1: one row per sample.

A reducer that only needs extrema (``ExtremaReducer``) or evenly spaced values
(``SubsampleReducer``) can be fed by reductions computed inside onnxruntime
instead of the whole tensor: ``reducer_service`` says which.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

__all__ = ["RAW", "ExtremaReducer", "Reducer", "SubsampleReducer", "reducer_max_samples", "reducer_service"]

#: The ``extrema_axis`` of a reducer that needs the raw tensor.
RAW = "raw"


class Reducer(Protocol):
    """Maps a batch of activations (N, ...) to per-sample statistics (N, ...).

    Optional ``max_samples: int | None``: the reducer is given only the first
    ``max_samples`` rows (samples) and its result has at most that many rows;
    the collector stops copying a tensor out of onnxruntime once no reducer of
    it wants raw data any more.
    """

    # Read-only, so frozen dataclasses are reducers too.
    @property
    def name(self) -> str: ...

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


class ExtremaReducer(Reducer, Protocol):
    """A reducer that only needs each sample's minimum and maximum.

    ``extrema_axis`` None: per tensor, ``from_extrema`` is given ``mins`` and
    ``maxs`` of shape (N,) (each sample's min and max over all its values);
    1: per channel on axis 1, shapes (N, C), for tensors of rank 3 and more
    (rank 2 and less, and any other axis, go the raw way: ``__call__``);
    ``RAW``: this instance needs the raw values after all. The extrema
    have the tensor's dtype. ``from_extrema(mins, maxs)`` must return what
    ``__call__`` returns on the tensor, exactly.
    """

    @property
    def extrema_axis(self) -> int | str | None: ...

    def from_extrema(self, mins: np.ndarray, maxs: np.ndarray) -> np.ndarray: ...


class SubsampleReducer(Reducer, Protocol):
    """A reducer that only needs ``count`` evenly spaced values of each sample.

    The collector gives ``from_subsample`` ``flat[:, ::step][:, :count]`` in
    the tensor's dtype, where ``flat`` is the batch reshaped to (N, -1)
    (``subsample_axis`` None) or to (N, C, -1) with the slicing on the last
    axis (``subsample_axis`` 1, tensors of rank 3 and more), and
    ``step = max(1, flat.shape[-1] // count)``; ``RAW`` or any other axis:
    ``__call__`` gets the tensor.
    """

    @property
    def count(self) -> int: ...

    @property
    def subsample_axis(self) -> int | str | None: ...

    def from_subsample(self, values: np.ndarray) -> np.ndarray: ...


def _in_graph_axis(value: object) -> int | str | None:
    if value is None or (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value == 1):
        return None if value is None else 1
    return RAW


def reducer_service(reducer: Reducer) -> tuple[str, int | None, int]:
    """How the lean session can feed ``reducer``: ("extrema", axis, 0), ("subsample", axis, count) or (RAW, None, 0)."""
    if callable(getattr(reducer, "from_extrema", None)):
        axis = _in_graph_axis(getattr(reducer, "extrema_axis", RAW))
        if axis != RAW:
            return "extrema", axis, 0  # type: ignore[return-value]
    if callable(getattr(reducer, "from_subsample", None)):
        axis = _in_graph_axis(getattr(reducer, "subsample_axis", RAW))
        count = getattr(reducer, "count", None)
        if axis != RAW and isinstance(count, (int, np.integer)) and count >= 1:
            return "subsample", axis, int(count)  # type: ignore[return-value]
    return RAW, None, 0


def reducer_max_samples(reducer: Reducer) -> int | None:
    """The reducer's ``max_samples`` (None: every sample); ValueError when it is below 1."""
    limit = getattr(reducer, "max_samples", None)
    if limit is not None and limit < 1:
        raise ValueError(f"reducer {reducer.name!r}: max_samples must be at least 1 or None, got {limit}")
    return limit
