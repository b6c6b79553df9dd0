"""The statistics channel alignment collects, and the rescale it computes from them.

The formulas are in the package docstring.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from rewriter.algorithms.channel_alignment.pairs import AlignmentPair
from rewriter.calibrate.aggregators import aggregate
from rewriter.calibrate.estimators import Side, estimate_quantile

__all__ = ["ALIGN_MAX", "ALIGN_MIN", "ALIGN_OUTLIER_PROB", "SCALE_MAX", "SCALE_MIN", "AlignedPair", "AlignmentResult",
           "ChannelQuantile", "align_channels", "alignment_reducers", "channel_scales"]

#: POT's outlier probability for the alignment quantiles.
ALIGN_OUTLIER_PROB = 1e-4
#: Names of the two statistics each pair's activation gets (keys in the collector's result).
ALIGN_MIN = f"align:quantile:{ALIGN_OUTLIER_PROB:g}"
ALIGN_MAX = f"align:quantile:{1 - ALIGN_OUTLIER_PROB:g}"
#: Bounds of the per-channel scale (POT's).
SCALE_MIN, SCALE_MAX = 0.01, 100.0


@dataclass(frozen=True)
class ChannelQuantile:
    """Reducer: per-sample, per-channel quantile of a batch ``(N, ...)`` -> ``(N, C)``."""

    name: str
    side: Side  # "min" -> q = outlier_prob, "max" -> q = 1 - outlier_prob
    channel_axis: int
    outlier_prob: float = ALIGN_OUTLIER_PROB

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return estimate_quantile(x, self.channel_axis, self.outlier_prob, side=self.side)


@dataclass(frozen=True)
class AlignedPair:
    """What alignment did to one pair (for the report)."""

    producer: str
    consumer: str
    tensor: str
    channels: int
    scale_min: float
    scale_max: float
    mean_shift_max: float  # max |amean| moved from b_in to b_out (0 when a bias is missing)
    means_applied: bool
    range_spread_before: float  # largest / smallest positive channel range of the activation
    range_spread_after: float
    pooled: bool = False  # one value per channel per sample: ranges taken over the samples (see align_channels)
    scale: tuple[float, ...] = field(repr=False, default=())
    shift: tuple[float, ...] = field(repr=False, default=())

    def to_dict(self) -> dict[str, Any]:
        return {"producer": self.producer, "consumer": self.consumer, "tensor": self.tensor,
                "channels": self.channels, "scale_min": self.scale_min, "scale_max": self.scale_max,
                "mean_shift_max": self.mean_shift_max, "means_applied": self.means_applied,
                "range_spread_before": self.range_spread_before, "range_spread_after": self.range_spread_after,
                "pooled_over_samples": self.pooled}


@dataclass(frozen=True)
class AlignmentResult:
    """New initializer values (name -> array, same shape and dtype) and what was done per pair."""

    updates: Mapping[str, np.ndarray]
    pairs: tuple[AlignedPair, ...]
    skipped: tuple[tuple[str, str], ...] = ()  # (producer, reason) for pairs left as they were

    @property
    def rescaled_consumers(self) -> tuple[str, ...]:
        """Consumers whose weights were multiplied (POT marks them for the saturation fix)."""
        return tuple(p.consumer for p in self.pairs if p.scale_min != 1.0 or p.scale_max != 1.0)

    def report(self) -> dict[str, Any]:
        return {"aligned": [p.to_dict() for p in self.pairs],
                "skipped": [{"producer": name, "reason": why} for name, why in self.skipped]}


# ----------------------------------------------------------------------------- statistics


def alignment_reducers(pairs: Sequence[AlignmentPair]) -> dict[str, list[ChannelQuantile]]:
    """Per pair activation, the two per-sample per-channel quantiles ``align_channels`` reads."""
    return {p.tensor: [ChannelQuantile(ALIGN_MIN, "min", p.channel_axis),
                       ChannelQuantile(ALIGN_MAX, "max", p.channel_axis)] for p in pairs}


# ----------------------------------------------------------------------------- the rescale


def channel_scales(amin: np.ndarray, amax: np.ndarray) -> np.ndarray:
    """s = range / median(positive ranges), 1 where the range is <= 0, clipped to [0.01, 100].

    >>> channel_scales(np.array([-1.0, -0.01, 0.0, -3.0]), np.array([1.0, 0.01, 0.0, 3.0])).tolist()
    [1.0, 0.01, 1.0, 3.0]
    """
    ranges = np.asarray(amax, np.float64) - np.asarray(amin, np.float64)
    scales = np.ones_like(ranges)
    positive = ranges > 0
    if np.any(positive):
        scales[positive] = ranges[positive] / np.median(ranges[positive])
    return np.clip(scales, SCALE_MIN, SCALE_MAX)


def align_channels(pairs: Sequence[AlignmentPair], stats: Mapping[str, Mapping[str, np.ndarray]],
                   weights: Mapping[str, np.ndarray]) -> AlignmentResult:
    """New values of the pairs' weights and biases (see the module doc for the formulas).

    Args:
        pairs: from ``alignment_pairs``, in topological order.
        stats: the collector's per-sample statistics: tensor -> {ALIGN_MIN: (N, C), ALIGN_MAX: (N, C)}.
        weights: initializer name -> value, for every name the pairs mention.

    An activation with one value per channel per sample ((N, C) rows, or a 1x1 feature map) has
    equal per-sample low and high quantiles, so POT's median of per-sample ranges is zero for every
    channel and would change nothing but the means. There (and only there: detected as identical
    low and high statistics) the quantiles are taken over the samples instead: ``amin`` = the
    1e-4 quantile of the samples' values, ``amax`` = the 1 - 1e-4 quantile.

    Returns:
        ``updates`` (every changed initializer, in its own dtype and shape) and a record per pair.
        A pair whose statistics are not finite is left alone and listed in ``skipped``.

    Raises:
        KeyError: statistics or a weight are missing.
        ValueError: the statistics do not have one column per channel.
    """
    work: dict[str, np.ndarray] = {}

    def value(name: str) -> np.ndarray:
        if name not in work:
            work[name] = np.array(weights[name], dtype=np.float64)
        return work[name]

    done: list[AlignedPair] = []
    skipped: list[tuple[str, str]] = []
    for pair in pairs:
        tensor_stats = stats.get(pair.tensor)
        if tensor_stats is None or ALIGN_MIN not in tensor_stats or ALIGN_MAX not in tensor_stats:
            raise KeyError(f"no alignment statistics for {pair.tensor!r}; collect alignment_reducers(pairs) first")
        lows, highs = (np.asarray(tensor_stats[k], np.float64) for k in (ALIGN_MIN, ALIGN_MAX))
        for per_sample in (lows, highs):
            if per_sample.ndim != 2 or per_sample.shape[1] != pair.channels:
                raise ValueError(f"alignment statistics of {pair.tensor!r} have shape {per_sample.shape}, "
                                 f"expected (samples, {pair.channels})")
        pooled = lows.shape[0] > 1 and bool(np.array_equal(lows, highs))
        if pooled:
            # One value per channel per sample (a (N, C) or (N, C, 1, 1) activation): per-sample ranges
            # are all zero and the median would leave every channel as it is. Take the channel's
            # range over the samples instead, with the same quantiles.
            amin = np.quantile(lows, ALIGN_OUTLIER_PROB, axis=0, method="linear")
            amax = np.quantile(highs, 1 - ALIGN_OUTLIER_PROB, axis=0, method="linear")
        else:
            amin, amax = aggregate("median", lows), aggregate("median", highs)
        if not (np.all(np.isfinite(amin)) and np.all(np.isfinite(amax))):
            skipped.append((pair.producer, f"statistics of {pair.tensor} are not finite"))
            continue
        scale = channel_scales(amin, amax)
        amean = (amax + amin) / 2.0
        means = pair.b_in is not None and pair.b_out is not None

        w_in, w_out = value(pair.w_in), value(pair.w_out)
        if means:
            assert pair.b_in is not None and pair.b_out is not None
            b_out = value(pair.b_out)
            # The consumer's own weights (before this pair's rescale) carry the shift into its bias.
            b_out += pair.b_out_factor * _weight_dot(w_out, pair.w_out_out_axis, pair.w_out_axis,
                                                     amean).reshape(b_out.shape)
            b_in = value(pair.b_in)
            b_in -= (pair.b_in_factor * amean).reshape(b_in.shape)
        w_in /= _along(scale, w_in.ndim, pair.w_in_axis)
        if pair.b_in is not None:
            b_in = value(pair.b_in)
            b_in /= scale.reshape(b_in.shape)
        w_out *= _along(scale, w_out.ndim, pair.w_out_axis)

        before = amax - amin
        done.append(AlignedPair(
            pair.producer, pair.consumer, pair.tensor, pair.channels,
            float(scale.min()), float(scale.max()),
            float(np.max(np.abs(amean))) if means else 0.0, means,
            _spread(before), _spread(before / scale), pooled,
            tuple(float(v) for v in scale), tuple(float(v) for v in amean) if means else ()))

    updates = {name: arr.astype(np.asarray(weights[name]).dtype) for name, arr in work.items()}
    return AlignmentResult(updates, tuple(done), tuple(skipped))


def _along(vector: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    shape = [1] * ndim
    shape[axis] = vector.shape[0]
    return vector.reshape(shape)


def _weight_dot(w: np.ndarray, out_axis: int, in_axis: int, vector: np.ndarray) -> np.ndarray:
    """sum over input channels (and the spatial axes) of W[o, i, ...] * vector[i] -> (O,)."""
    moved = np.moveaxis(w, (out_axis, in_axis), (0, 1))
    return moved.reshape(moved.shape[0], moved.shape[1], -1).sum(axis=2) @ vector


def _spread(ranges: np.ndarray) -> float:
    positive = ranges[ranges > 0]
    return float(positive.max() / positive.min()) if positive.size else 1.0
