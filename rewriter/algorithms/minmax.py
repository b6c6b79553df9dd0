"""MinMaxQuantization: FakeQuantize ranges from statistics, as the plan's configs say.

Three steps, each a pure function of the plan and plain arrays:

1. ``activation_reducers``: what to measure on each planned activation, as
   per-sample reducers the statistics collector runs on every batch;
2. ``weight_ranges``: ranges of constant tensors, straight from the weights;
3. ``activation_ranges``: aggregate the per-sample statistics and turn them
   into ranges (symmetric or asymmetric, with the zero-point alignment).
   ``population_ranges`` names the tensors whose range covers the whole
   calibration population instead (model inputs, tensors with few values per
   sample; ``rewriter.calibrate.aggregators.population_reason``).

A unified group (Concat inputs, LSTM gates) pools its statistics before the
range is computed, so every member gets the identical range and float zero
stays exactly on the grid. (The original tool took min/max of the members'
finished ranges, which can move zero off the grid of an asymmetric range.)
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Collection, Mapping, Sequence

import numpy as np

from rewriter.algorithms.fq_math import asymmetric_range, level_bounds, symmetric_range
from rewriter.algorithms.types import TensorRange
from rewriter.calibrate.aggregators import (RangeEstimator, StatSpec, aggregate, population_reason,
                                            range_estimator_for)
from rewriter.calibrate.estimators import EXACT_ESTIMATORS, Side, get_estimator, weight_stat
from rewriter.calibrate.reducers import Reducer
from rewriter.errors import UserError
from rewriter.plan import FakeQuantizePoint, QuantPlan


@dataclass(frozen=True)
class RangeOptions:
    """How ranges are estimated: the estimator preset and POT-style overrides per role."""

    estimator_preset: str = "default"  # "default" | "quantile"
    weights: Mapping[str, Mapping[str, object]] | None = None  # {"min": {...}, "max": {...}}
    activations: Mapping[str, Mapping[str, object]] | None = None


#: Estimators whose per-sample value follows from the sample's minimum and maximum alone.
_EXTREMA_ESTIMATORS = ("min", "max", "abs_max")


@dataclass(frozen=True)
class StatReducer:
    """One per-sample statistic of a tensor: (N, ...) batch -> (N,) or (N, C).

    min, max and abs_max (= max(-min, max)) are ``ExtremaReducer`` s of the
    statistics collector: it may compute each sample's min and max inside
    onnxruntime and call ``from_extrema`` instead of copying the tensor out.
    Quantiles need the values (``extrema_axis`` is "raw").
    """

    name: str
    estimator: str
    side: Side
    channel_axis: int | None
    outlier_prob: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        fn = get_estimator(self.estimator, self.side)
        return fn(x, self.channel_axis if x.ndim > 2 or self.channel_axis is None else None,
                  self.outlier_prob)

    @property
    def extrema_axis(self) -> int | str | None:
        """None (per tensor) or the channel axis when the extrema suffice; "raw" otherwise.

        The collector feeds per-channel extrema only for axis 1 of tensors of
        rank 3 and more, which is where ``__call__`` reduces per channel too.
        """
        return self.channel_axis if self.estimator in _EXTREMA_ESTIMATORS else "raw"

    def from_extrema(self, mins: np.ndarray, maxs: np.ndarray) -> np.ndarray:
        """The statistic from per-sample minima and maxima: what ``__call__`` gives, exactly."""
        if self.estimator == "min":
            value = np.asarray(mins)
        elif self.estimator == "max":
            value = np.asarray(maxs)
        elif self.estimator == "abs_max":
            # |x| peaks at one end: max(|x|) = max(-min, max), exact in any float; + 0.0 turns -0.0 into 0.0 as
            # abs does.
            value = np.maximum(-np.asarray(mins), np.asarray(maxs)) + 0.0
        else:
            raise ValueError(f"estimator {self.estimator!r} needs the tensor's values, not its extrema")
        return value.astype(np.float64)


@dataclass(frozen=True)
class SampleReducer:
    """A fixed, evenly spaced subsample of each sample (for measuring the error later).

    Keeps ``count`` values per sample (per channel when ``channel_axis`` is
    set), so memory grows with the number of samples only by that much. A
    ``SubsampleReducer`` of the statistics collector: the values can be sliced
    out inside onnxruntime, so the tensor need not be copied out for them.

    ``max_samples`` keeps the first samples only (None: all). Not used by
    default: the error in the report is pooled over the samples and dominated
    by the rare ones clipped hardest, so a few samples misjudge it (the first
    8 of 300 put ResNet-50's activation SQNR a median 6 dB, at most 22 dB,
    above the 300-sample value; 64 samples still 4 dB), while the in-graph
    subsample of every sample costs next to nothing.
    """

    name: str
    count: int
    channel_axis: int | None = None
    max_samples: int | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        flat: np.ndarray
        if self.channel_axis is not None and x.ndim > 2:
            flat = np.moveaxis(x, self.channel_axis, 1).reshape(n, x.shape[self.channel_axis], -1)
            step = max(1, flat.shape[2] // self.count)
            return np.ascontiguousarray(flat[:, :, ::step][:, :, : self.count], dtype=np.float32)
        flat = x.reshape(n, -1)
        step = max(1, flat.shape[1] // self.count)
        return np.ascontiguousarray(flat[:, ::step][:, : self.count], dtype=np.float32)

    @property
    def subsample_axis(self) -> int | None:
        """The axis the subsample is taken per channel along (the collector slices in-graph for None and 1)."""
        return self.channel_axis

    def from_subsample(self, values: np.ndarray) -> np.ndarray:
        """``__call__``'s result from the collector's ``flat[..., ::step][..., :count]`` of the tensor."""
        return np.ascontiguousarray(values, dtype=np.float32)


SAMPLE_REDUCER = "error_sample"
#: Per-channel error subsamples keep ``error_sample // PER_CHANNEL_SAMPLE_DIVISOR`` values of each channel.
PER_CHANNEL_SAMPLE_DIVISOR = 8


def estimator_for(point: FakeQuantizePoint, options: RangeOptions) -> RangeEstimator:
    role = "weight" if point.role == "weight" else "activation"
    overrides = options.weights if role == "weight" else options.activations
    try:
        return range_estimator_for(role, point.config.granularity, point.config.mode,
                                   options.estimator_preset, overrides)
    except ValueError as error:
        raise UserError(f"range estimator for {point.tensor}: {error}") from None


def _stat_name(side: str, spec: StatSpec) -> str:
    granularity = spec.granularity or "own"
    return f"{side}:{spec.estimator}:{spec.outlier_prob:g}:{granularity}"


def activation_reducers(plan: QuantPlan, options: RangeOptions = RangeOptions(),
                        error_sample: int = 64) -> dict[str, list[Reducer]]:
    """Per activation tensor, the reducers its range (and its error estimate) needs."""
    requests: dict[str, dict[str, StatReducer | SampleReducer]] = {}
    for point in plan.points:
        if point.role == "weight":
            continue
        wanted = requests.setdefault(point.tensor, {})
        estimator = estimator_for(point, options)
        sides: tuple[tuple[Side, StatSpec | None], ...] = (("min", estimator.min), ("max", estimator.max))
        for side, spec in sides:
            if spec is None:
                continue
            axis = point.channel_axis if (spec.granularity or point.config.granularity) == "perchannel" else None
            name = _stat_name(side, spec)
            wanted[name] = StatReducer(name, spec.estimator, side, axis, spec.outlier_prob)
        if error_sample:
            # Per channel, the subsample is taken from every channel: a few values each are plenty for a
            # pooled SQNR, and ``error_sample`` each kept MobileNetV2's 17 depthwise inputs (up to 960
            # channels) at 1 GB over 300 samples.
            count = error_sample if point.channel_axis is None else max(4, error_sample // PER_CHANNEL_SAMPLE_DIVISOR)
            wanted[SAMPLE_REDUCER] = SampleReducer(SAMPLE_REDUCER, count, point.channel_axis)
    return {tensor: list(reducers.values()) for tensor, reducers in requests.items()}


def _bounds(point: FakeQuantizePoint, signed: bool | None) -> tuple[int, int, int]:
    c = point.config
    return level_bounds(c.bits, c.mode, point.role, signed if c.signed is None else c.signed,
                        level_low=c.level_low, level_high=c.level_high)


def weight_ranges(plan: QuantPlan, weights: Mapping[str, np.ndarray],
                  options: RangeOptions = RangeOptions()) -> dict[str, TensorRange]:
    """Ranges of the planned constant tensors, computed from the weights themselves."""
    ranges = {}
    for point in plan.points:
        if point.role != "weight":
            continue
        estimator = estimator_for(point, options)
        w = np.asarray(weights[point.tensor])
        names = {estimator.max.estimator, *(() if estimator.min is None else (estimator.min.estimator,))}
        if not (names <= EXACT_ESTIMATORS and np.issubdtype(w.dtype, np.floating)):
            # min, max and |max| are exact in the weight's own float type (and return float64): a float64
            # copy of the weight is only made for the statistics that need one.
            w = np.asarray(w, dtype=np.float64)
        axis = point.channel_axis
        hi = weight_stat(w, estimator.max.estimator, axis, estimator.max.outlier_prob, "max")
        lo = None if estimator.min is None else weight_stat(w, estimator.min.estimator, axis,
                                                            estimator.min.outlier_prob, "min")
        ranges[point.tensor] = _finish(point, lo, hi, axis)
    return ranges


def _user_aggregator(options: RangeOptions, side: Side) -> bool:
    """Whether the configuration file chose this side's activation aggregator itself."""
    return "aggregator" in ((options.activations or {}).get(side) or {})


