"""fq_math against independent references: an enumerated grid, exact rationals, POT's numbers."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rewriter.algorithms import fq_math as fq
from strategies import (
    MATH_SETTINGS,
    BITS,
    QuantSetup,
    arbitrary_ranges,
    bit_widths,
    channel_counts,
    min_max_stats,
    quant_setups,
    values_for_range,
)

# --------------------------------------------------------------------------------------
# The brute-force reference


def nearest_levels(x: float, il: float, ih: float, levels: int) -> set[int]:
    """Index of the grid value il + k*(ih-il)/(levels-1) nearest to x, ties to even k.

    The grid is enumerated in float64 to find the neighbourhood; the choice
    among the three neighbours is made in exact rational arithmetic, so ties are
    real ties (all inputs are floats, hence exact rationals). One allowance:
    when x is within 2^-48 (relative to the magnitudes involved) of a tie --
    far below anything float64 arithmetic can resolve, e.g. il = 1e-38 next to
    ih = 0.0078 -- both neighbours are accepted.
    """
    steps = levels - 1
    grid = il + np.arange(levels) * ((ih - il) / steps)
    k = int(np.argmin(np.abs(x - grid)))
    X, IL, IH = Fraction(float(x)), Fraction(float(il)), Fraction(float(ih))
    ranked = sorted(
        (abs(X - (IL + j * (IH - IL) / steps)), j % 2, j) for j in (k - 1, k, k + 1) if 0 <= j <= steps
    )
    allowed = {ranked[0][2]}
    resolution = Fraction(2) ** -48 * (abs(X) + abs(IL) + abs(IH))
    if len(ranked) > 1 and ranked[1][0] - ranked[0][0] <= resolution:
        allowed.add(ranked[1][2])
    return allowed


def grid_value(k: int, il: float, ih: float, levels: int) -> float:
    return float(Fraction(float(il)) + k * (Fraction(float(ih)) - Fraction(float(il))) / (levels - 1))


def ulp32(v: float) -> float:
    return float(np.spacing(np.float32(abs(v))))


def check_against_grid(x: np.ndarray, il: float, ih: float, levels: int, out: np.ndarray) -> None:
    """Each output must be the nearest grid value: same level index, value within a few float32 ulps.

    Tolerance on the value: the bounds and outputs are float32. When zero is on
    the grid, fake_quantize returns (k - z) * float32(scale), which differs from
    the exact grid value by the rounding of the scale (<= 0.5 ulp of the largest
    bound after multiplying by |k - z|), the allowed misplacement of zero
    (<= steps * 2^-22 steps = 2^-22 of the span <= 8 ulps of the largest bound)
    and the final rounding (0.5 ulp). 10 ulps covers that and stays far below
    half a step for every bit width tested (at 16 bits half a step is ~60 ulps),
    so a wrong level can never pass; the index check below is exact anyway.
    """
    steps = levels - 1
    tol = 10 * ulp32(max(abs(il), abs(ih)))
    assert tol < (ih - il) / steps / 2
    for xi, yi in zip(x.ravel().tolist(), out.ravel().tolist()):
        allowed = nearest_levels(xi, il, ih, levels)
        k_out = int(np.rint((yi - il) * steps / (ih - il)))
        assert k_out in allowed, (xi, yi, allowed, k_out)
        assert abs(yi - grid_value(k_out, il, ih, levels)) <= tol, (xi, yi, k_out)


# --------------------------------------------------------------------------------------
# level_bounds


@pytest.mark.parametrize(
    "bits, mode, role, signed, expected",
    [
        (8, "symmetric", "weight", None, (-127, 127, 255)),
        (8, "symmetric", "weights", False, (-127, 127, 255)),      # weights are always narrow
        (8, "symmetric", "activation", None, (-128, 127, 256)),
        (8, "symmetric", "activation", True, (-128, 127, 256)),
        (8, "symmetric", "activation", False, (0, 255, 256)),
        (8, "asymmetric", "activation", None, (0, 255, 256)),
        (8, "asymmetric", "activation", True, (-128, 127, 256)),
        (8, "asymmetric", "weight", None, (-128, 127, 256)),
        (4, "symmetric", "weight", None, (-7, 7, 15)),
        (2, "symmetric", "weight", None, (-1, 1, 3)),
        (16, "symmetric", "activation", True, (-32768, 32767, 65536)),
        (16, "symmetric", "output", False, (0, 65535, 65536)),
    ],
)
def test_level_bounds_table(bits, mode, role, signed, expected):
    assert fq.level_bounds(bits, mode, role, signed) == expected


def test_level_bounds_explicit_override():
    assert fq.level_bounds(8, "symmetric", "activation", level_low=-127, level_high=127) == (-127, 127, 255)
    assert fq.level_bounds(16, "symmetric", "weight", level_low=-32767, level_high=32767)[2] == 65535


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(bits=1, mode="symmetric", role="weight"),
        dict(bits=8, mode="sym", role="weight"),
        dict(bits=8, mode="symmetric", role="bias"),
        dict(bits=8, mode="symmetric", role="weight", level_low=-3),
        dict(bits=8, mode="symmetric", role="weight", level_low=3, level_high=3),
    ],
)
def test_level_bounds_rejects(kwargs):
    with pytest.raises(ValueError):
        fq.level_bounds(**kwargs)


# --------------------------------------------------------------------------------------
# fake_quantize vs the enumerated grid


@MATH_SETTINGS
@given(setup=quant_setups(), data=st.data())
def test_fake_quantize_matches_grid_for_computed_ranges(setup: QuantSetup, data):
    lows = np.atleast_1d(setup.input_low)
    highs = np.atleast_1d(setup.input_high)
    for il, ih in zip(lows.tolist(), highs.tolist()):
        x = data.draw(values_for_range(il, ih, setup.levels, size=12))
        out = fq.fake_quantize(x, np.float32(il), np.float32(ih), setup.levels)
        assert out.dtype == np.float32
        check_against_grid(x, il, ih, setup.levels, out)


@MATH_SETTINGS
@given(bits=bit_widths, bounds=arbitrary_ranges(), data=st.data())
def test_fake_quantize_matches_grid_for_arbitrary_ranges(bits, bounds, data):
    il, ih = (float(b) for b in bounds)
    levels = 2**bits
    x = data.draw(values_for_range(il, ih, levels, size=12))
    check_against_grid(x, il, ih, levels, fq.fake_quantize(x, bounds[0], bounds[1], levels))


@MATH_SETTINGS
@given(setup=quant_setups(), data=st.data(), spatial=st.integers(1, 5))
def test_fake_quantize_per_channel_broadcasting(setup: QuantSetup, data, spatial):
    """Per-channel bounds along axis 1 of (N, C, S) equal channel-by-channel per-tensor calls."""
    if setup.channels is None:
        return
    c = setup.channels
    x = data.draw(values_for_range(float(np.min(setup.input_low)), float(np.max(setup.input_high)),
                                   setup.levels, size=2 * c * spatial)).reshape(2, c, spatial)
    by_axis = fq.fake_quantize(x, setup.input_low, setup.input_high, setup.levels, axis=1)
    by_shape = fq.fake_quantize(x, setup.input_low[:, None], setup.input_high[:, None], setup.levels)
    assert np.array_equal(by_axis, by_shape)
    for ch in range(c):
        one = fq.fake_quantize(x[:, ch], setup.input_low[ch], setup.input_high[ch], setup.levels)
        assert np.array_equal(by_axis[:, ch], one)
        check_against_grid(x[:, ch], float(setup.input_low[ch]), float(setup.input_high[ch]),
                           setup.levels, by_axis[:, ch])


@pytest.mark.parametrize("bits", list(range(2, 9)) + [16])
@pytest.mark.parametrize("mode", ["symmetric", "asymmetric"])
def test_fake_quantize_grid_exhaustive_levels(bits, mode):
    """Every level and every midpoint between levels, for one range per mode and bit width."""
    role = "weight" if mode == "symmetric" else "activation"
    _, _, levels = fq.level_bounds(bits, mode, role)
    if mode == "symmetric":
        il, ih = fq.symmetric_range(None, np.float32(1.7), levels, role)
    else:
        il, ih = fq.asymmetric_range(np.float32(-0.3), np.float32(2.9), levels)
    il, ih = float(il), float(ih)
    ks = np.arange(levels) if levels <= 256 else np.linspace(0, levels - 1, 300).astype(int)
    step = (ih - il) / (levels - 1)
    x = np.concatenate([il + ks * step, il + (ks[:-1] + 0.5) * step, il + (ks + 0.3) * step]).astype(np.float32)
    check_against_grid(x, il, ih, levels, fq.fake_quantize(x, il, ih, levels))


def test_fake_quantize_ties_round_to_even():
    # Grid 0, 1, 2, 3 (il=0, ih=3, 4 levels): 0.5 -> 0, 1.5 -> 2, 2.5 -> 2.
    x = np.array([0.5, 1.5, 2.5, -7.0, 3.0, 3.5], np.float32)
    assert fq.fake_quantize(x, 0.0, 3.0, 4).tolist() == [0.0, 2.0, 2.0, 0.0, 3.0, 3.0]


def test_fake_quantize_openvino_edge_semantics():
    # x <= min(il, ih) -> output_low; x > max -> output_high; NaN stays NaN.
    x = np.array([-1.0, 0.0, 1.0, np.nan, np.inf, -np.inf], np.float32)
    out = fq.fake_quantize(x, 0.0, 1.0, 256)
    assert out[:3].tolist() == [0.0, 0.0, 1.0]
    assert np.isnan(out[3]) and out[4] == 1.0 and out[5] == 0.0
    # Degenerate range il == ih: no division by zero, only the two ends.
    assert fq.fake_quantize(np.array([0.5, 1.0, 2.0]), 1.0, 1.0, 256).tolist() == [1.0, 1.0, 1.0]
    # Output range different from the input range (POT's saturation fix doubles it).
    x = np.array([-1.0, 0.0, 0.5, 1.0], np.float32)
    out = fq.fake_quantize(x, -1.0, 1.0, 255, -2.0, 2.0)
    # 0.5 is level 190.5 of 0..254 -> 190 (even) -> 63/127 of the half range.
    assert out[1] == 0.0
    assert np.allclose(out, [-2.0, 0.0, 2 * 63 / 127, 2.0], rtol=1e-7, atol=0)


def test_fake_quantize_dtypes():
    x64 = np.linspace(-1, 1, 11)
    assert fq.fake_quantize(x64, -1.0, 1.0, 255).dtype == np.float64
    assert fq.fake_quantize(x64.astype(np.float32), -1.0, 1.0, 255).dtype == np.float32
    assert fq.fake_quantize(np.arange(3), 0.0, 2.0, 3).dtype == np.float32
    assert fq.fake_quantize(np.float32(0.3), 0.0, 1.0, 11).shape == ()
    with pytest.raises(ValueError):
        fq.fake_quantize(x64, -1.0, 1.0, 1)


# --------------------------------------------------------------------------------------
# Properties of the computed ranges


@MATH_SETTINGS
@given(setup=quant_setups())
def test_float_zero_is_exact(setup: QuantSetup):
    shape = np.shape(setup.input_low)
    zeros = np.zeros((3,) + shape, np.float32)
    out = fq.fake_quantize(zeros, setup.input_low, setup.input_high, setup.levels)
    assert np.all(out == 0.0)
    # ... and QDQ agrees: zero sits on level zero_point.
    scale, zp, qmin, qmax = fq.qdq_params(setup.input_low, setup.input_high, setup.levels,
                                          storage_signed=bool(np.any(setup.input_low < 0)))
    assert np.all((qmin <= zp) & (zp <= qmax))


@MATH_SETTINGS
@given(setup=quant_setups(), data=st.data())
def test_error_at_most_half_a_step_inside_range(setup: QuantSetup, data):
    lows = np.atleast_1d(setup.input_low).astype(np.float64)
    highs = np.atleast_1d(setup.input_high).astype(np.float64)
    for il, ih in zip(lows, highs):
        u = np.array(data.draw(st.lists(st.floats(0, 1), min_size=1, max_size=20)))
        x = (il + u * (ih - il)).astype(np.float32)
        x = np.clip(x, np.float32(il), np.float32(ih))
        out = fq.fake_quantize(x, np.float32(il), np.float32(ih), setup.levels)
        step = (ih - il) / (setup.levels - 1)
        # Half a step, plus the few float32 ulps of check_against_grid's tolerance.
        eps = 10 * ulp32(max(abs(il), abs(ih)))
        assert np.all(np.abs(x.astype(np.float64) - out) <= step / 2 + eps)


@MATH_SETTINGS
@given(setup=quant_setups())
def test_ranges_contain_the_statistics_side(setup: QuantSetup):
    assert np.all(setup.input_low <= 0) and np.all(setup.input_high >= 0)
    assert np.all(setup.input_high > setup.input_low)
    assert setup.input_low.dtype == np.float32 and setup.input_high.dtype == np.float32
    assert setup.input_low.shape == (() if setup.channels is None else (setup.channels,))


@MATH_SETTINGS
@given(channels=channel_counts, stats=st.data(), bits=bit_widths)
def test_asymmetric_range_contains_statistics(channels, stats, bits):
    lo, hi = stats.draw(min_max_stats(channels))
    il, ih = fq.asymmetric_range(lo, hi, 2**bits)
    assert np.all(il <= np.minimum(lo, 0)) and np.all(ih >= np.maximum(hi, 0))


@MATH_SETTINGS
@given(
    low=st.floats(-1e3, 0.0),
    high=st.floats(0.0, 1e3),
    bits=bit_widths,
)
def test_tune_range_never_narrows_and_puts_zero_on_grid(low, high, bits):
    levels = 2**bits
    steps = levels - 1
    if high - low <= 0:
        return
    a, b = fq.tune_range(np.array(low), np.array(high), levels)
    assert a <= low and b >= high
    position = -a * steps / (b - a)
    assert abs(position - round(position)) <= 1e-9 * steps


@MATH_SETTINGS
@given(
    lows=st.lists(st.floats(-1e3, 0.0), min_size=1, max_size=5),
    widths=st.lists(st.floats(1e-3, 1e3), min_size=5, max_size=5),
    bits=bit_widths,
)
def test_tune_range_unified_zp_shares_the_zero_level(lows, widths, bits):
    levels = 2**bits
    steps = levels - 1
    low = np.array(lows)
    high = low + np.array(widths[: len(lows)])
    high = np.maximum(high, 0.0)
    a, b = fq.tune_range_unified_zp(low, high, levels)
    assert np.all(a <= low) and np.all(b >= high)
    positions = -a * steps / (b - a)
    assert np.allclose(positions, np.rint(positions[0]), rtol=0, atol=1e-9 * steps)


def test_tune_range_keeps_ranges_with_zero_at_an_end():
    assert [float(v) for v in fq.tune_range(np.array(0.0), np.array(5.0), 256)] == [0.0, 5.0]
    assert [float(v) for v in fq.tune_range(np.array(-5.0), np.array(0.0), 256)] == [-5.0, 0.0]


def test_tune_range_small_negative_tail_moves_zero_to_level_one():
    # p = 0.001 * 255 / 10.001 = 0.0255 rounds to level 0: POT would keep the range and
    # leave zero off the grid; we put it on level 1 by widening low to one step.
    a, b = fq.tune_range(np.array(-0.001), np.array(10.0), 256)
    assert b == 10.0 and np.isclose(a, -10.0 / 254)


def test_tune_range_rejects_ranges_without_zero():
    with pytest.raises(ValueError):
        fq.tune_range(np.array(1.0), np.array(2.0), 256)


# --------------------------------------------------------------------------------------
# symmetric_range / asymmetric_range: POT's numbers and edge cases


def test_signed_symmetric_activation_example_from_pot():
    lo, hi = fq.symmetric_range(np.float32(-0.5), np.float32(3.7624), 256, "activation")
    assert hi == np.float32(3.7624)
    assert lo == pytest.approx(-3.7624 * 128 / 127, rel=1e-7)
    assert str(lo).startswith("-3.792")
    scale, zp, qmin, qmax = fq.qdq_params(lo, hi, 256, storage_signed=True)
    assert (int(zp), qmin, qmax) == (0, -128, 127)
    assert float(scale) == pytest.approx(3.7624 / 127, rel=1e-6)


def test_symmetric_ranges_by_role_and_sign():
    m = np.float32(2.0)
    assert [float(v) for v in fq.symmetric_range(None, m, 255, "weight")] == [-2.0, 2.0]
    assert [float(v) for v in fq.symmetric_range(np.float32(0.0), m, 256, "activation")] == [0.0, 2.0]
    lo, _ = fq.symmetric_range(np.float32(0.0), m, 256, "activation", signed=True)
    assert lo == pytest.approx(-2.0 * 128 / 127)
    lo, _ = fq.symmetric_range(np.float32(0.0), m, 256, "activation", unsigned_allowed=False)
    assert lo == pytest.approx(-2.0 * 128 / 127)
    # signed=False does not force unsigned on negative data (POT's meaning of signed).
    lo, _ = fq.symmetric_range(np.float32(-1.0), m, 256, "activation", signed=False)
    assert lo < 0
    # An odd (narrow) level count keeps zero on the grid with a symmetric range.
    assert [float(v) for v in fq.symmetric_range(np.float32(-1.0), m, 255, "activation")] == [-2.0, 2.0]
    # Per-channel max with a per-tensor min (POT's per-channel symmetric activations).
    lo, hi = fq.symmetric_range(np.float32(0.1), np.array([1.0, 2.0], np.float32), 256, "activation")
    assert lo.tolist() == [0.0, 0.0] and hi.tolist() == [1.0, 2.0]


def test_symmetric_zero_filter_fix():
    lo, hi = fq.symmetric_range(None, np.array([0.0, 1e-6, 4.0]), 255, "weight")
    assert np.allclose(hi, [0.04, 0.04, 4.0]) and np.all(lo == -hi)
    lo, hi = fq.symmetric_range(None, np.array(0.0), 255, "weight")
    assert np.isclose(hi, 8e-5) and lo == -hi


def test_edge_case_tensors():
    """All-zero, constant, all-positive, all-negative and single-element tensors, both modes."""
    cases = {
        "zeros": np.zeros((4, 3), np.float32),
        "constant": np.full((4, 3), 5.0, np.float32),
        "negative constant": np.full((2, 2), -0.25, np.float32),
        "positive": np.array([[0.5, 2.0, 3.0]], np.float32),
        "negative": np.array([[-0.5, -2.0, -3.0]], np.float32),
        "single": np.array([[1.5]], np.float32),
    }
    for name, t in cases.items():
        lo, hi, am = float(t.min()), float(t.max()), float(np.abs(t).max())
        for role, mode, levels in [("weight", "symmetric", 255), ("activation", "symmetric", 256),
                                   ("activation", "asymmetric", 256), ("weight", "asymmetric", 16)]:
            if mode == "symmetric":
                il, ih = fq.symmetric_range(lo, am, levels, role)
            else:
                il, ih = fq.asymmetric_range(lo, hi, levels)
            assert ih > il, name
            out = fq.fake_quantize(t, il, ih, levels)
            assert np.all(np.abs(out - t) <= (float(ih) - float(il)) / (levels - 1) / 2 + 1e-6), (name, mode)
            assert fq.fake_quantize(np.float32(0), il, ih, levels) == 0.0
            if name == "zeros":
                assert np.all(out == 0.0)
            fq.qdq_params(il, ih, levels, storage_signed=bool(il < 0))  # representable as QDQ


def test_all_negative_asymmetric_puts_zero_on_the_top_level():
    il, ih = fq.asymmetric_range(np.float32(-3.0), np.float32(-1.0), 256)
    assert (float(il), float(ih)) == (-3.0, 0.0)
    scale, zp, qmin, qmax = fq.qdq_params(il, ih, 256, storage_signed=False)
    assert int(zp) == 255 == qmax


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_statistics_raise(bad):
    with pytest.raises(ValueError, match="non-finite"):
        fq.symmetric_range(np.float32(0), np.array([1.0, bad]), 256, "activation")
    with pytest.raises(ValueError, match="non-finite"):
        fq.symmetric_range(np.array(bad), np.float32(1.0), 256, "activation")
    with pytest.raises(ValueError, match="non-finite"):
        fq.asymmetric_range(np.array([0.0, bad]), np.array([1.0, 1.0]), 256)
    with pytest.raises(ValueError, match="non-finite"):
        fq.qdq_params(np.float32(bad), np.float32(1.0), 256, True)


def test_range_errors():
    with pytest.raises(ValueError, match="min_stat"):
        fq.symmetric_range(None, np.float32(1.0), 256, "activation")
    with pytest.raises(ValueError, match="exceeds"):
        fq.asymmetric_range(np.float32(2.0), np.float32(1.0), 256)
    with pytest.raises(ValueError, match="float32"):
        fq.symmetric_range(None, np.float64(1e39), 255, "weight")


# --------------------------------------------------------------------------------------
# QDQ parameters


@pytest.mark.parametrize(
    "stats, levels, role, mode, storage_signed, expected",
    [
        # narrow 8-bit weights -> int8, zp 0, clip to -127..127
        ((None, 1.0), 255, "weight", "symmetric", True, (0, -127, 127, "int8")),
        # signed 8-bit activations -> int8 zp 0 (the 128/127 range)
        ((-1.0, 1.0), 256, "activation", "symmetric", True, (0, -128, 127, "int8")),
        # unsigned 8-bit activations -> uint8 zp 0
        ((0.0, 1.0), 256, "activation", "symmetric", False, (0, 0, 255, "uint8")),
        # 4-bit symmetric weights -> int4, zp 0, clip to -7..7
        ((None, 1.0), 15, "weight", "symmetric", True, (0, -7, 7, "int4")),
        # 16-bit signed activations -> int16
        ((-1.0, 1.0), 65536, "activation", "symmetric", True, (0, -32768, 32767, "int16")),
        # 2-bit weights -> three levels in int4
        ((None, 1.0), 3, "weight", "symmetric", True, (0, -1, 1, "int4")),
    ],
)
def test_qdq_params_table(stats, levels, role, mode, storage_signed, expected):
    il, ih = fq.symmetric_range(stats[0], np.float32(stats[1]), levels, role)
    scale, zp, qmin, qmax = fq.qdq_params(il, ih, levels, storage_signed)
    assert (int(zp), qmin, qmax, fq.storage_dtype_for(qmin, qmax)) == expected
    assert scale.dtype == np.float32 and zp.dtype == np.int64


def test_qdq_params_asymmetric_zero_point():
    il, ih = fq.asymmetric_range(np.float32(-1.0), np.float32(3.0), 256)
    scale, zp, qmin, qmax = fq.qdq_params(il, ih, 256, storage_signed=False)
    assert (qmin, qmax) == (0, 255)
    assert int(zp) == round(-float(il) / float(scale)) == 64
    s2, zp2, qmin2, qmax2 = fq.qdq_params(il, ih, 256, storage_signed=True)
    assert int(zp2) == 64 - 128 and (qmin2, qmax2) == (-128, 127) and s2 == scale


def test_qdq_params_rejects_off_grid_and_empty_ranges():
    with pytest.raises(ValueError, match="not on a grid level"):
        fq.qdq_params(np.float32(-0.3), np.float32(1.0), 4, True)
    with pytest.raises(ValueError, match="exceed"):
        fq.qdq_params(np.float32(1.0), np.float32(1.0), 256, True)


@MATH_SETTINGS
@given(setup=quant_setups(), data=st.data())
def test_numpy_qdq_emulation_equals_fake_quantize(setup: QuantSetup, data):
    """QuantizeLinear/DequantizeLinear computed in float32 as the ONNX spec says equal fake_quantize.

    Inputs are kept off the rounding ties (a fraction <= 0.4 of a step from a
    level), where the two ways of computing the level index cannot disagree.
    """
    storage_signed = data.draw(st.booleans())
    scale, zp, qmin, qmax = fq.qdq_params(setup.input_low, setup.input_high, setup.levels, storage_signed)
    lows = np.atleast_1d(setup.input_low)
    highs = np.atleast_1d(setup.input_high)
    for c in range(lows.size):
        il, ih = float(lows[c]), float(highs[c])
        k = np.array(data.draw(st.lists(st.integers(0, setup.steps), min_size=1, max_size=10)))
        u = np.array(data.draw(st.lists(st.floats(-0.4, 0.4), min_size=k.size, max_size=k.size)))
        x = (il + (k + u) * (ih - il) / setup.steps).astype(np.float32)
        x = np.clip(x, lows[c], highs[c])   # the emitter's clip to the level range
        s = np.atleast_1d(scale)[c]
        z = np.atleast_1d(zp)[c]
        q = np.clip(np.rint(x / s) + z, qmin, qmax)
        y = ((q - z).astype(np.float32) * s).astype(np.float32)
        assert np.array_equal(y, fq.fake_quantize(x, lows[c], highs[c], setup.levels))


@pytest.mark.parametrize(
    "low, high, dtype",
    [(-8, 7, "int4"), (-7, 7, "int4"), (0, 15, "uint4"), (0, 7, "uint4"), (-1, 15, "int8"),
     (0, 255, "uint8"), (-128, 127, "int8"), (-129, 127, "int16"), (0, 256, "uint16"),
     (0, 65535, "uint16"), (-32768, 32767, "int16"), (-1, 65535, "int32"), (0, 2**31 - 1, "int32")],
)
def test_storage_dtype_for(low, high, dtype):
    assert fq.storage_dtype_for(low, high) == dtype


def test_storage_dtype_for_rejects_too_wide():
    with pytest.raises(ValueError):
        fq.storage_dtype_for(0, 2**32 - 1)


def test_bit_widths_in_strategies_cover_the_brief():
    assert set(BITS) == set(range(2, 9)) | {16}
