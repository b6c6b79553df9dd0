"""Activation smoothing (SmoothQuant): move activation outlier channels into the weights.

A transformer's MatMul inputs (LayerNorm and GELU outputs) carry a few
channels tens of times larger than the rest; one per-tensor activation scale
must cover them, and the other channels get a handful of levels. The weights,
quantized per output channel, have room to spare. For a MatMul ``X @ W``
(``W`` of shape K x N), a positive vector ``s`` over the K input channels
gives the same product as ``(X / s) @ (s[:, None] * W)``:

    s_k = max|X_k| ** alpha / max|W_k| ** (1 - alpha)

``max|X_k|``: the largest absolute value of channel k over the calibration
samples; ``max|W_k|``: of row k of every smoothed weight (Q, K and V read the
same X and share one ``s``). ``alpha`` near 1 moves nearly all the spread into
the weights (Xiao et al., 2023; NNCF's default for MatMul is 0.95, 0.8 is best
on the benchmark's MiniLM). ``X / s`` becomes a Mul node inserted in front of
the smoothed readers; other readers of X (a residual Add) keep reading X.

Which layers: MatMul (2-D constant weight) and Gemm (constant B, no transA)
whose weight the plan quantizes and whose input 0 has a per-tensor activation
FakeQuantize on the tensor itself. Only readers that qualify share a Mul; a
channel whose activation or weight maximum is 0 keeps s = 1. A tensor is
smoothed only when it has outlier channels: its largest channel maximum at
least ``MIN_SPREAD`` times the median one. Without outliers smoothing only
moves the weights' spread into the activation (measured: magika's dense
inputs, spread 1.0 and 2.7, lost 6 dB of output SQNR; MiniLM's LayerNorm and
GELU outputs, spread 4.1 to 18, gained 4 dB).

The pass reads the plan and the statistics and returns values: new weights
(``updates``) and the Mul nodes to insert (``insertions``), applied by
``rewriter.ir.edit.insert_scales``; the pipeline then plans again, keeping the
inserted Muls float. Float results are unchanged up to rounding.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from rewriter.ir.graph import GraphView, NodeInfo
from rewriter.ir.layers import weight_axes
from rewriter.plan import QuantPlan

__all__ = [
    "DEFAULT_ALPHA",
    "MIN_SPREAD",
    "ChannelAbsMax",
    "ScaleInsertion",
    "SmoothingGroup",
    "SmoothingResult",
    "smooth",
    "smoothing_groups",
    "smoothing_reducers",
]

DEFAULT_ALPHA = 0.8
#: Smooth a tensor only if its largest channel maximum is at least this many times the median one.
MIN_SPREAD = 4.0
REDUCER = "smooth:absmax"


@dataclass(frozen=True)
class SmoothedReader:
    """One MatMul/Gemm reading the smoothed tensor: its weight and the weight's input-channel axis."""

    node: str
    weight: str
    k_axis: int  # MatMul: 0; Gemm: 0, or 1 with transB
    channels: int  # the weight's size along k_axis


@dataclass(frozen=True)
class SmoothingGroup:
    """A tensor whose qualifying readers share one smoothing vector."""

    tensor: str
    channels: int
    readers: tuple[SmoothedReader, ...]


@dataclass(frozen=True)
class ChannelAbsMax:
    """Reducer: per sample, the largest |x| of each channel on the last axis: (N, ..., K) -> (N, K)."""

    name: str = REDUCER

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        return np.abs(x.reshape(x.shape[0], -1, x.shape[-1])).max(axis=1)


@dataclass(frozen=True)
class ScaleInsertion:
    """Insert ``output = Mul(tensor, scale)`` and make ``readers`` read ``output``."""

    tensor: str
    scale_name: str
    scale: np.ndarray = field(repr=False)
    node_name: str
    output: str
    readers: tuple[str, ...]


@dataclass(frozen=True)
class SmoothingResult:
    updates: Mapping[str, np.ndarray]
    insertions: tuple[ScaleInsertion, ...]
    groups: tuple[dict[str, Any], ...]
    alpha: float

    @property
    def smoothed(self) -> tuple[dict[str, Any], ...]:
        return tuple(g for g in self.groups if "skipped" not in g)

    @property
    def inserted_nodes(self) -> tuple[str, ...]:
        return tuple(i.node_name for i in self.insertions)

    def report(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "smoothed": list(self.smoothed),
                "skipped": [g for g in self.groups if "skipped" in g]}


# ----------------------------------------------------------------------------- which layers


def smoothing_groups(graph: GraphView, plan: QuantPlan) -> tuple[SmoothingGroup, ...]:
    """Tensors read by quantized MatMul/Gemm layers that smoothing can serve, in graph order."""
    weights = {p.tensor for p in plan.points if p.role == "weight"}
    per_tensor = {p.tensor for p in plan.points if p.role == "activation" and p.config.granularity == "pertensor"}
    readers: dict[str, list[SmoothedReader]] = {}
    for node in graph.nodes:
        reader = _reader(graph, node, weights, per_tensor)
        if reader is not None:
            readers.setdefault(node.inputs[0], []).append(reader)
    groups = []
    for tensor, found in readers.items():
        channels = _channels(found)
        if channels:
            groups.append(SmoothingGroup(tensor, channels, tuple(found)))
    return tuple(groups)


