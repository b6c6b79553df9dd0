"""MinMax ranges from statistics, against hand-computed numpy references."""
from __future__ import annotations

import numpy as np
import pytest

from rewriter.algorithms.minmax import (SAMPLE_REDUCER, RangeOptions, SampleReducer, StatReducer,
                                        activation_ranges, activation_reducers, sqnr_db, weight_ranges)
from rewriter.errors import UserError
from rewriter.plan import Consumer, FakeQuantizePoint, QuantPlan
from rewriter.spec.model import QuantizerConfig

A_SYM = QuantizerConfig("q8_a", 8, "symmetric", "pertensor")
A_ASYM = QuantizerConfig("q8_a", 8, "asymmetric", "pertensor")
W_SYM = QuantizerConfig("q8_w_sym", 8, "symmetric", "perchannel", -127, 127)


def _plan(*points: FakeQuantizePoint) -> QuantPlan:
    return QuantPlan("m", "CPU", "cpu.yaml", "performance", (), tuple(points), ())


def _point(tensor: str, config: QuantizerConfig, role: str = "activation", axis=None, group=None):
    return FakeQuantizePoint(tensor, role, config, (config,), (Consumer("n", 0),), channel_axis=axis,
                             unify_group=group)


def _stats(plan: QuantPlan, batches: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Run the planned reducers on whole stacks of samples, as the collector would."""
    reducers = activation_reducers(plan)
    return {t: {r.name: r(batches[t]) for r in rs} for t, rs in reducers.items()}


def test_symmetric_signed_activation_uses_mean_of_abs_max_and_the_128_over_127_low_end() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 3, 4, 4)).astype(np.float32)
    plan = _plan(_point("x", A_SYM))
    r = activation_ranges(plan, _stats(plan, {"x": x}))["x"]
    m = np.mean(np.abs(x).reshape(10, -1).max(axis=1))
    assert r.level_low == -128 and r.level_high == 127
    assert np.isclose(r.input_high, m, rtol=1e-6)
    assert np.isclose(r.input_low, -m * 128 / 127, rtol=1e-6)


def test_symmetric_non_negative_activation_is_unsigned() -> None:
    x = np.abs(np.random.default_rng(1).normal(size=(6, 8))).astype(np.float32)
    plan = _plan(_point("x", A_SYM))
    r = activation_ranges(plan, _stats(plan, {"x": x}))["x"]
    assert (r.level_low, r.level_high) == (0, 255)
    assert float(r.input_low) == 0.0
    assert np.isclose(r.input_high, np.mean(x.max(axis=1)), rtol=1e-6)


def test_asymmetric_activation_means_min_and_max_then_aligns_zero() -> None:
    x = (np.random.default_rng(2).normal(size=(8, 16)) + 1.0).astype(np.float32)
    plan = _plan(_point("x", A_ASYM))
    r = activation_ranges(plan, _stats(plan, {"x": x}))["x"]
    lo, hi = min(np.mean(x.min(axis=1)), 0.0), max(np.mean(x.max(axis=1)), 0.0)
    assert r.input_low <= lo + 1e-6 and r.input_high >= hi - 1e-6   # alignment only widens
    scale = (r.input_high - r.input_low) / 255
    zp = -r.input_low / scale
    assert abs(zp - round(float(zp))) < 1e-3   # zero on the grid
    assert (r.level_low, r.level_high) == (0, 255)


def test_per_channel_symmetric_weights_use_abs_max_per_output_channel() -> None:
    w = np.random.default_rng(3).normal(size=(4, 3, 3, 3)).astype(np.float32)
    w[2] *= 10
    plan = _plan(_point("w", W_SYM, role="weight", axis=0))
    r = weight_ranges(plan, {"w": w})["w"]
    expected = np.abs(w).reshape(4, -1).max(axis=1)
    np.testing.assert_allclose(r.input_high, expected, rtol=1e-6)
    np.testing.assert_allclose(r.input_low, -expected, rtol=1e-6)
    assert (r.level_low, r.level_high, r.axis) == (-127, 127, 0)


def test_all_zero_weight_channel_gets_a_tiny_but_valid_range() -> None:
    w = np.zeros((2, 4), np.float32)
    w[0] = 1.0
    plan = _plan(_point("w", W_SYM, role="weight", axis=0))
    r = weight_ranges(plan, {"w": w})["w"]
    assert np.all(r.input_high > 0) and r.input_high[1] == pytest.approx(0.01, rel=1e-5)


def test_unified_group_members_share_identical_ranges_from_pooled_statistics() -> None:
    rng = np.random.default_rng(4)
    a = np.abs(rng.normal(size=(5, 8))).astype(np.float32)
    b = (3 * rng.normal(size=(5, 8))).astype(np.float32)
    plan = _plan(_point("a", A_SYM, group=0), _point("b", A_SYM, group=0))
    ranges = activation_ranges(plan, _stats(plan, {"a": a, "b": b}))
    assert float(ranges["a"].input_low) == float(ranges["b"].input_low)
    assert float(ranges["a"].input_high) == float(ranges["b"].input_high)
    pooled_max = max(np.mean(np.abs(a).max(axis=1)), np.mean(np.abs(b).max(axis=1)))
    assert np.isclose(ranges["a"].input_high, pooled_max, rtol=1e-6)
    assert ranges["a"].level_low == -128   # b is signed, so the group is


def test_quantile_preset_clips_outliers() -> None:
    x = np.random.default_rng(5).normal(size=(4, 10000)).astype(np.float32)
    x[:, 0] = 1000.0
    plan = _plan(_point("x", A_SYM))
    options = RangeOptions(estimator_preset="quantile")
    reducers = activation_reducers(plan, options)
    stats = {"x": {r.name: r(x) for r in reducers["x"]}}
    r = activation_ranges(plan, stats, options)["x"]
    assert r.input_high < 10


def test_infinite_statistics_name_the_tensor() -> None:
    x = np.full((2, 4), -3.4e38, np.float32)
    x[:, 0] = np.inf
    plan = _plan(_point("mask", A_SYM))
    with pytest.raises(UserError, match="mask"):
        activation_ranges(plan, _stats(plan, {"mask": x}))


def test_reducers_are_per_sample_and_bounded() -> None:
    x = np.random.default_rng(6).normal(size=(3, 4, 50, 50)).astype(np.float32)
    sample = SampleReducer(SAMPLE_REDUCER, 64)(x)
    assert sample.shape == (3, 64)
    per_channel = SampleReducer(SAMPLE_REDUCER, 64, channel_axis=1)(x)
    assert per_channel.shape == (3, 4, 64)
    stat = StatReducer("max:abs_max", "abs_max", "max", None, 1e-4)(x)
    np.testing.assert_array_equal(stat, np.abs(x).reshape(3, -1).max(axis=1))


def test_sqnr_matches_the_definition() -> None:
    s = np.array([1.0, 2.0, 3.0])
    q = np.array([1.0, 2.5, 3.0])
    assert sqnr_db(s, q) == pytest.approx(10 * np.log10(14 / 0.25))
    assert sqnr_db(s, s) == float("inf")


def test_error_subsample_stays_small_per_sample_for_per_channel_activations() -> None:
    a_ch = QuantizerConfig("q8_a_ch", 8, "symmetric", "perchannel")
    plan = _plan(_point("t", A_SYM), _point("c", a_ch, axis=1))
    samples = {name: next(r for r in rs if r.name == SAMPLE_REDUCER)
               for name, rs in activation_reducers(plan, error_sample=64).items()}
    x = np.random.default_rng(2).normal(size=(2, 960, 7, 7)).astype(np.float32)
    assert samples["t"](x).shape == (2, 64)
    # Every channel is sampled, a few values each, so a wide depthwise input does not keep 64 x 960 per sample.
    assert samples["c"](x).shape == (2, 960, 8)
