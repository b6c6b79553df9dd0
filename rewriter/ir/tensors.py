"""Read constant tensors of a model as numpy arrays (for the numeric passes)."""
from __future__ import annotations

from typing import Iterable, Iterator, Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from rewriter.ir.external import in_file, tensor_values


def tensor_array(t: onnx.TensorProto) -> np.ndarray:
    """``t``'s values: decoded from the proto, or mapped read-only from the file that holds them
    (a large model's weights, ``rewriter.ir.external``); never read from an external file into ``t``."""
    return tensor_values(t) if in_file(t) else numpy_helper.to_array(t)


class InitializerArrays(Mapping[str, np.ndarray]):
    """Initializers by name as arrays, each decoded on first use and kept; a tensor kept in its file is
    mapped again on every use instead, so that its pages are in memory only while a caller holds them."""

    def __init__(self, tensors: Mapping[str, onnx.TensorProto]) -> None:
        self._tensors = dict(tensors)
        self._decoded: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        t = self._tensors[name]
        if in_file(t):
            return tensor_values(t)
        if name not in self._decoded:
            self._decoded[name] = numpy_helper.to_array(t)
        return self._decoded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)


def initializer_arrays(model: onnx.ModelProto, names: Iterable[str]) -> InitializerArrays:
    """The named initializers as numpy arrays; a missing name raises KeyError naming it."""
    wanted = set(names)
    found = {t.name: t for t in model.graph.initializer if t.name in wanted}
    missing = wanted - set(found)
    if missing:
        raise KeyError(f"not initializers of the model: {', '.join(sorted(missing))}")
    return InitializerArrays(found)


def slicing_axis(values: np.ndarray, channel_axis: int | None, limit: int) -> int | None:
    """For an array of more than ``limit`` values, an axis to slice it along that keeps every channel whole.

    The first axis longer than 1 that is not ``channel_axis``; None when the
    array is small enough to take at once, or has no such axis.
    """
    if values.size <= limit or values.ndim == 0:
        return None
    channel = None if channel_axis is None else channel_axis % values.ndim
    return next((a for a in range(values.ndim) if a != channel and values.shape[a] > 1), None)