def _reader(graph: GraphView, node: NodeInfo, weights: set[str], per_tensor: set[str]) -> SmoothedReader | None:
    if node.op_type not in ("MatMul", "Gemm") or len(node.inputs) < 2:
        return None
    x, w = node.inputs[0], node.inputs[1]
    if x not in per_tensor or w not in weights or not graph.is_constant(w) or graph.is_constant(x):
        return None
    shape = graph.tensor(w).shape
    if shape is None or len(shape) != 2:
        return None
    dims = [d for d in shape if isinstance(d, int)]
    if len(dims) != 2:  # a symbolic or unknown size
        return None
    if node.op_type == "Gemm" and node.attrs.get("transA", 0):
        return None
    _, k_axis = weight_axes(node.op_type, node.attrs, len(dims))
    if k_axis is None:  # never for a 2-D weight; narrows the type
        return None
    return SmoothedReader(node.name, w, k_axis, dims[k_axis])


def _channels(readers: Sequence[SmoothedReader]) -> int:
    """The common input-channel count of the readers' weights (0 if they disagree)."""
    counts = {r.channels for r in readers}
    return counts.pop() if len(counts) == 1 else 0


def smoothing_reducers(groups: Sequence[SmoothingGroup]) -> dict[str, list[ChannelAbsMax]]:
    return {g.tensor: [ChannelAbsMax()] for g in groups}


# ----------------------------------------------------------------------------- the scales


def smooth(groups: Sequence[SmoothingGroup], stats: Mapping[str, Mapping[str, np.ndarray]],
           weights: Mapping[str, np.ndarray], alpha: float = DEFAULT_ALPHA,
           min_spread: float = MIN_SPREAD) -> SmoothingResult:
    """The smoothing vectors, the rescaled weights and the Mul nodes to insert.

    Args:
        groups: from ``smoothing_groups``.
        stats: ``stats[tensor][REDUCER]``: per-sample channel maxima, (samples, K).
        weights: float values of every reader's weight.
        alpha: migration strength in (0, 1).
        min_spread: smooth only tensors whose channel maxima spread at least this much.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"smoothing alpha must be in (0, 1), got {alpha}")
    updates: dict[str, np.ndarray] = {}
    insertions: list[ScaleInsertion] = []
    report: list[dict[str, Any]] = []
    for g in groups:
        observed = np.asarray(stats[g.tensor][REDUCER], np.float64)
        if observed.ndim != 2 or observed.shape[1] != g.channels:
            report.append({"tensor": g.tensor, "skipped": f"statistics of shape {observed.shape}, "
                                                          f"expected (samples, {g.channels})"})
            continue
        act_max = observed.max(axis=0)
        spread = _spread(act_max)
        if spread < min_spread:
            report.append({"tensor": g.tensor, "skipped": f"no outlier channels (spread {spread:.3g} < "
                                                          f"{min_spread:g})"})
            continue
        scale = channel_scales(act_max, _weight_max(g, weights), alpha)
        for r in g.readers:
            w = np.asarray(weights[r.weight])
            updates[r.weight] = (w * _along(scale, w.ndim, r.k_axis)).astype(w.dtype)
        stem = f"{g.tensor}_smooth"
        insertions.append(ScaleInsertion(g.tensor, f"{stem}.inv_scale", (1.0 / scale).astype(np.float32),
                                         f"{stem}_mul", f"{stem}ed", tuple(r.node for r in g.readers)))
        report.append({"tensor": g.tensor, "readers": [r.node for r in g.readers], "channels": g.channels,
                       "scale_min": float(scale.min()), "scale_max": float(scale.max()),
                       "activation_spread_before": spread, "activation_spread_after": _spread(act_max / scale)})
    return SmoothingResult(updates, tuple(insertions), tuple(report), alpha)


def channel_scales(act_max: np.ndarray, weight_max: np.ndarray, alpha: float) -> np.ndarray:
    """``act_max ** alpha / weight_max ** (1 - alpha)``; 1 where either maximum is 0 or not finite."""
    act_max, weight_max = np.asarray(act_max, np.float64), np.asarray(weight_max, np.float64)
    ok = (act_max > 0) & (weight_max > 0) & np.isfinite(act_max) & np.isfinite(weight_max)
    scale = np.ones_like(act_max)
    scale[ok] = act_max[ok] ** alpha / weight_max[ok] ** (1.0 - alpha)
    return scale


def _weight_max(g: SmoothingGroup, weights: Mapping[str, np.ndarray]) -> np.ndarray:
    per_reader = []
    for r in g.readers:
        w = np.abs(np.asarray(weights[r.weight], np.float64))
        per_reader.append(np.moveaxis(w, r.k_axis, 0).reshape(g.channels, -1).max(axis=1))
    return np.max(per_reader, axis=0)


def _along(vector: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    shape = [1] * ndim
    shape[axis] = vector.size
    return vector.reshape(shape)


def _spread(channel_max: np.ndarray) -> float:
    """Largest over median positive channel maximum: how much one scale must stretch."""
    positive = channel_max[channel_max > 0]
    return float(positive.max() / np.median(positive)) if positive.size else 1.0
