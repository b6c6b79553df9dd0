"""Quantization math: level grids, FakeQuantize, range formulas and QDQ parameters.

Pure numpy, pure functions. Statistics and bounds are arrays of shape ``()``
(per tensor) or ``(C,)`` (per channel); range functions return float32 arrays of
the same shape. The formulas are those of docs "Quantization math" in
design.md and of the original tool (POT) as recorded in pot-facts.md, section d.
Where we deliberately differ from POT the docstring says so.

The one invariant everything here protects: **float zero is exactly a grid
level** of every range we compute, so zero padding, ReLU zeros and zero bias
terms are quantized without error, and ``fake_quantize(0) == 0`` exactly.

Example:
    >>> import numpy as np
    >>> lo, hi = symmetric_range(np.float32(-1.0), np.float32(3.7624), 256, "activation")
    >>> round(float(lo), 5), round(float(hi), 5)   # the 128/127 ratio of signed 8-bit activations
    (-3.79203, 3.7624)
    >>> scale, zp, qmin, qmax = qdq_params(lo, hi, 256, storage_signed=True)
    >>> int(zp), qmin, qmax, storage_dtype_for(qmin, qmax)
    (0, -128, 127, 'int8')
    >>> float(fake_quantize(np.float32(0.0), lo, hi, 256))
    0.0
"""
from __future__ import annotations

import numpy as np

from rewriter.calibrate.roles import normalize_role

__all__ = [
    "STORAGE_RANGES",
    "ZERO_FILTER_EPS_ASYMMETRIC",
    "ZERO_FILTER_EPS_SYMMETRIC",
    "ZERO_FILTER_RATIO",
    "asymmetric_range",
    "fake_quantize",
    "fix_zero_filters_asymmetric",
    "fix_zero_filters_symmetric",
    "level_bounds",
    "normalize_role",
    "qdq_params",
    "storage_dtype_for",
    "symmetric_range",
    "tune_range",
    "tune_range_unified_zp",
]

# POT's zero-filter constants (pot-facts d): a symmetric range is never narrower
# than 8e-5 (nor than 1% of the widest channel); an asymmetric range narrower
# than 8e-4 is widened by 8e-4 on both sides.
ZERO_FILTER_EPS_SYMMETRIC = 8e-5
ZERO_FILTER_RATIO = 0.01
ZERO_FILTER_EPS_ASYMMETRIC = 8e-4

def _check_levels(levels: int) -> int:
    if isinstance(levels, bool) or int(levels) != levels or levels < 2:
        raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
    return int(levels)


def _zero_straddling(low: np.ndarray, high: np.ndarray, levels: int, caller: str) -> tuple[np.ndarray, np.ndarray, int]:
    """``low`` and ``high`` as broadcast float64 arrays and the number of steps; both must include zero."""
    a, b = np.broadcast_arrays(np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64))
    steps = _check_levels(levels) - 1
    if np.any(a > 0) or np.any(b < 0):
        raise ValueError(f"{caller} needs low <= 0 <= high (include zero first)")
    return a, b, steps


def _check_mode(mode: str) -> str:
    if mode not in ("symmetric", "asymmetric"):
        raise ValueError(f"unknown mode {mode!r}; expected 'symmetric' or 'asymmetric'")
    return mode


# --------------------------------------------------------------------------------------
# Level grids


