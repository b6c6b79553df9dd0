"""Aggregators against direct per-channel formulas; the range-estimator presets against pot-facts c."""
from __future__ import annotations

import itertools
import statistics

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rewriter.calibrate import aggregators as agg
from strategies import MATH_SETTINGS, per_sample_stats


def columns(x: np.ndarray) -> list[list[float]]:
    flat = np.asarray(x, np.float64).reshape(x.shape[0], -1)
    return [flat[:, c].tolist() for c in range(flat.shape[1])]


def no_outliers_reference(values: list[float], base) -> float:
    lo = np.quantile(values, 0.01, method="linear")
    hi = np.quantile(values, 0.99, method="linear")
    kept = [v for v in values if lo <= v <= hi]
    return base(kept if kept else values)


def hl_reference(values: list[float]) -> float:
    """O(n^2) Hodges-Lehmann: the median of all pair averages, i < j."""
    if len(values) == 1:
        return values[0]
    return statistics.median((a + b) / 2 for a, b in itertools.combinations(values, 2))


REFERENCES = {
    "mean": statistics.fmean,
    "max": max,
    "min": min,
    "median": statistics.median,
    "mean_no_outliers": lambda v: no_outliers_reference(v, statistics.fmean),
    "median_no_outliers": lambda v: no_outliers_reference(v, statistics.median),
    "hl_estimator": hl_reference,
}


@MATH_SETTINGS
@given(x=per_sample_stats(), name=st.sampled_from(sorted(agg.AGGREGATORS)))
def test_aggregators_match_direct_formulas(x, name):
    got = agg.aggregate(name, x)
    assert got.shape == x.shape[1:]
    expected = np.array([REFERENCES[name](col) for col in columns(x)]).reshape(x.shape[1:])
    if name in ("mean", "mean_no_outliers"):
        # statistics.fmean sums exactly (fsum); numpy sums pairwise in float64.
        # Both are within a few ulps of the exact mean: relative 1e-12 covers
        # n <= 40 values, and no other aggregator needs a tolerance.
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    else:
        assert np.array_equal(got, expected)


def test_no_outliers_drops_the_extremes():
    x = np.concatenate([np.ones(198), [1e6, -1e6]])
    assert agg.aggregate("mean_no_outliers", x) == 1.0
    assert agg.aggregate("median_no_outliers", x) == 1.0
    # Two distinct samples: nothing lies between the 1% and 99% quantiles -> plain mean.
    assert agg.aggregate("mean_no_outliers", np.array([0.0, 2.0])) == 1.0


def test_hl_examples():
    assert agg.aggregate("hl_estimator", np.array([3.0])) == 3.0
    assert agg.aggregate("hl_estimator", np.array([1.0, 3.0])) == 2.0
    # Robust to one outlier, unlike the mean.
    x = np.array([1.0, 1.1, 0.9, 1.0, 1000.0])
    assert abs(agg.aggregate("hl_estimator", x) - 1.0) < 0.1
    # A channel with NaN gives NaN; other channels are unaffected.
    got = agg.aggregate("hl_estimator", np.array([[1.0, np.nan], [3.0, 1.0]]))
    assert got[0] == 2.0 and np.isnan(got[1])


@pytest.mark.parametrize("values", [
    [0.5, -1.0, 2.0, 2.0, 2.0, 7.25, -3.0, 0.0, 0.0, 1e-9, 5.0, -1.0],
    [1.0] * 9,
    [0.0, 1.0] * 6,
    list(np.random.default_rng(3).normal(size=23)),
])
def test_kth_pair_sum_every_rank(values, monkeypatch):
    """Force the narrowing selection on tiny inputs (tiny final size, tiny samples): every rank is exact."""
    monkeypatch.setattr(agg, "HL_FINAL", 4)
    monkeypatch.setattr(agg, "_HL_SAMPLE", 8)
    s = np.sort(np.array(values, np.float64))
    sums = sorted(a + b for a, b in itertools.combinations(s.tolist(), 2))
    rng = np.random.default_rng(0)
    assert [agg._kth_pair_sum(s, k, rng) for k in range(len(sums))] == sums


@MATH_SETTINGS
@given(x=per_sample_stats(max_n=30, max_c=2))
def test_hl_narrowing_path_matches_reference(x):
    saved = agg.HL_FINAL, agg._HL_SAMPLE
    agg.HL_FINAL, agg._HL_SAMPLE = 16, 32
    try:
        got = agg.hl_estimator(x)
    finally:
        agg.HL_FINAL, agg._HL_SAMPLE = saved
    expected = np.array([hl_reference(col) for col in columns(x)]).reshape(x.shape[1:])
    assert np.array_equal(got, expected)


