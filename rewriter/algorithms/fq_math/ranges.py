"""Statistics -> FakeQuantize ranges: POT's zero-filter guards, the symmetric and asymmetric formulas,
and the range tuning that puts float zero exactly on a grid level.

Ranges are float32 arrays of the statistics' shape, rounded outward from float64.
"""
from __future__ import annotations

import numpy as np

from rewriter.algorithms.fq_math.grid import check_levels
from rewriter.levels import normalize_role

__all__ = [
    "ZERO_FILTER_EPS_ASYMMETRIC",
    "ZERO_FILTER_EPS_SYMMETRIC",
    "ZERO_FILTER_RATIO",
    "asymmetric_range",
    "finite_stat",
    "fix_zero_filters_asymmetric",
    "fix_zero_filters_symmetric",
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


def _zero_straddling(low: np.ndarray, high: np.ndarray, levels: int, caller: str) -> tuple[np.ndarray, np.ndarray, int]:
    """``low`` and ``high`` as broadcast float64 arrays and the number of steps; both must include zero."""
    a, b = np.broadcast_arrays(np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64))
    steps = check_levels(levels) - 1
    if np.any(a > 0) or np.any(b < 0):
        raise ValueError(f"{caller} needs low <= 0 <= high (include zero first)")
    return a, b, steps


def finite_stat(value: object, name: str) -> np.ndarray:
    """``value`` as a float64 array; ValueError naming ``name`` when it is None or not finite."""
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
    levels = check_levels(levels)
    m = fix_zero_filters_symmetric(finite_stat(max_stat, "max_stat"))
    unsigned = False
    if role == "activation" and signed is not True and unsigned_allowed:
        if min_stat is None:
            raise ValueError("activations need min_stat to decide signedness (or pass signed=True)")
        unsigned = bool(np.all(finite_stat(min_stat, "min_stat") >= 0))
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
    steps = check_levels(levels) - 1
    lo = finite_stat(min_stat, "min_stat")
    hi = finite_stat(max_stat, "max_stat")
    lo, hi = np.broadcast_arrays(lo, hi)
    if np.any(lo > hi):
        raise ValueError("min_stat exceeds max_stat; the min and max statistics disagree")
    lo, hi = fix_zero_filters_asymmetric(lo, hi)
    lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
    tune = tune_range_unified_zp if unified_zeropoint else tune_range
    lo, hi = tune(lo, hi, steps + 1)
    return _to_float32_outward(lo, hi)