def level_bounds(
    bits: int,
    mode: str,
    role: str,
    signed: bool | None = None,
    *,
    level_low: int | None = None,
    level_high: int | None = None,
) -> tuple[int, int, int]:
    """The integer level range of a quantizer: ``(level_low, level_high, levels)``.

    ================  ==========  ======================================  ============
    role              mode        signed                                  levels range
    ================  ==========  ======================================  ============
    weight            symmetric   (always)                                [-(2^(b-1)-1), 2^(b-1)-1], 2^b-1 levels (narrow)
    weight            asymmetric  True/None -> signed, False -> unsigned   2^b levels
    activation        symmetric   True/None -> signed, False -> unsigned   2^b levels
    activation        asymmetric  True -> signed, None/False -> unsigned   2^b levels
    ================  ==========  ======================================  ============

    signed = [-2^(b-1), 2^(b-1)-1]; unsigned = [0, 2^b-1]. ``signed=None`` means
    "not decided yet" (activations decide from the data in ``symmetric_range``);
    the number of levels does not depend on it, so ranges can be computed first
    and the bounds asked for again with the decided sign. Asymmetric activations
    default to unsigned because onnxruntime's integer kernels prefer uint8
    activations; asymmetric weights default to signed (int8 weights).

    An explicit ``level_low``/``level_high`` from the spec overrides everything
    (``levels = level_high - level_low + 1``).

    Example:
        >>> level_bounds(8, "symmetric", "weight")
        (-127, 127, 255)
        >>> level_bounds(8, "symmetric", "activation", signed=False)
        (0, 255, 256)
        >>> level_bounds(16, "symmetric", "activation", level_low=-32767, level_high=32767)
        (-32767, 32767, 65535)
    """
    if level_low is not None or level_high is not None:
        if level_low is None or level_high is None:
            raise ValueError("give both level_low and level_high, or neither")
        if int(level_low) >= int(level_high):
            raise ValueError(f"level_low ({level_low}) must be below level_high ({level_high})")
        return int(level_low), int(level_high), int(level_high) - int(level_low) + 1
    if isinstance(bits, bool) or int(bits) != bits or bits < 2:
        raise ValueError(f"bits must be an integer >= 2, got {bits!r}")
    _check_mode(mode)
    role = normalize_role(role)
    half = 1 << (int(bits) - 1)
    if role == "weight" and mode == "symmetric":
        return -(half - 1), half - 1, 2 * half - 1
    if mode == "asymmetric" and role == "activation":
        unsigned = signed is not True
    else:
        unsigned = signed is False
    if unsigned:
        return 0, 2 * half - 1, 2 * half
    return -half, half - 1, 2 * half


# --------------------------------------------------------------------------------------
# FakeQuantize


