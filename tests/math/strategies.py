"""Shared hypothesis strategies for the quantization math: tensors, statistics, ranges, bit widths.

Import as ``from strategies import ...`` (tests/conftest.py puts each test
folder on sys.path). Everything draws float32 data, because that is what the
calibration produces and the emitter stores; statistics are float64 as the
aggregators return them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rewriter.algorithms import fq_math

#: Settings for math properties: few examples (the suite must stay fast), no deadline.
#: REWRITER_MATH_EXAMPLES=2000 runs a deep search locally or nightly.
MATH_SETTINGS = settings(max_examples=int(os.environ.get("REWRITER_MATH_EXAMPLES", "40")), deadline=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

BITS = (2, 3, 4, 5, 6, 7, 8, 16)
bit_widths = st.sampled_from(BITS)
modes = st.sampled_from(("symmetric", "asymmetric"))
roles = st.sampled_from(("weight", "activation"))
#: None = per tensor, else the channel count.
channel_counts = st.one_of(st.none(), st.integers(1, 4))


def float32s(min_value: float = -1e3, max_value: float = 1e3) -> st.SearchStrategy[float]:
    """Finite float32 values (no subnormals: they are not a calibration reality)."""
    return st.floats(min_value=min_value, max_value=max_value, width=32,
                     allow_nan=False, allow_infinity=False, allow_subnormal=False)


#: Magnitudes spanning the ranges real tensors have, plus exact zero.
magnitudes = st.one_of(st.just(0.0), st.floats(2.0**-13, 1024.0, width=32))


def _shape(channels: int | None) -> tuple[int, ...]:
    return () if channels is None else (channels,)


@st.composite
def min_max_stats(draw: st.DrawFn, channels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Aggregated (min, max) statistics with min <= max, shape () or (C,).

    Mixes all-positive, all-negative, straddling, constant (min == max) and
    all-zero channels.
    """
    shape = _shape(channels)
    n = int(np.prod(shape, dtype=int))
    lows, highs = [], []
    for _ in range(n):
        kind = draw(st.sampled_from(("straddle", "positive", "negative", "constant", "zero")))
        a, b = draw(magnitudes), draw(magnitudes)
        if kind == "straddle":
            lo, hi = -a, b
        elif kind == "positive":
            lo, hi = min(a, b), max(a, b)
        elif kind == "negative":
            lo, hi = -max(a, b), -min(a, b)
        elif kind == "constant":
            lo = hi = a if draw(st.booleans()) else -a
        else:
            lo = hi = 0.0
        lows.append(lo)
        highs.append(hi)
    return np.array(lows, np.float64).reshape(shape), np.array(highs, np.float64).reshape(shape)


@dataclass(frozen=True)
class QuantSetup:
    """A quantizer with a range computed by our own range functions."""

    bits: int
    mode: str
    role: str
    levels: int
    input_low: np.ndarray
    input_high: np.ndarray
    channels: int | None

    @property
    def steps(self) -> int:
        return self.levels - 1

    @property
    def scale(self) -> np.ndarray:
        return (self.input_high.astype(np.float64) - self.input_low) / self.steps


@st.composite
def quant_setups(draw: st.DrawFn, bits: st.SearchStrategy[int] = bit_widths) -> QuantSetup:
    """bits x mode x role x granularity, with the range from symmetric_range/asymmetric_range."""
    b = draw(bits)
    mode = draw(modes)
    role = draw(roles)
    channels = draw(channel_counts)
    lo, hi = draw(min_max_stats(channels))
    signed = draw(st.sampled_from((None, True, False)))
    _, _, levels = fq_math.level_bounds(b, mode, role, signed)
    if mode == "symmetric":
        abs_max = np.maximum(np.abs(lo), np.abs(hi))
        il, ih = fq_math.symmetric_range(lo, abs_max, levels, role, signed=signed)
    else:
        il, ih = fq_math.asymmetric_range(lo, hi, levels)
    return QuantSetup(b, mode, role, levels, il, ih, channels)


@st.composite
def arbitrary_ranges(draw: st.DrawFn, channels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """float32 bounds il < ih that need not contain zero nor put it on the grid.

    The width is at least half the magnitude of the bounds, so that even a
    16-bit grid is coarser than float32's resolution there (a narrower range
    far from zero has levels float32 cannot tell apart).
    """
    shape = _shape(channels)
    n = int(np.prod(shape, dtype=int))
    lows, highs = [], []
    for _ in range(n):
        a = draw(float32s(-100, 100))
        width = (abs(a) + 2.0**-7) * draw(st.floats(0.5, 4.0))
        lows.append(a)
        highs.append(np.float32(a) + np.float32(width))
    return np.array(lows, np.float32).reshape(shape), np.array(highs, np.float32).reshape(shape)


@st.composite
def values_for_range(draw: st.DrawFn, low: float, high: float, levels: int, size: int = 24) -> np.ndarray:
    """float32 values around [low, high]: random ones, grid points, midpoints, the bounds, 0 and beyond."""
    low, high = float(low), float(high)
    span = high - low
    steps = levels - 1
    picks = []
    for _ in range(size):
        kind = draw(st.sampled_from(("uniform", "grid", "midpoint", "special")))
        if kind == "uniform":
            picks.append(low - span / 4 + draw(st.floats(0, 1)) * span * 1.5)
        elif kind in ("grid", "midpoint"):
            k = draw(st.integers(0, steps - (kind == "midpoint")))
            picks.append(low + (k + 0.5 * (kind == "midpoint")) * span / steps)
        else:
            picks.append(draw(st.sampled_from((0.0, -0.0, low, high, low - span, high + span))))
    return np.array(picks, np.float64).astype(np.float32)


def batches(channels: int | None = None, max_n: int = 5) -> st.SearchStrategy[np.ndarray]:
    """float32 activation batches (N, C, H, W) with small spatial sizes, values of mixed scale."""
    c = channels if channels is not None else 3
    shape = st.tuples(st.integers(1, max_n), st.just(c), st.integers(1, 3), st.integers(1, 4))
    return shape.flatmap(lambda s: hnp.arrays(np.float32, s, elements=float32s(-50, 50)))


def per_sample_stats(max_n: int = 40, max_c: int = 3) -> st.SearchStrategy[np.ndarray]:
    """Per-sample statistics (N,) or (N, C), with repeated values to exercise ties."""
    shapes = st.one_of(st.tuples(st.integers(1, max_n)),
                       st.tuples(st.integers(1, max_n), st.integers(1, max_c)))
    element = st.one_of(st.sampled_from((0.0, 1.0, -1.0, 2.5)), st.floats(-1e3, 1e3, allow_nan=False))
    return shapes.flatmap(lambda s: hnp.arrays(np.float64, s, elements=element))
