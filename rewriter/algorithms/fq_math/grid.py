"""Level grids and FakeQuantize: the integer levels of a quantizer and OpenVINO's FakeQuantize formula.

Pure numpy, pure functions; bounds are arrays of shape ``()`` (per tensor) or
``(C,)`` (per channel). ``level_bounds`` lives in ``rewriter.levels`` (the
planner needs it too, below this package) and is re-exported here.
"""
from __future__ import annotations

import numpy as np

from rewriter.levels import level_bounds

__all__ = ["check_levels", "fake_quantize", "level_bounds", "zero_level"]


def check_levels(levels: int) -> int:
    """``levels`` as an int; ValueError unless it is an integer >= 2."""
    if isinstance(levels, bool) or int(levels) != levels or levels < 2:
        raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
    return int(levels)


# --------------------------------------------------------------------------------------
# FakeQuantize


def zero_level(low: np.ndarray, high: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid index of float zero in [low, high] with ``steps`` intervals, and whether it is on the grid.

    Bounds are float32 in practice, so a range whose zero was placed exactly on
    a level (by ``symmetric_range``/``tune_range``) leaves it within float32
    rounding of an integer: each bound is off by at most one float32 ulp
    (2^-23 relative), which moves p0 = -low*steps/(high-low) by at most
    steps * 2^-24. We accept 4x that (steps * 2^-22): at 8 bits 6e-5 of a step,
    far below any real misalignment of a user-given range.
    """
    span = high - low
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        p0 = -low * steps / span
    z = np.rint(p0)
    on_grid = np.isfinite(p0) & (np.abs(p0 - z) <= steps * 2.0**-22) & (z >= 0) & (z <= steps)
    return z, on_grid


def _bound(value: object, ndim: int, axis: int | None) -> np.ndarray:
    b = np.asarray(value, dtype=np.float64)
    if axis is not None and b.ndim == 1:
        if not -ndim <= axis < ndim:
            raise ValueError(f"axis {axis} out of range for a tensor of rank {ndim}")
        shape = [1] * ndim
        shape[axis % ndim] = b.shape[0]
        b = b.reshape(shape)
    return b


def fake_quantize(
    x: np.ndarray,
    input_low: np.ndarray | float,
    input_high: np.ndarray | float,
    levels: int,
    output_low: np.ndarray | float | None = None,
    output_high: np.ndarray | float | None = None,
    *,
    axis: int | None = None,
) -> np.ndarray:
    """OpenVINO FakeQuantize, elementwise with broadcasting.

    ``x <= min(il, ih)`` -> level 0; ``x > max(il, ih)`` -> level ``levels-1``;
    else level ``k = round((x - il) / (ih - il) * (levels - 1))`` (half to even,
    as ``np.rint``); the output is ``k / (levels - 1) * (oh - ol) + ol``. Output
    bounds default to the input bounds. NaN stays NaN.

    Arithmetic is float64; the result has x's float dtype (float32 for non-float
    inputs). Two details make it agree bit for bit with a QDQ pair (away from
    rounding ties, where any two float formulas may pick different neighbours):

    * the level index is computed as ``(x - il) * (levels - 1) / (ih - il)``:
      for float32 inputs of similar magnitude the subtraction and the product
      are exact in float64, so the only rounding is the final division and
      exact ties really round to even;
    * when float zero sits on an output level ``z`` (as in every range this
      module computes), the output is ``(k - z) * scale`` with
      ``scale = float32((oh - ol) / (levels - 1))`` -- the value
      ``DequantizeLinear`` produces, and exactly 0 for ``k == z``. The literal
      formula would leave zero off by the float32 rounding of the bounds. Both
      forms are equal in exact arithmetic; they differ by float32 rounding only.

    Args:
        x: values to quantize.
        input_low, input_high: the input range, broadcastable to ``x`` (or
            shape ``(C,)`` together with ``axis``).
        levels: number of grid levels (>= 2).
        output_low, output_high: the output range (default: the input range).
        axis: for 1-D per-channel bounds, the axis of ``x`` they run along.

    Example:
        >>> import numpy as np
        >>> fake_quantize(np.array([-1.0, 0.2, 0.26, 9.0], np.float32), 0.0, 1.0, 5)
        array([0.  , 0.25, 0.25, 1.  ], dtype=float32)
    """
    x = np.asarray(x)
    out_dtype = x.dtype if x.dtype in (np.float16, np.float32, np.float64) else np.dtype(np.float32)
    steps = check_levels(levels) - 1
    il = _bound(input_low, x.ndim, axis)
    ih = _bound(input_high, x.ndim, axis)
    ol = il if output_low is None else _bound(output_low, x.ndim, axis)
    oh = ih if output_high is None else _bound(output_high, x.ndim, axis)
    xf = x.astype(np.float64, copy=False)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        k = np.clip(np.rint((xf - il) * steps / (ih - il)), 0, steps)
        k = np.where(xf <= np.minimum(il, ih), 0.0, np.where(xf > np.maximum(il, ih), float(steps), k))
        z, on_grid = zero_level(ol, oh, steps)
        span = oh - ol
        scale = span / steps
        if out_dtype != np.float64:
            # The scale a QDQ pair would carry (float32); (k - z) * scale is then
            # exact in float64 and rounds once, like DequantizeLinear's multiply.
            scale = scale.astype(np.float32).astype(np.float64)
        aligned = (k - z) * scale
        literal = k / steps * span + ol
        out = np.where(on_grid, aligned, literal)
    return out.astype(out_dtype)
