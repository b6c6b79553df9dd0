"""Per-sample estimators against plain numpy loops over samples (and channels)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rewriter.calibrate import estimators as est
from strategies import MATH_SETTINGS, batches


def loop_reference(x: np.ndarray, name: str, channel_axis: int | None, p: float, side: str) -> np.ndarray:
    """One sample (and one channel) at a time, with the textbook reduction."""

    def reduce(values: np.ndarray) -> float:
        v = values.astype(np.float64).ravel()
        q = p if side == "min" else 1 - p
        return {
            "min": lambda: v.min(),
            "max": lambda: v.max(),
            "abs_max": lambda: np.abs(v).max(),
            "quantile": lambda: np.quantile(v, q, method="linear"),
            "abs_quantile": lambda: np.quantile(np.abs(v), q, method="linear"),
        }[name]()

    out = []
    for sample in x:
        if channel_axis is None:
            out.append(reduce(sample))
        else:
            axis = (channel_axis % x.ndim) - 1   # the sample has lost the batch axis
            out.append([reduce(np.take(sample, c, axis=axis)) for c in range(sample.shape[axis])])
    return np.array(out, np.float64)


NAMES = sorted(est.ESTIMATORS)


@MATH_SETTINGS
@given(
    x=batches(),
    name=st.sampled_from(NAMES),
    axis=st.sampled_from([None, 1, 2, 3, -1, -3]),
    p=st.sampled_from([0.0, 1e-4, 0.01, 0.25]),
    side=st.sampled_from(["min", "max"]),
)
def test_estimators_match_per_sample_loops(x, name, axis, p, side):
    got = est.get_estimator(name, side)(x, axis, p)
    expected = loop_reference(x, name, axis, p, side)
    assert got.dtype == np.float64
    assert got.shape == ((x.shape[0],) if axis is None else (x.shape[0], x.shape[axis]))
    # Same float64 algorithm per row: equal bits, not merely close.
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("name", NAMES)
def test_single_element_and_rank2_batches(name):
    x = np.array([[2.5]], np.float32)
    assert est.get_estimator(name, "max")(x, None, 1e-4).tolist() == [2.5]
    assert est.get_estimator(name, "max")(x, 1, 1e-4).tolist() == [[2.5]]
    # Rank-2 (N, C) activations per channel: each value is its own statistic (POT returns them unchanged).
    x2 = np.array([[1.0, -2.0], [3.0, 4.0]], np.float32)
    expected = np.abs(x2) if name.startswith("abs") else x2
    assert np.array_equal(est.get_estimator(name, "min")(x2, 1, 0.1), expected)


def test_get_estimator_without_side_is_the_raw_function():
    assert est.get_estimator("quantile") is est.estimate_quantile


def test_quantile_side_picks_the_end():
    x = np.arange(101, dtype=np.float32)[None]            # 0..100 in one sample
    assert est.ESTIMATORS["quantile"](x, None, 0.1, side="min").tolist() == [10.0]
    assert est.ESTIMATORS["quantile"](x, None, 0.1, side="max").tolist() == [90.0]
    assert est.get_estimator("abs_quantile", "max")(-x, None, 0.1).tolist() == [90.0]


def test_quantile_is_computed_in_float64():
    # Linear interpolation between two float32 neighbours gives a value float32 cannot hold.
    x = np.array([[1.0, np.float32(1.0) + np.float32(2**-23)]], np.float32)
    got = est.get_estimator("quantile", "max")(x, None, 0.25)[0]
    assert got == 1.0 + 0.75 * 2**-23


def test_nan_propagates_to_the_statistic():
    x = np.array([[1.0, np.nan], [1.0, 2.0]], np.float32)
    got = est.get_estimator("max", "max")(x, None, 1e-4)
    assert np.isnan(got[0]) and got[1] == 2.0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: est.get_estimator("absmax", "max"), "abs_max"),
        (lambda: est.get_estimator("max", "top"), "side"),
        (lambda: est.ESTIMATORS["max"](np.zeros((2, 3)), 0), "batch axis"),
        (lambda: est.ESTIMATORS["max"](np.zeros((2, 3)), 5), "out of range"),
        (lambda: est.ESTIMATORS["max"](np.zeros((0, 3)), None), "N >= 1"),
        (lambda: est.ESTIMATORS["max"](np.zeros((2, 0)), None), "empty"),
        (lambda: est.get_estimator("quantile", "min")(np.zeros((2, 3)), None, 0.7), "outlier_prob"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@MATH_SETTINGS
@given(
    shape=st.sampled_from([(4, 3, 2, 2), (5, 7), (2, 3, 5), (6,)]),
    name=st.sampled_from(NAMES),
    axis=st.sampled_from([None, 0, 1, -1]),
    data=st.data(),
)
def test_weight_stat_matches_reduction_over_other_axes(shape, name, axis, data):
    w = np.asarray(data.draw(st.lists(st.floats(-10, 10, width=32), min_size=int(np.prod(shape)),
                                      max_size=int(np.prod(shape)))), np.float32).reshape(shape)
    if axis is not None and not -w.ndim <= axis < w.ndim:
        with pytest.raises(ValueError, match="out of range"):
            est.weight_stat(w, name, axis)
        return
    got = est.weight_stat(w, name, axis, 0.01, side="max")
    if axis is None:
        expected = loop_reference(w.reshape(1, -1), name, None, 0.01, "max")[0]
        assert got.shape == ()
    else:
        moved = np.moveaxis(w, axis, 0)
        expected = np.array([loop_reference(ch.reshape(1, -1), name, None, 0.01, "max")[0] for ch in moved])
        assert got.shape == (w.shape[axis],)
    assert np.array_equal(got, expected)


def test_weight_stat_conv_example():
    w = np.zeros((2, 3, 1, 1), np.float32)
    w[0, 1] = -4.0
    w[1, 2] = 0.5
    assert est.weight_stat(w, "abs_max", 0).tolist() == [4.0, 0.5]
    assert est.weight_stat(w, "min", None, side="min") == -4.0
    # ConvTranspose weights are (C_in, C_out, kH, kW): the caller passes axis 1.
    assert est.weight_stat(w, "max", 1).tolist() == [0.0, 0.0, 0.5]


@MATH_SETTINGS
@given(x=batches(channels=2))
def test_per_channel_reduces_to_per_tensor(x):
    """max over channels of the per-channel max is the per-tensor max (min likewise)."""
    per_channel = est.get_estimator("max", "max")(x, 1, 1e-4)
    assert np.array_equal(per_channel.max(axis=1), est.get_estimator("max", "max")(x, None, 1e-4))
    per_channel = est.get_estimator("min", "min")(x, 1, 1e-4)
    assert np.array_equal(per_channel.min(axis=1), est.get_estimator("min", "min")(x, None, 1e-4))


@pytest.mark.parametrize("name", sorted(est.EXACT_ESTIMATORS))
@pytest.mark.parametrize("axis", [None, 0, 1, 3])
def test_weight_stat_of_a_large_weight_is_taken_in_blocks_with_the_same_result(name, axis, monkeypatch):
    rng = np.random.default_rng(5)
    w = rng.standard_normal((6, 5, 3, 4)).astype(np.float32)
    w[2, 1, 0, 3] = 40.0
    whole = est.weight_stat(w, name, axis, side="max")
    with_nan = w.copy()
    with_nan[4, 0, 2, 1] = np.nan
    whole_nan = est.weight_stat(with_nan, name, axis, side="max")
    monkeypatch.setattr(est, "_BLOCK_VALUES", 7)  # 360 values: blocks along the first axis not the channel's
    blocked = est.weight_stat(w, name, axis, side="max")
    assert blocked.dtype == whole.dtype == np.float64 and np.array_equal(blocked, whole)
    assert np.array_equal(est.weight_stat(with_nan, name, axis, side="max"), whole_nan, equal_nan=True)
    # A float32 weight gives what its float64 copy gives (the statistic is exact in either type).
    assert np.array_equal(est.weight_stat(w.astype(np.float64), name, axis, side="max"), whole)