def population_ranges(plan: QuantPlan, sample_shapes: Mapping[str, tuple[int, ...]],
                      model_inputs: Collection[str], options: RangeOptions = RangeOptions()) -> dict[str, str]:
    """Activation tensors whose range covers the calibration population, each with the reason.

    The rest aggregate per-sample statistics as the preset says. A tensor is listed when it is a
    model input or its statistic reduces fewer than ``FEW_VALUES_PER_SAMPLE`` values per sample
    (``sample_shapes``: one sample's shape without its batch axis), and the preset would average
    samples on some side that the configuration file did not set itself.

    >>> from rewriter.plan import Consumer, FakeQuantizePoint
    >>> from rewriter.spec.model import QuantizerConfig
    >>> q8 = QuantizerConfig("q8_a", 8, "symmetric", "pertensor")
    >>> prob = FakeQuantizePoint("prob", "activation", q8, (q8,), (Consumer("mean", 0),))
    >>> plan = QuantPlan("m", "CPU", "cpu.yaml", "performance", (), (prob,), ())
    >>> population_ranges(plan, {"prob": (1,)}, ())["prob"][:36]
    'population range: 1 value per sample'
    """
    found = {}
    for point in plan.points:
        if point.role == "weight" or point.tensor in found:
            continue
        estimator = estimator_for(point, options)
        sides: tuple[tuple[Side, StatSpec | None], ...] = (("min", estimator.min), ("max", estimator.max))
        averaged = [side for side, spec in sides
                    if spec is not None and spec.aggregator != side and not _user_aggregator(options, side)]
        if not averaged:
            continue
        reason = population_reason(_values_per_sample(point, sample_shapes.get(point.tensor)),
                                   point.tensor in model_inputs)
        if reason is not None:
            found[point.tensor] = reason
    return found


