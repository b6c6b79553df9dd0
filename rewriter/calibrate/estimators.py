"""Per-sample range estimators: reduce a batch to one statistic per sample (and channel).

Every estimator has the signature::

    f(x, channel_axis=None, outlier_prob=1e-4, *, side="max") -> np.ndarray

``x`` is a batch of shape (N, ...), axis 0 being the samples. With
``channel_axis=None`` the result has shape (N,) (everything but the batch axis
is reduced); with a channel axis (an axis of ``x``, not 0) the channels are
moved next to the batch axis and everything else is reduced, giving (N, C).
Results are float64.

``side`` says which end of the range the statistic serves. Only the quantile
estimators read it: ``quantile`` takes the ``outlier_prob`` quantile for the
min side and the ``1 - outlier_prob`` quantile for the max side (POT's rule);
``abs_quantile`` likewise on |x|. ``get_estimator(name, side)`` binds the side,
so that the callers of the min and max slots cannot mix them up.

Pure numpy; the aggregation over samples lives in ``aggregators``.

Example:
    >>> import numpy as np
    >>> x = np.arange(12, dtype=np.float32).reshape(2, 3, 2) - 5   # N=2, C=3, 2 values each
    >>> ESTIMATORS["abs_max"](x, None).tolist()
    [5.0, 6.0]
    >>> get_estimator("max", "max")(x, 1, 1e-4).tolist()
    [[-4.0, -2.0, 0.0], [2.0, 4.0, 6.0]]
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Literal

import numpy as np

__all__ = [
    "DEFAULT_OUTLIER_PROB",
    "ESTIMATORS",
    "EXACT_ESTIMATORS",
    "Estimator",
    "Side",
    "estimate_abs_max",
    "estimate_abs_quantile",
    "estimate_max",
    "estimate_min",
    "estimate_quantile",
    "get_estimator",
    "weight_stat",
]

Side = Literal["min", "max"]
Estimator = Callable[..., np.ndarray]

#: POT's default outlier probability for the quantile estimators.
DEFAULT_OUTLIER_PROB = 1e-4


def _per_sample(x: np.ndarray, channel_axis: int | None) -> np.ndarray:
    """View x as (N, S) per tensor or (N, C, S) per channel; the last axis is reduced."""
    x = np.asarray(x)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"expected a batch of shape (N, ...) with N >= 1, got shape {x.shape}")
    view: np.ndarray
    if channel_axis is None:
        view = x.reshape(x.shape[0], -1)
    else:
        if not -x.ndim <= channel_axis < x.ndim:
            raise ValueError(f"channel_axis {channel_axis} out of range for shape {x.shape}")
        axis = channel_axis % x.ndim
        if axis == 0:
            raise ValueError("channel_axis 0 is the batch axis; give the channel axis of the batched tensor")
        moved = np.moveaxis(x, axis, 1)
        view = moved.reshape(moved.shape[0], moved.shape[1], -1)
    if view.shape[-1] == 0:
        raise ValueError(f"cannot compute a statistic over an empty tensor (shape {x.shape})")
    return view


def _check_side(side: str) -> None:
    if side not in ("min", "max"):
        raise ValueError(f"side must be 'min' or 'max', got {side!r}")


def _quantile_q(outlier_prob: float, side: str) -> float:
    _check_side(side)
    if not 0.0 <= outlier_prob < 0.5:
        raise ValueError(f"outlier_prob must be in [0, 0.5), got {outlier_prob}")
    return float(outlier_prob) if side == "min" else 1.0 - float(outlier_prob)


def estimate_min(x: np.ndarray, channel_axis: int | None = None,
                 outlier_prob: float = DEFAULT_OUTLIER_PROB, *, side: Side = "min") -> np.ndarray:
    """Per-sample minimum (exact in any float dtype, returned as float64)."""
    return np.min(_per_sample(x, channel_axis), axis=-1).astype(np.float64)


def estimate_max(x: np.ndarray, channel_axis: int | None = None,
                 outlier_prob: float = DEFAULT_OUTLIER_PROB, *, side: Side = "max") -> np.ndarray:
    """Per-sample maximum."""
    return np.max(_per_sample(x, channel_axis), axis=-1).astype(np.float64)


def estimate_abs_max(x: np.ndarray, channel_axis: int | None = None,
                     outlier_prob: float = DEFAULT_OUTLIER_PROB, *, side: Side = "max") -> np.ndarray:
    """Per-sample maximum of |x|."""
    return np.max(np.abs(_per_sample(x, channel_axis)), axis=-1).astype(np.float64)


def estimate_quantile(x: np.ndarray, channel_axis: int | None = None,
                      outlier_prob: float = DEFAULT_OUTLIER_PROB, *, side: Side = "max") -> np.ndarray:
    """Per-sample quantile: ``q = outlier_prob`` (side "min") or ``1 - outlier_prob`` (side "max").

    Computed in float64 with ``np.quantile(method="linear")``: float32
    interpolation would round the result to the input grid.

    >>> x = np.arange(101.0)[None]          # one sample: 0, 1, ..., 100
    >>> float(estimate_quantile(x, None, 0.25, side="min")[0]), float(estimate_quantile(x, None, 0.25)[0])
    (25.0, 75.0)
    """
    q = _quantile_q(outlier_prob, side)
    view = _per_sample(x, channel_axis).astype(np.float64)
    return np.quantile(view, q, axis=-1, method="linear")


def estimate_abs_quantile(x: np.ndarray, channel_axis: int | None = None,
                          outlier_prob: float = DEFAULT_OUTLIER_PROB, *, side: Side = "max") -> np.ndarray:
    """Per-sample quantile of |x| (``1 - outlier_prob`` for side "max", ``outlier_prob`` for "min")."""
    q = _quantile_q(outlier_prob, side)
    view = np.abs(_per_sample(x, channel_axis).astype(np.float64))
    return np.quantile(view, q, axis=-1, method="linear")


#: Estimator name (as in specs and POT configs) -> function.
ESTIMATORS: dict[str, Estimator] = {
    "min": estimate_min,
    "max": estimate_max,
    "abs_max": estimate_abs_max,
    "quantile": estimate_quantile,
    "abs_quantile": estimate_abs_quantile,
}


def get_estimator(name: str, side: Side | None = None) -> Estimator:
    """The estimator ``name``; with ``side`` given, bound to it: ``f(x, channel_axis, outlier_prob)``.

    Without ``side`` the function itself is returned (its ``side`` keyword
    defaults to "max"); callers filling a min slot should pass ``side="min"``
    here so that a quantile estimator takes the low quantile.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones) or side.

    >>> get_estimator("quantile", "min")(np.arange(5.0)[None], None, 0.25).tolist()
    [1.0]
    """
    try:
        fn = ESTIMATORS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown range estimator {name!r}; valid: {', '.join(sorted(ESTIMATORS))}") from None
    if side is None:
        return fn
    _check_side(side)
    return partial(fn, side=side)


#: Statistics whose value over a tensor is the same reduction of their values over its blocks (NaN included).
_BLOCKWISE: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "min": np.minimum, "max": np.maximum, "abs_max": np.maximum}
#: Values per block of a large weight's blockwise statistic.
_BLOCK_VALUES = 1 << 22

#: The estimators whose result is exact in any float type (no float64 copy of the input is needed).
EXACT_ESTIMATORS = frozenset(_BLOCKWISE)


def weight_stat(
    w: np.ndarray,
    name: str,
    channel_axis: int | None = None,
    outlier_prob: float = DEFAULT_OUTLIER_PROB,
    side: Side = "max",
) -> np.ndarray:
    """A statistic of a constant tensor: shape () over the whole tensor, or (C,) per channel.

    ``channel_axis`` is an axis of ``w`` itself (0 for Conv / Gemm(transB=1)
    weights, 1 for ConvTranspose, ...); the caller picks it.

    >>> w = np.array([[1.0, -3.0], [0.5, 0.25]])
    >>> float(weight_stat(w, "abs_max")), weight_stat(w, "abs_max", 0).tolist()
    (3.0, [3.0, 0.5])
    """
    fn = get_estimator(name, side)
    w = np.asarray(w)
    if name in _BLOCKWISE and w.ndim > 0 and w.size > _BLOCK_VALUES:
        if channel_axis is not None and not -w.ndim <= channel_axis < w.ndim:
            raise ValueError(f"channel_axis {channel_axis} out of range for a weight of shape {w.shape}")
        # Exact statistics of a large weight block by block, combined: |w| (or a reshaped copy of a strided
        # weight) would be a temporary as large as the weight, and a weight mapped from its file is then
        # read once, a block at a time.
        channel = None if channel_axis is None else channel_axis % w.ndim
        along = next((a for a in range(w.ndim) if a != channel and w.shape[a] > 1), None)
        if along is not None:
            step = max(1, _BLOCK_VALUES // (w.size // w.shape[along]))
            result = None
            for start in range(0, w.shape[along], step):
                block = w[(slice(None),) * along + (slice(start, start + step),)]
                part = weight_stat(block, name, channel_axis, outlier_prob, side)
                result = part if result is None else _BLOCKWISE[name](result, part)
            assert result is not None
            return result
    if channel_axis is None:
        return fn(w.reshape(1, -1), None, outlier_prob)[0]
    if w.ndim == 0 or not -w.ndim <= channel_axis < w.ndim:
        raise ValueError(f"channel_axis {channel_axis} out of range for a weight of shape {w.shape}")
    return fn(np.moveaxis(w, channel_axis, 0)[None], 1, outlier_prob)[0]
