"""Read constant tensors of a model as numpy arrays (for the numeric passes)."""
from __future__ import annotations

from typing import Iterable

import numpy as np
import onnx
from onnx import numpy_helper


def initializer_arrays(model: onnx.ModelProto, names: Iterable[str]) -> dict[str, np.ndarray]:
    """The named initializers as numpy arrays; a missing name raises KeyError naming it."""
    wanted = set(names)
    found = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.name in wanted}
    missing = wanted - set(found)
    if missing:
        raise KeyError(f"not initializers of the model: {', '.join(sorted(missing))}")
    return found


def slicing_axis(values: np.ndarray, channel_axis: int | None, limit: int) -> int | None:
    """For an array of more than ``limit`` values, an axis to slice it along that keeps every channel whole.

    The first axis longer than 1 that is not ``channel_axis``; None when the
    array is small enough to take at once, or has no such axis.
    """
    if values.size <= limit or values.ndim == 0:
        return None
    channel = None if channel_axis is None else channel_axis % values.ndim
    return next((a for a in range(values.ndim) if a != channel and values.shape[a] > 1), None)