def _zero_level(low: np.ndarray, high: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
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
    steps = _check_levels(levels) - 1
    il = _bound(input_low, x.ndim, axis)
    ih = _bound(input_high, x.ndim, axis)
    ol = il if output_low is None else _bound(output_low, x.ndim, axis)
    oh = ih if output_high is None else _bound(output_high, x.ndim, axis)
    xf = x.astype(np.float64, copy=False)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        k = np.clip(np.rint((xf - il) * steps / (ih - il)), 0, steps)
        k = np.where(xf <= np.minimum(il, ih), 0.0, np.where(xf > np.maximum(il, ih), float(steps), k))
        z, on_grid = _zero_level(ol, oh, steps)
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


# --------------------------------------------------------------------------------------
# Statistics -> ranges


def _stat(value: object, name: str) -> np.ndarray:
    if value is None:
        raise ValueError(f"{name} is required")
    arr = np.asarray(value, dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        where = "" if arr.ndim == 0 else f" at channel(s) {np.flatnonzero(bad)[:8].tolist()}"
        raise ValueError(
            f"{name} contains {int(bad.sum())} non-finite value(s) (NaN or inf){where}; "
            "range statistics must be finite (check the calibration data and the tensor's producer)"
        )
    return arr


def _to_float32_outward(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Round a float64 range to float32 without narrowing it."""
    with np.errstate(over="ignore"):
        lo32 = low.astype(np.float32)
        hi32 = high.astype(np.float32)
    if not (np.isfinite(lo32).all() and np.isfinite(hi32).all()):
        raise ValueError(
            f"range [{np.min(low):g}, {np.max(high):g}] does not fit in float32; "
            "the tensor's values are too large to quantize"
        )
    lo32 = np.where(lo32.astype(np.float64) > low, np.nextafter(lo32, np.float32(-np.inf)), lo32)
    hi32 = np.where(hi32.astype(np.float64) < high, np.nextafter(hi32, np.float32(np.inf)), hi32)
    return np.asarray(lo32, np.float32), np.asarray(hi32, np.float32)


def fix_zero_filters_symmetric(max_level: np.ndarray) -> np.ndarray:
    """POT's guard against (near-)zero channels: ``m = max(m, max(8e-5, 0.01 * max_c m))``.

    A channel of all-zero weights would otherwise get scale 0 (a division by
    zero in QuantizeLinear) and a tiny channel a needlessly fine grid.

    >>> fix_zero_filters_symmetric(np.array([0.0, 1e-5, 2.0])).tolist()
    [0.02, 0.02, 2.0]
    """
    m = np.asarray(max_level, dtype=np.float64)
    floor = max(ZERO_FILTER_EPS_SYMMETRIC, ZERO_FILTER_RATIO * float(np.max(m))) if m.size else 0.0
    return np.maximum(m, floor)


def fix_zero_filters_asymmetric(min_level: np.ndarray, max_level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """POT's guard for asymmetric ranges: if ``hi - lo <= 8e-4`` widen both ends by 8e-4 (elementwise).

    >>> lo, hi = fix_zero_filters_asymmetric(np.array(2.0), np.array(2.0))
    >>> float(lo), float(hi)
    (1.9992, 2.0008)
    """
    lo = np.asarray(min_level, dtype=np.float64)
    hi = np.asarray(max_level, dtype=np.float64)
    narrow = (hi - lo) <= ZERO_FILTER_EPS_ASYMMETRIC
    return (np.where(narrow, lo - ZERO_FILTER_EPS_ASYMMETRIC, lo),
            np.where(narrow, hi + ZERO_FILTER_EPS_ASYMMETRIC, hi))


def _signed_ratio(levels: int) -> float:
    """-level_low / level_high of the default signed grid with ``levels`` levels.

    Even count (2^b): [-2^(b-1), 2^(b-1)-1] -> levels / (levels - 2) (128/127 at 8 bits).
    Odd count (narrow, e.g. 255): [-(n-1)/2, (n-1)/2] -> 1.
    """
    if levels < 3:
        raise ValueError(f"a signed symmetric grid needs at least 3 levels, got {levels}")
    return levels / (levels - 2) if levels % 2 == 0 else 1.0


def symmetric_range(
    min_stat: np.ndarray | float | None,
    max_stat: np.ndarray | float,
    levels: int,
    role: str,
    signed: bool | None = None,
    unsigned_allowed: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The symmetric FakeQuantize range ``(input_low, input_high)``, float32.

    ``m`` = ``max_stat`` (an abs_max-type statistic), zero-filter fixed
    (``fix_zero_filters_symmetric``); ``input_high = m`` and

    * weights: ``input_low = -m`` (odd, narrow level counts such as 255);
    * activations: ``input_low = 0`` (unsigned) if every ``min_stat >= 0``,
      ``signed`` is not True and ``unsigned_allowed``; otherwise
      ``input_low = -m * levels / (levels - 2)`` -- the 128/127 ratio at 8 bits:
      abs_max 3.7624 gives [-3.79202..., 3.7624].

    Relation to design.md's ``input_low = scale * level_low / level_high``,
    ``input_high = scale``: its ``scale`` is our ``m``, and
    ``-level_low / level_high`` is 1 for the narrow grid [-127, 127], 0 for the
    unsigned grid [0, 255] and 128/127 = 256/254 = levels/(levels-2) for the
    signed grid [-128, 127]. In every case float zero is exactly level
    ``-level_low`` and the QDQ scale is ``m / level_high``. We apply that one
    rule for any level count: an even count uses levels/(levels-2), an odd
    (narrow) count uses 1 -- for weights and activations alike. (POT applies
    levels/(levels-2) to activations whatever the count, which for an odd count
    such as GNA3's 255-level activations puts zero half way between two levels;
    we keep zero on the grid instead.)

    ``signed=False`` means "not forced signed", as in POT (where ``signed`` is
    True only when the config's level_low < 0): negative data still gets the
    signed range. ``unsigned_allowed=False`` forces the signed range.

    Args:
        min_stat: the aggregated min statistic; decides signedness of
            activations (per tensor even for per-channel activations, or per
            channel); ignored for weights (may be None).
        max_stat: aggregated abs_max, shape () or (C,).
        levels: number of levels (from ``level_bounds``).
        role: "weight" or "activation".

    Raises:
        ValueError: on NaN/inf statistics or missing ``min_stat`` for activations.

    Example:
        >>> lo, hi = symmetric_range(None, np.array([0.5, 0.0]), 255, "weight")
        >>> [round(float(v), 6) for v in hi]   # the all-zero channel gets 1% of 0.5
        [0.5, 0.005]
        >>> bool(np.all(lo == -hi))
        True
    """
    role = normalize_role(role)
    levels = _check_levels(levels)
    m = fix_zero_filters_symmetric(_stat(max_stat, "max_stat"))
    unsigned = False
    if role == "activation" and signed is not True and unsigned_allowed:
        if min_stat is None:
            raise ValueError("activations need min_stat to decide signedness (or pass signed=True)")
        unsigned = bool(np.all(_stat(min_stat, "min_stat") >= 0))
    low = np.zeros_like(m) if unsigned else -m * _signed_ratio(levels)
    return _to_float32_outward(low, m)


def tune_range(low: np.ndarray, high: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Widen ``[low, high]`` (containing 0) so that float zero is exactly a level; elementwise, float64.

    With ``L = levels - 1`` and ``q = round(-low * L / (high - low))``:
    candidate "move high" ``high' = (q - L) / q * low`` and candidate "move low"
    ``low' = q / (q - L) * high`` both put zero exactly on level ``q``; exactly
    one of them widens the range (which one depends on the side ``q`` was
    rounded to), and that one is kept (design.md: keep the larger range). A
    range with 0 at an end (``low == 0`` or ``high == 0``) is kept as is.

    Deliberate difference from POT/design.md: when the range straddles zero but
    ``q`` rounds to 0 or L (a tiny negative min, say), POT keeps the range and
    zero stays up to half a step off the grid. We clamp ``q`` to [1, L-1]
    instead, which widens the short side to one step: the range grows by at
    most one step and zero stays exact.

    Example:
        >>> lo, hi = tune_range(np.array(-1.0), np.array(2.0), 256)
        >>> float(lo), round(float(hi), 6)   # q = 85: high' = 170/85 = 2.0
        (-1.0, 2.0)
        >>> lo, hi = tune_range(np.array(-1.0), np.array(2.1), 256)
        >>> float(lo), round(float(hi), 6)   # q = round(82.26) = 82: high' = 173/82 widens
        (-1.0, 2.109756)
        >>> lo, hi = tune_range(np.array(-1.0), np.array(1.9), 256)
        >>> round(float(lo), 6), float(hi)   # q = round(87.93) = 88: low' = 88*1.9/(88-255) widens
        (-1.001198, 1.9)
    """
    a, b, steps = _zero_straddling(low, high, levels, "tune_range")
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.rint(-a * steps / (b - a))
    return _move_to_zero_level(a, b, q, steps)


def tune_range_unified_zp(low: np.ndarray, high: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Like ``tune_range`` but every channel gets the same zero level.

    ``q = round(mean over channels of round(-low * L / (high - low)))``
    (POT's ``tune_range_unify_zp``), clamped to [1, L-1] if any channel
    straddles zero on that side (see ``tune_range``). Each channel then keeps
    whichever of its two candidates widens it.

    Example:
        >>> lo, hi = tune_range_unified_zp(np.array([-1.0, -1.0]), np.array([1.0, 3.0]), 256)
        >>> np.round(lo, 4).tolist(), np.round(hi, 4).tolist()   # q = round((128 + 64) / 2) = 96
        ([-1.0, -1.8113], [1.6562, 3.0])
    """
    a, b, steps = _zero_straddling(low, high, levels, "tune_range_unified_zp")
    if np.any(b - a <= 0):
        raise ValueError("tune_range_unified_zp needs high > low in every channel")
    q = float(np.rint(np.mean(np.rint(-a * steps / (b - a)))))
    if steps >= 2:
        if q <= 0 and np.any(a < 0):
            q = 1.0
        if q >= steps and np.any(b > 0):
            q = float(steps - 1)
    return _move_to_zero_level(a, b, np.full(a.shape, q), steps)


def _move_to_zero_level(a: np.ndarray, b: np.ndarray, q: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep whichever of POT's two candidates puts zero on level q and widens [a, b]."""
    movable = (b - a > 0) & ~((a == 0) & (q == 0)) & ~((b == 0) & (q == steps))
    if steps >= 2:
        straddle = (a < 0) & (b > 0)
        q = np.where(straddle, np.clip(q, 1, steps - 1), q)
    else:
        movable &= False  # two levels: zero can only be an end; nothing to tune
    with np.errstate(divide="ignore", invalid="ignore"):
        new_low = q * b / (q - steps)
        new_high = (q - steps) * a / q
    new_low = np.where(np.isfinite(new_low), new_low, a)
    new_high = np.where(np.isfinite(new_high), new_high, b)
    move_high = (new_high - a) > (b - new_low)
    lo = np.where(movable & ~move_high, new_low, a)
    hi = np.where(movable & move_high, new_high, b)
    # In exact arithmetic the kept candidate only widens; guard the last float64 ulp.
    return np.minimum(lo, a), np.maximum(hi, b)


def asymmetric_range(
    min_stat: np.ndarray | float,
    max_stat: np.ndarray | float,
    levels: int,
    *,
    unified_zeropoint: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The asymmetric FakeQuantize range ``(input_low, input_high)``, float32.

    Steps (pot-facts d): ``fix_zero_filters_asymmetric``; include zero
    (``lo = min(lo, 0)``, ``hi = max(hi, 0)``); ``tune_range`` (or
    ``tune_range_unified_zp`` when ``unified_zeropoint``); round outward to
    float32. Elementwise for per-channel statistics.

    Raises:
        ValueError: on NaN/inf statistics or ``min_stat > max_stat``.

    Example:
        >>> lo, hi = asymmetric_range(np.float32(0.5), np.float32(4.0), 256)
        >>> float(lo), float(hi)   # zero included, then already on level 0
        (0.0, 4.0)
    """
    steps = _check_levels(levels) - 1
    lo = _stat(min_stat, "min_stat")
    hi = _stat(max_stat, "max_stat")
    lo, hi = np.broadcast_arrays(lo, hi)
    if np.any(lo > hi):
        raise ValueError("min_stat exceeds max_stat; the min and max statistics disagree")
    lo, hi = fix_zero_filters_asymmetric(lo, hi)
    lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
    tune = tune_range_unified_zp if unified_zeropoint else tune_range
    lo, hi = tune(lo, hi, steps + 1)
    return _to_float32_outward(lo, hi)


# --------------------------------------------------------------------------------------
# QDQ form

#: Integer ranges of the storage types QuantizeLinear/DequantizeLinear may use.
STORAGE_RANGES: dict[str, tuple[int, int]] = {
    "int4": (-8, 7),
    "uint4": (0, 15),
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-32768, 32767),
    "uint16": (0, 65535),
    "int32": (-(2**31), 2**31 - 1),
}


def storage_dtype_for(level_low: int, level_high: int) -> str:
    """The narrowest storage type holding the integer range ``[level_low, level_high]``.

    Pass the ``qmin, qmax`` of ``qdq_params`` (the zero point is in that range
    by construction). At equal width a range with ``level_low >= 0`` prefers the
    unsigned type.

    ============================  =======  ==========================================
    range                         dtype    typical use
    ============================  =======  ==========================================
    within [-8, 7], low < 0       int4     2..4-bit signed weights (opset 21)
    within [0, 15]                uint4    2..4-bit unsigned (opset 21)
    within [-128, 127], low < 0   int8     8-bit weights, signed activations
    within [0, 255]               uint8    unsigned / asymmetric activations
    within [-2^15, 2^15-1]        int16    GNA 16-bit (opset 21)
    within [0, 65535]             uint16   16-bit unsigned (opset 21)
    within [-2^31, 2^31-1]        int32    32-bit (DequantizeLinear only in ONNX)
    ============================  =======  ==========================================

    Example:
        >>> storage_dtype_for(-7, 7), storage_dtype_for(0, 255), storage_dtype_for(-127, 127)
        ('int4', 'uint8', 'int8')
    """
    lo, hi = int(level_low), int(level_high)
    if lo > hi:
        raise ValueError(f"level_low ({lo}) must not exceed level_high ({hi})")
    order = ("uint4", "int4", "uint8", "int8", "uint16", "int16") if lo >= 0 else ("int4", "int8", "int16")
    for name in order + ("int32",):
        smin, smax = STORAGE_RANGES[name]
        if smin <= lo and hi <= smax:
            return name
    raise ValueError(f"no storage type holds the level range [{lo}, {hi}]")


def qdq_params(
    input_low: np.ndarray | float,
    input_high: np.ndarray | float,
    levels: int,
    storage_signed: bool,
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """QuantizeLinear/DequantizeLinear parameters equivalent to a FakeQuantize range.

    ``scale = float32((ih - il) / (levels - 1))``; the grid index of float zero
    is ``z = round(-il * (levels - 1) / (ih - il))`` (= ``round(-il / scale)``);
    the storage value of grid level ``k`` is ``k - offset`` with offset 0 for
    unsigned storage and ``levels // 2`` for signed storage. Hence:

    ====================================  ======  ====  ============  ======
    range (8 bits)                        levels  zp    qmin..qmax    dtype
    ====================================  ======  ====  ============  ======
    weights [-m, m]                       255     0     -127..127     int8
    signed activations [-128/127 m, m]    256     0     -128..127     int8
    unsigned activations [0, m]           256     0     0..255        uint8
    asymmetric [lo, hi], unsigned store   256     z     0..255        uint8
    4-bit weights [-m, m]                 15      0     -7..7         int4
    ====================================  ======  ====  ============  ======

    ``qmin``/``qmax`` bound the level range in storage units. When they are
    narrower than the storage type actually emitted (4-bit levels in int8, or
    255 levels in int8), the emitter must clip -- e.g. clamp the float input to
    ``[il, ih]`` before QuantizeLinear -- or QuantizeLinear saturates at the
    storage limits instead of the level limits. With that, the QDQ pair gives
    exactly ``fake_quantize``'s output (see its docstring).

    Returns:
        ``(scale float32, zero_point int64, qmin, qmax)``; scale and zero point
        have the bounds' shape.

    Raises:
        ValueError: on non-finite bounds, ``ih <= il``, or a range whose float
            zero is not on a grid level (use ``symmetric_range``/``asymmetric_range``).

    Example:
        >>> s, zp, qmin, qmax = qdq_params(np.float32(-1.0), np.float32(1.0), 255, storage_signed=True)
        >>> float(s), int(zp), qmin, qmax
        (0.007874015718698502, 0, -127, 127)
    """
    levels = _check_levels(levels)
    steps = levels - 1
    il = _stat(input_low, "input_low")
    ih = _stat(input_high, "input_high")
    il, ih = np.broadcast_arrays(il, ih)
    if np.any(ih <= il):
        raise ValueError("input_high must exceed input_low in every channel")
    scale = ((ih - il) / steps).astype(np.float32)
    if np.any(scale == 0) or not np.isfinite(scale).all():
        raise ValueError("the range is too narrow or too wide for a float32 scale")
    z, on_grid = _zero_level(il, ih, steps)
    if not on_grid.all():
        raise ValueError(
            "float zero is not on a grid level of this range, so a QDQ pair cannot represent it; "
            "compute the range with symmetric_range/asymmetric_range"
        )
    offset = levels // 2 if storage_signed else 0
    zero_point = (z - offset).astype(np.int64)
    return np.asarray(scale), np.asarray(zero_point), -offset, steps - offset
