"""Aggregators: combine per-sample statistics over the calibration set; default range estimators.

``aggregate(name, per_sample)`` reduces axis 0 (samples) of an array of shape
(N,) or (N, C) to () or (C,), in float64. The caller stacks the per-sample
results of ``estimators`` as it streams over the data: that is
O(samples x channels) memory, small next to the activations themselves (the
raw tensors are never kept, unlike histogram calibrators).

Aggregators (the original tool's):

==================  ==================================================================
name                per channel
==================  ==================================================================
mean, max, min      the plain reductions
median              ``np.median``
mean_no_outliers    mean of the values within the [1%, 99%] quantiles (linear)
median_no_outliers  median of the same values
hl_estimator        Hodges-Lehmann: median over pairs i < j of (x_i + x_j) / 2
==================  ==================================================================

``DEFAULT_RANGE_ESTIMATORS`` holds POT's "default" and "quantile" presets
(the original tool's defaults) as data; ``range_estimator_for`` looks one up and applies user
overrides.

``population_reason`` says when a range must cover the whole calibration
population instead (the per-sample extremes aggregated by ``min``/``max``):
a model input, or a tensor with fewer than ``FEW_VALUES_PER_SAMPLE`` values
per sample.

Example:
    >>> import numpy as np
    >>> per_sample = np.array([[1.0, 10.0], [2.0, 20.0], [9.0, 30.0]])   # N=3 samples, C=2
    >>> aggregate("mean", per_sample).tolist(), aggregate("hl_estimator", per_sample).tolist()
    ([4.0, 20.0], [5.0, 20.0])
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from typing import Any, Callable, Literal, Mapping

import numpy as np

from rewriter.calibrate.estimators import DEFAULT_OUTLIER_PROB, ESTIMATORS
from rewriter.levels import normalize_role

__all__ = [
    "AGGREGATORS",
    "DEFAULT_RANGE_ESTIMATORS",
    "FEW_VALUES_PER_SAMPLE",
    "NO_OUTLIERS_ALPHA",
    "RangeEstimator",
    "StatSpec",
    "aggregate",
    "get_aggregator",
    "hl_estimator",
    "population_reason",
    "range_estimator_for",
]

Aggregator = Callable[[np.ndarray], np.ndarray]

#: Share of samples cut at each end by the *_no_outliers aggregators (POT's alpha).
NO_OUTLIERS_ALPHA = 0.01


def _samples(per_sample: np.ndarray) -> np.ndarray:
    x = np.asarray(per_sample, dtype=np.float64)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"expected per-sample statistics of shape (N,) or (N, C) with N >= 1, got {x.shape}")
    return x


def _mean(x: np.ndarray) -> np.ndarray:
    return np.mean(_samples(x), axis=0)


def _max(x: np.ndarray) -> np.ndarray:
    return np.max(_samples(x), axis=0)


def _min(x: np.ndarray) -> np.ndarray:
    return np.min(_samples(x), axis=0)


def _median(x: np.ndarray) -> np.ndarray:
    return np.median(_samples(x), axis=0)


def _inliers(x: np.ndarray) -> np.ndarray:
    """Mask of the values within the per-channel [alpha, 1 - alpha] quantiles."""
    low = np.quantile(x, NO_OUTLIERS_ALPHA, axis=0, method="linear")
    high = np.quantile(x, 1.0 - NO_OUTLIERS_ALPHA, axis=0, method="linear")
    return (x >= low) & (x <= high)


def _mean_no_outliers(per_sample: np.ndarray) -> np.ndarray:
    """Mean of the inliers; channels with no inlier (two distinct samples) fall back to the mean."""
    x = _samples(per_sample)
    keep = _inliers(x)
    count = keep.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        kept_mean = np.where(keep, x, 0.0).sum(axis=0) / count
    return np.where(count > 0, kept_mean, np.mean(x, axis=0))


def _median_no_outliers(per_sample: np.ndarray) -> np.ndarray:
    """Median of the inliers; channels with no inlier fall back to the median."""
    x = _samples(per_sample)
    keep = _inliers(x)
    flat = x.reshape(x.shape[0], -1)
    keep_flat = keep.reshape(flat.shape)
    out = np.empty(flat.shape[1])
    for c in range(flat.shape[1]):
        # A loop over channels: each channel keeps a different number of samples.
        values = flat[keep_flat[:, c], c]
        out[c] = np.median(values) if values.size else np.median(flat[:, c])
    return out.reshape(x.shape[1:])


# --------------------------------------------------------------------------------------
# Hodges-Lehmann

#: Candidate pair sums at or below which the selection partitions them directly
#: (at most this many, or 8 per sample, are materialized at once).
HL_FINAL = 1 << 16
_HL_SAMPLE = 4096


def hl_estimator(per_sample: np.ndarray) -> np.ndarray:
    """Hodges-Lehmann estimator per channel: median over pairs i < j of (x_i + x_j) / 2.

    Exact: bit-equal to ``np.median`` over the materialized pair averages. With
    up to ``HL_FINAL`` pairs (about 360 samples) a channel's pair sums are
    partitioned directly. Beyond that the median pair sum is found by selection
    in the implicit sorted matrix s_i + s_j (s = the sorted samples): sample
    candidates, bracket the wanted rank between two sample quantiles, count each
    row's candidates below and inside the bracket by binary search, keep the
    part holding the rank, repeat. Memory O(n) per channel instead of the n^2/2
    pairs; two or three rounds suffice for thousands of samples. A single
    sample is its own estimate; channels with NaN/inf give NaN.

    >>> float(hl_estimator(np.array([0.0, 1.0, 2.0, 100.0])))   # pair means 0.5 1 1.5 50 50.5 51
    25.75
    """
    x = _samples(per_sample)
    n = x.shape[0]
    flat = x.reshape(n, -1)
    if n == 1:
        return flat[0].reshape(x.shape[1:]).copy()
    pairs = n * (n - 1) // 2
    # np.median of an even count averages the two middle values; we do the same.
    ranks = sorted({(pairs - 1) // 2, pairs // 2})
    out = np.full(flat.shape[1], np.nan)
    rng = np.random.default_rng(0)  # pivots only change the speed, never the result
    for c in np.flatnonzero(np.isfinite(flat).all(axis=0)):
        s = np.sort(flat[:, c])
        middle = np.array([_kth_pair_sum(s, r, rng) for r in ranks])
        out[c] = np.mean(middle / 2.0)
    return out.reshape(x.shape[1:])


def _first_index(s: np.ndarray, lo: np.ndarray, hi: np.ndarray, value: float, strict: bool) -> np.ndarray:
    """Per row i, the first j in [lo_i, hi_i) with s_i + s_j >= value (> value if strict), else hi_i.

    A vectorized binary search over rows. It is exact because float addition is
    monotone: s_j <= s_k implies fl(s_i + s_j) <= fl(s_i + s_k), so each row of
    computed pair sums is sorted.
    """
    left, right = lo.copy(), hi.copy()
    last = s.size - 1
    while True:
        active = left < right
        if not active.any():
            return left
        mid = (left + right) // 2
        sums = s + s[np.minimum(mid, last)]
        hit = sums > value if strict else sums >= value
        right = np.where(active & hit, mid, right)
        left = np.where(active & ~hit, mid + 1, left)


def _kth_pair_sum(s: np.ndarray, k: int, rng: np.random.Generator) -> float:
    """The k-th smallest (0-based) of fl(s_i + s_j) over i < j, for sorted finite s."""
    n = s.size
    rows = np.arange(n)
    lo = rows + 1                      # row i holds columns [lo_i, hi_i)
    hi = np.full(n, n)
    while True:
        sizes = hi - lo
        total = int(sizes.sum())
        if total <= max(HL_FINAL, 8 * n):
            row_of = np.repeat(rows, sizes)
            starts = np.cumsum(sizes) - sizes
            cols = lo[row_of] + (np.arange(total) - starts[row_of])
            return float(np.partition(s[row_of] + s[cols], k)[k])
        # Sample candidates uniformly and bracket rank k by sample quantiles
        # (+-3 sqrt(m) positions: the true rank falls outside with negligible odds,
        # and then we still shrink to the side that holds it).
        m = _HL_SAMPLE
        cum = np.cumsum(sizes)
        picks = rng.integers(0, total, size=m)
        prow = np.searchsorted(cum, picks, side="right")
        pcol = lo[prow] + (picks - (cum[prow] - sizes[prow]))
        sample = np.sort(s[prow] + s[pcol])
        centre = k / total * m
        margin = 3.0 * np.sqrt(m)
        v_lo = sample[int(max(0.0, np.floor(centre - margin)))]
        v_hi = sample[int(min(m - 1.0, np.ceil(centre + margin)))]
        a = _first_index(s, lo, hi, v_lo, strict=False)
        b = _first_index(s, lo, hi, v_hi, strict=True)
        below = int((a - lo).sum())
        inside = int((b - a).sum())
        if inside == total:
            # Every candidate lies in [v_lo, v_hi] (heavy ties): split at one pivot.
            v = sample[int(min(m - 1, max(0, round(centre))))]
            a = _first_index(s, lo, hi, v, strict=False)
            b = _first_index(s, lo, hi, v, strict=True)
            below = int((a - lo).sum())
            equal = int((b - a).sum())
            if below <= k < below + equal:
                return float(v)
            if k < below:
                hi = a
            else:
                lo, k = b, k - below - equal
        elif k < below:
            hi = a
        elif k < below + inside:
            lo, hi, k = a, b, k - below
        else:
            lo, k = b, k - below - inside


#: Aggregator name (as in specs and POT configs) -> function over axis 0.
AGGREGATORS: dict[str, Aggregator] = {
    "mean": _mean,
    "max": _max,
    "min": _min,
    "median": _median,
    "mean_no_outliers": _mean_no_outliers,
    "median_no_outliers": _median_no_outliers,
    "hl_estimator": hl_estimator,
}


def get_aggregator(name: str) -> Aggregator:
    """The aggregator ``name``; ValueError listing the valid names if unknown."""
    try:
        return AGGREGATORS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown aggregator {name!r}; valid: {', '.join(sorted(AGGREGATORS))}") from None


def aggregate(name: str, per_sample: np.ndarray) -> np.ndarray:
    """Reduce per-sample statistics (N,) or (N, C) over the samples with aggregator ``name``.

    >>> aggregate("median", np.array([3.0, 1.0, 2.0])).tolist()
    2.0
    """
    return get_aggregator(name)(per_sample)


# --------------------------------------------------------------------------------------
# When the range covers the whole population

#: Below this many values per sample (per channel, for a per-channel statistic) a range covers the
#: calibration population: the largest (smallest) per-sample statistic, not their mean.
#: Why 100: the largest of K independent draws sits, on average, at the K/(K+1) quantile of their
#: distribution, so a mean of per-sample maxima over K values clips about 1/(K+1) of the values:
#: half of them for one value per sample (a per-frame probability), 6 % for 16, under 1 % from 100
#: on. The mean aggregator is meant to drop the rare sample with an outlying peak among the
#: thousands of values of an image activation, where it clips well under 0.1 %; below 100 values
#: per sample it clips the data itself.
FEW_VALUES_PER_SAMPLE = 100


def population_reason(values_per_sample: int | None, model_input: bool,
                      threshold: int = FEW_VALUES_PER_SAMPLE) -> str | None:
    """Why a tensor's range must cover its calibration population, or None when the preset's aggregation holds.

    Args:
        values_per_sample: values one statistic reduces per sample (per channel for a per-channel one);
            None when unknown.
        model_input: the tensor is a model input: raw data (audio, sensor readings) whose scale differs
            from sample to sample, so that a mean of per-sample extremes clips every loud sample.
        threshold: ``FEW_VALUES_PER_SAMPLE`` unless a caller knows better.

    >>> population_reason(1, False)
    'population range: 1 value per sample (fewer than 100): a mean of per-sample extremes clips about 1/2 of the values'
    >>> population_reason(4096, False) is None
    True
    """
    if model_input:
        return ("population range: a model input, raw data whose range differs from sample to sample; a mean "
                "of per-sample extremes clips the loudest samples")
    if values_per_sample is not None and values_per_sample < threshold:
        values = "value" if values_per_sample == 1 else "values"
        return (f"population range: {values_per_sample} {values} per sample (fewer than {threshold}): a mean of "
                f"per-sample extremes clips about 1/{values_per_sample + 1} of the values")
    return None


# --------------------------------------------------------------------------------------
# Default range estimators (POT's presets)


@dataclass(frozen=True)
class StatSpec:
    """How to compute one end (min or max) of a range.

    ``aggregator`` is None for weights (one tensor, nothing to aggregate).
    ``granularity`` None means the FakeQuantize's own; "pertensor" on a
    per-channel quantizer computes this statistic per tensor (POT does so for
    the min of per-channel symmetric activations, which only decides the sign).
    ``clipping_value`` bounds the aggregated statistic: a max is lowered to it,
    a min raised to it (see ``apply_clipping``).
    """

    estimator: str
    aggregator: str | None = None
    outlier_prob: float = DEFAULT_OUTLIER_PROB
    granularity: Literal["pertensor", "perchannel"] | None = None
    clipping_value: float | None = None

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise ValueError(_unknown("range estimator", self.estimator, ESTIMATORS))
        if self.aggregator is not None and self.aggregator not in AGGREGATORS:
            raise ValueError(_unknown("aggregator", self.aggregator, AGGREGATORS))
        if not 0.0 <= self.outlier_prob < 0.5:
            raise ValueError(f"outlier_prob must be in [0, 0.5), got {self.outlier_prob}")
        if self.granularity not in (None, "pertensor", "perchannel"):
            raise ValueError(f"granularity must be 'pertensor' or 'perchannel', got {self.granularity!r}")

    def apply_clipping(self, value: np.ndarray, side: Literal["min", "max"]) -> np.ndarray:
        """``min(value, clip)`` for the max side, ``max(value, clip)`` for the min side (POT)."""
        if self.clipping_value is None:
            return np.asarray(value)
        if side == "max":
            return np.minimum(value, self.clipping_value)
        return np.maximum(value, self.clipping_value)


@dataclass(frozen=True)
class RangeEstimator:
    """The min and max statistics of a range; ``min`` None where the range needs none (symmetric weights)."""

    min: StatSpec | None
    max: StatSpec


#: One preset's statistics: (min, max).
_MinMax = tuple[StatSpec | None, StatSpec]


def _table() -> dict[tuple[str, str, str, str], RangeEstimator]:
    S = StatSpec
    # (role, granularity, mode): (default preset, quantile preset), as the original tool set them.
    # Each preset is (min, max). The quantile preset swaps min -> quantile,
    # max -> quantile, abs_max -> abs_quantile, except that the min of symmetric
    # activations stays `min` (it only decides the sign).
    rows: dict[tuple[str, str, str], tuple[_MinMax, _MinMax]] = {
        ("activation", "pertensor", "symmetric"): (
            (S("min", "min"), S("abs_max", "mean")),
            (S("min", "min"), S("abs_quantile", "mean"))),
        ("activation", "pertensor", "asymmetric"): (
            (S("min", "mean"), S("max", "mean")),
            (S("quantile", "mean"), S("quantile", "mean"))),
        ("activation", "perchannel", "symmetric"): (
            (S("min", "min", granularity="pertensor"), S("abs_max", "max")),
            (S("min", "min", granularity="pertensor"), S("abs_quantile", "max"))),
        ("activation", "perchannel", "asymmetric"): (
            (S("min", "min"), S("max", "max")),
            (S("quantile", "min"), S("quantile", "max"))),
        # Weights: granularity comes from the hardware config; same statistics either way.
        ("weight", "pertensor", "symmetric"): ((None, S("abs_max")), (None, S("abs_quantile"))),
        ("weight", "perchannel", "symmetric"): ((None, S("abs_max")), (None, S("abs_quantile"))),
        ("weight", "pertensor", "asymmetric"): (
            (S("min"), S("max")), (S("quantile"), S("quantile"))),
        ("weight", "perchannel", "asymmetric"): (
            (S("min"), S("max")), (S("quantile"), S("quantile"))),
    }
    table = {}
    for key, (default, quantile) in rows.items():
        table[key + ("default",)] = RangeEstimator(*default)
        table[key + ("quantile",)] = RangeEstimator(*quantile)
    return table


#: (role, granularity, mode, preset) -> RangeEstimator; role "activation" | "weight".
DEFAULT_RANGE_ESTIMATORS: dict[tuple[str, str, str, str], RangeEstimator] = _table()

_OVERRIDE_KEYS = {"type": "estimator", "estimator": "estimator", "aggregator": "aggregator",
                  "outlier_prob": "outlier_prob", "granularity": "granularity",
                  "clipping_value": "clipping_value"}


def _unknown(what: str, name: object, valid: Mapping[str, object]) -> str:
    hint = difflib.get_close_matches(str(name), list(valid), n=1)
    did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
    return f"unknown {what} {name!r}{did_you_mean}; valid: {', '.join(sorted(valid))}"


def range_estimator_for(
    role: str,
    granularity: str,
    mode: str,
    preset: str = "default",
    overrides: Mapping[str, Mapping[str, object]] | None = None,
) -> RangeEstimator:
    """The range estimator for a quantizer, with POT-style user overrides.

    Args:
        role: "activation" or "weight" (plural and "output(s)" accepted; outputs
            are computed like activations).
        granularity: "pertensor" or "perchannel".
        mode: "symmetric" or "asymmetric".
        preset: "default" or "quantile".
        overrides: ``{"min": {...}, "max": {...}}`` with keys ``type`` (or
            ``estimator``), ``aggregator``, ``outlier_prob``, ``granularity``,
            ``clipping_value`` -- POT's ``range_estimator`` section.

    Raises:
        ValueError: unknown role/granularity/mode/preset, override key or name.

    Example:
        >>> est = range_estimator_for("activation", "pertensor", "symmetric")
        >>> est.min.estimator, est.min.aggregator, est.max.estimator, est.max.aggregator
        ('min', 'min', 'abs_max', 'mean')
        >>> est = range_estimator_for("activations", "pertensor", "asymmetric", "quantile",
        ...                           {"max": {"aggregator": "median", "outlier_prob": 1e-3}})
        >>> est.max
        StatSpec(estimator='quantile', aggregator='median', outlier_prob=0.001, granularity=None, clipping_value=None)
    """
    key = (normalize_role(role), granularity, mode, preset)
    if key not in DEFAULT_RANGE_ESTIMATORS:
        for given, valid in zip(key[1:], ({"pertensor", "perchannel"}, {"symmetric", "asymmetric"},
                                          {"default", "quantile"})):
            if given not in valid:
                raise ValueError(_unknown("granularity/mode/preset", given, dict.fromkeys(valid)))
    result = DEFAULT_RANGE_ESTIMATORS[key]
    for side, fields in (overrides or {}).items():
        if side not in ("min", "max"):
            raise ValueError(_unknown("range estimator side", side, {"min": 0, "max": 0}))
        # User values of any type: StatSpec checks them.
        changes: dict[str, Any] = {}
        for name, value in fields.items():
            if name not in _OVERRIDE_KEYS:
                raise ValueError(_unknown(f"range_estimator.{side} key", name, _OVERRIDE_KEYS))
            changes[_OVERRIDE_KEYS[name]] = value
        current: StatSpec | None = getattr(result, side)
        if current is None:
            if "estimator" not in changes:
                raise ValueError(f"range_estimator.{side} is not used by default here; give its 'type'")
            updated = StatSpec(**changes)
        else:
            updated = replace(current, **changes)
        result = replace(result, **{side: updated})
    return result