def _values_per_sample(point: FakeQuantizePoint, shape: tuple[int, ...] | None) -> int | None:
    """Values one statistic of ``point`` reduces per sample: all of a sample's, or one channel's."""
    if shape is None:
        return None
    count = int(np.prod(shape))
    axis = point.channel_axis  # an axis of the batched tensor: axis - 1 of one sample's shape
    if point.config.granularity == "perchannel" and axis is not None and 0 < axis <= len(shape):
        count //= max(1, shape[axis - 1])
    return count


def _population_estimator(estimator: RangeEstimator, options: RangeOptions) -> RangeEstimator:
    """The estimator with each side the user did not set aggregated by its own extreme (min of minima, ...)."""
    low = estimator.min
    if low is not None and not _user_aggregator(options, "min"):
        low = replace(low, aggregator="min")
    high = estimator.max if _user_aggregator(options, "max") else replace(estimator.max, aggregator="max")
    return RangeEstimator(low, high)


def activation_ranges(plan: QuantPlan, stats: Mapping[str, Mapping[str, np.ndarray]],
                      options: RangeOptions = RangeOptions(),
                      population: Collection[str] = ()) -> dict[str, TensorRange]:
    """Aggregate per-sample statistics into ranges; unified groups share theirs.

    Tensors in ``population`` (``population_ranges``) take the smallest per-sample minimum and the
    largest per-sample maximum wherever the preset would average them.
    """
    aggregated: dict[str, tuple[np.ndarray | None, np.ndarray]] = {}
    for point in plan.points:
        if point.role == "weight":
            continue
        estimator = estimator_for(point, options)
        if point.tensor in population:
            estimator = _population_estimator(estimator, options)
        lo = None if estimator.min is None else _aggregate(point, stats, "min", estimator.min)
        hi = _aggregate(point, stats, "max", estimator.max)
        aggregated[point.tensor] = (lo, hi)
    for members in _unified_groups(plan).values():
        lows = [aggregated[p.tensor][0] for p in members]
        known_lows = [v for v in lows if v is not None]
        pooled_lo = np.min([np.min(v) for v in known_lows]) if len(known_lows) == len(lows) else None
        pooled_hi = np.max([np.max(aggregated[p.tensor][1]) for p in members])
        for p in members:
            aggregated[p.tensor] = (pooled_lo, pooled_hi)
    return {p.tensor: _finish(p, *aggregated[p.tensor], p.channel_axis)
            for p in plan.points if p.role != "weight"}


