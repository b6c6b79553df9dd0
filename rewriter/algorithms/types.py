"""Values the numeric passes produce and the emitter consumes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class TensorRange:
    """The FakeQuantize parameters of one planned tensor.

    ``input_low``/``input_high`` have shape () per tensor or (C,) per channel
    along ``axis`` of the tensor; ``level_low..level_high`` is the integer range
    (``levels = level_high - level_low + 1``). Output range = input range.
    """

    tensor: str
    input_low: np.ndarray
    input_high: np.ndarray
    level_low: int
    level_high: int
    axis: int | None = None

    @property
    def levels(self) -> int:
        return self.level_high - self.level_low + 1