def test_hl_thousands_of_samples_without_the_pairs():
    """n = 2500 (3.1M pairs) in float32 with ties: exact, fast, and never materializes the pairs."""
    rng = np.random.default_rng(7)
    x = np.round(rng.standard_t(3, size=(2500, 2)), 2).astype(np.float32)
    got = agg.hl_estimator(x)
    ii, jj = np.triu_indices(2500, 1)
    x64 = x.astype(np.float64)
    expected = np.median((x64[ii] + x64[jj]) / 2, axis=0)
    assert np.array_equal(got, expected)


def test_unknown_aggregator():
    with pytest.raises(ValueError, match="hl_estimator"):
        agg.aggregate("hodges_lehmann", np.ones(3))
    with pytest.raises(ValueError, match="N >= 1"):
        agg.aggregate("mean", np.ones((0, 2)))


# --------------------------------------------------------------------------------------
# Range-estimator presets (pot-facts c, transcribed independently of the module's table)

POT_DEFAULT = {
    ("activation", "pertensor", "symmetric"): (("min", "min"), ("abs_max", "mean")),
    ("activation", "pertensor", "asymmetric"): (("min", "mean"), ("max", "mean")),
    ("activation", "perchannel", "symmetric"): (("min", "min"), ("abs_max", "max")),
    ("activation", "perchannel", "asymmetric"): (("min", "min"), ("max", "max")),
    ("weight", "perchannel", "symmetric"): (None, ("abs_max", None)),
    ("weight", "perchannel", "asymmetric"): (("min", None), ("max", None)),
}
QUANTILE_SWAP = {"min": "quantile", "max": "quantile", "abs_max": "abs_quantile"}


def _as_pairs(r: agg.RangeEstimator):
    return (None if r.min is None else (r.min.estimator, r.min.aggregator), (r.max.estimator, r.max.aggregator))


@pytest.mark.parametrize("key", sorted(POT_DEFAULT))
def test_default_preset_matches_pot(key):
    assert _as_pairs(agg.range_estimator_for(*key)) == POT_DEFAULT[key]
    if key[0] == "weight":
        assert _as_pairs(agg.range_estimator_for(key[0], "pertensor", key[2])) == POT_DEFAULT[key]


@pytest.mark.parametrize("key", sorted(POT_DEFAULT))
def test_quantile_preset_matches_pot(key):
    got = agg.range_estimator_for(*key, preset="quantile")
    low, high = POT_DEFAULT[key]
    symmetric_activation = key[0] == "activation" and key[2] == "symmetric"
    if low is not None:
        low = (low[0] if symmetric_activation else QUANTILE_SWAP[low[0]], low[1])
    high = (QUANTILE_SWAP[high[0]], high[1])
    assert _as_pairs(got) == (low, high)
    assert got.max.outlier_prob == 1e-4


def test_per_channel_symmetric_min_is_per_tensor():
    r = agg.range_estimator_for("activation", "perchannel", "symmetric")
    assert r.min.granularity == "pertensor" and r.max.granularity is None


def test_overrides():
    r = agg.range_estimator_for("activations", "pertensor", "asymmetric", "default",
                                {"max": {"type": "quantile", "outlier_prob": 1e-3, "clipping_value": 6.0},
                                 "min": {"aggregator": "median_no_outliers"}})
    assert (r.max.estimator, r.max.aggregator, r.max.outlier_prob) == ("quantile", "mean", 1e-3)
    assert r.min == agg.StatSpec("min", "median_no_outliers")
    assert r.max.apply_clipping(np.array([5.0, 7.0]), "max").tolist() == [5.0, 6.0]
    # The defaults are untouched (frozen data).
    assert agg.range_estimator_for("activation", "pertensor", "asymmetric").max.estimator == "max"
    # A min for symmetric weights needs its type.
    r = agg.range_estimator_for("weight", "perchannel", "symmetric", overrides={"min": {"type": "min"}})
    assert r.min.estimator == "min"


@pytest.mark.parametrize(
    "args, overrides, match",
    [
        (("activation", "pertensor", "symmetric", "fancy"), None, "preset"),
        (("activation", "per_tensor", "symmetric"), None, "did you mean 'pertensor'"),
        (("bias", "pertensor", "symmetric"), None, "role"),
        (("activation", "pertensor", "symmetric"), {"max": {"typ": "max"}}, "did you mean 'type'"),
        (("activation", "pertensor", "symmetric"), {"max": {"type": "absmax"}}, "did you mean 'abs_max'"),
        (("activation", "pertensor", "symmetric"), {"max": {"aggregator": "avg"}}, "aggregator"),
        (("activation", "pertensor", "symmetric"), {"mid": {}}, "side"),
        (("weight", "perchannel", "symmetric"), {"min": {"aggregator": "min"}}, "type"),
    ],
)
def test_range_estimator_errors(args, overrides, match):
    with pytest.raises(ValueError, match=match):
        agg.range_estimator_for(*args, overrides=overrides)
