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