def _aggregate(point: FakeQuantizePoint, stats: Mapping[str, Mapping[str, np.ndarray]],
               side: Side, spec: StatSpec) -> np.ndarray:
    per_sample = stats[point.tensor][_stat_name(side, spec)]
    value = aggregate(spec.aggregator or "mean", per_sample)
    value = spec.apply_clipping(value, side)
    if not np.all(np.isfinite(value)):
        raise UserError(f"tensor {point.tensor}: its {side} statistic is not finite ({value}); the "
                        "calibration data drives it to inf/NaN (an attention mask built from float32 min?). "
                        f"Keep it float with --ignore-scope on the node that reads it.")
    return value


def _unified_groups(plan: QuantPlan) -> dict[int, list[FakeQuantizePoint]]:
    groups: dict[int, list[FakeQuantizePoint]] = {}
    for point in plan.points:
        if point.unify_group is not None and point.role != "weight":
            groups.setdefault(point.unify_group, []).append(point)
    return groups


def _finish(point: FakeQuantizePoint, lo: np.ndarray | None, hi: np.ndarray, axis: int | None) -> TensorRange:
    """Statistics -> a FakeQuantize range on the config's grid."""
    config = point.config
    hi = np.asarray(hi, dtype=np.float64)
    try:
        if config.mode == "symmetric":
            signed = config.signed
            if point.role != "weight" and signed is None and lo is not None:
                signed = bool(np.any(np.asarray(lo) < 0))
            level_low, level_high, levels = _bounds(point, signed)
            il, ih = symmetric_range(lo, hi, levels, point.role, signed=level_low < 0)
        else:
            level_low, level_high, levels = _bounds(point, None)
            assert lo is not None, "asymmetric ranges always have a min statistic"
            il, ih = asymmetric_range(lo, hi, levels, unified_zeropoint=config.unified_zeropoint)
    except ValueError as error:
        raise UserError(f"tensor {point.tensor}: {error}") from None
    if np.ndim(il) == 0:
        axis = None
    return TensorRange(point.tensor, np.asarray(il, np.float32), np.asarray(ih, np.float32),
                       level_low, level_high, axis)


def sqnr_db(signal: np.ndarray, quantized: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when exact)."""
    signal = np.asarray(signal, dtype=np.float64)
    noise = float(np.sum((signal - np.asarray(quantized, dtype=np.float64)) ** 2))
    power = float(np.sum(signal ** 2))
    if noise == 0.0:
        return float("inf")
    if power == 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(power / noise))


__all__ = ["RangeOptions", "StatReducer", "SampleReducer", "SAMPLE_REDUCER", "activation_reducers",
           "weight_ranges", "activation_ranges", "population_ranges", "sqnr_db", "estimator_for"]
_ = Sequence
