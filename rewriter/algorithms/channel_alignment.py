"""ActivationChannelAlignment: even out the channel ranges of an activation between two linear layers.

A per-tensor FakeQuantize on an activation whose channels span very different
ranges (one channel in [-100, 100], another in [-0.01, 0.01]) rounds the small
channels to nothing. When a linear layer with constant weights produces the
activation and another one consumes it, with nothing in between but a bias,
each channel can be shifted and scaled in the producer and the inverse applied
in the consumer: the float function is unchanged, the activation's channels
share one range (pot-facts c, "ActivationChannelAlignment").

Three pure functions, nothing mutated:

1. ``alignment_pairs(graph, plan)``: the (producer, consumer) pairs where the
   rescale is exact. ``alignment_rejections`` says, for every other candidate
   producer, why not;
2. ``alignment_reducers(pairs)``: per-sample, per-channel quantiles
   (1e-4 and 1 - 1e-4) of each pair's activation, for the statistics collector;
3. ``align_channels(pairs, stats, weights)``: the new initializer values.

The math (aggregation by median over samples, per channel c)::

    amin, amax = median of the per-sample quantiles;  amean = (amax + amin) / 2
    s  = (amax - amin) / median(positive ranges), 1 where the range is <= 0, clipped to [0.01, 100]
    if both biases exist:  b_in -= amean;  b_out += (W_out summed over its spatial axes) . amean
    W_in, b_in /= s per output channel;    W_out *= s per input channel

so the consumer reads ``(x - amean) / s`` and computes what it computed before.
``amean`` is the middle of the channel's range, so that after the shift every
channel's range is centred on zero (what a symmetric FakeQuantize wants).
Where each sample holds one value per channel ((N, C) activations, 1x1 maps)
the per-sample ranges are all zero; there the quantiles are taken over the
samples instead (see ``align_channels``), a deviation from POT, which then
aligned nothing.
Exactness needs every output position of the consumer to see whole input
windows (the shift ``amean`` would otherwise be missing where it reads padding)
and nothing non-linear between the two: hence the consumer Conv has group 1,
zero pads, stride 1, dilation 1 (POT's rule; stride and dilation would not
break exactness, but we keep POT's selection), and the producer output (after
its bias) has exactly one reader, the consumer.

Pairs (all weights and biases constant initializers read by that node only):

=====================  =====================  ==========================================
producer               consumer               notes
=====================  =====================  ==========================================
Conv [+ bias input 2]  Conv                   channel axis 1; or a bias Add of a
or Conv -> Add(const)                         per-channel constant instead of input 2
MatMul(x, W 2-D)       MatMul(x, W 2-D)       channel axis -1; biases are following
[-> Add(const)]        [-> Add(const)]        Adds of per-channel constants
Gemm [C]               Gemm (transA 0) [C]    channel axis -1 (columns of B' ); C per
                                              channel; alpha and beta are honoured
=====================  =====================  ==========================================

MatMul/Gemm consumers go beyond POT (which aligned into Convolution only); the
rescale is as exact there: the consumer's K axis is the activation's last
axis, the channel axis. A Conv never pairs with a MatMul/Gemm: their channel
axes differ (1 against -1).

With a plan, a pair also needs: neither node kept float (ignored scope, rules),
a per-tensor activation FakeQuantize read by the consumer (aligning an
activation that is not quantized, or quantized per channel, gains nothing),
and no per-tensor FakeQuantize on either weight (the rescale would move the
spread of ranges into that weight's single range).

Chains (Conv1 -> Conv2 -> Conv3) are two pairs sharing Conv2's tensors; each
pair's update is applied to the values left by the pairs before it, and every
step keeps the function exact, so the order does not matter.

Statistics are taken on the float model before any other pass; ranges
(MinMax) must be measured again on the aligned model: the activations change.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from rewriter.calibrate.aggregators import aggregate
from rewriter.calibrate.estimators import estimate_quantile
from rewriter.ir.graph import GraphView, NodeInfo
from rewriter.ir.layers import LinearLayer, is_default_domain, linear_layer
from rewriter.plan import QuantPlan

#: POT's outlier probability for the alignment quantiles.
ALIGN_OUTLIER_PROB = 1e-4
#: Names of the two statistics each pair's activation gets (keys in the collector's result).
ALIGN_MIN = f"align:quantile:{ALIGN_OUTLIER_PROB:g}"
ALIGN_MAX = f"align:quantile:{1 - ALIGN_OUTLIER_PROB:g}"
#: Bounds of the per-channel scale (POT's).
SCALE_MIN, SCALE_MAX = 0.01, 100.0

_PRODUCERS = ("Conv", "MatMul", "Gemm")
_FLOAT_DTYPES = ("float16", "float32", "float64", "bfloat16")


@dataclass(frozen=True)
class AlignmentPair:
    """A producer whose output channels can be rescaled into a consumer, exactly.

    Axes are axes of the named initializers; ``channel_axis`` is the axis of
    the activation ``tensor`` (1 for Conv, -1 for MatMul/Gemm). A bias has
    exactly ``channels`` (``b_in``) or consumer-output-channel (``b_out``)
    elements. ``b_in_factor`` converts an activation shift into bias units
    (1 / beta of a Gemm producer); ``b_out_factor`` scales the consumer's
    weight sum into its bias (alpha / beta of a Gemm consumer).
    """

    producer: str
    consumer: str
    tensor: str
    channel_axis: int
    channels: int
    w_in: str
    w_in_axis: int
    w_out: str
    w_out_axis: int
    w_out_out_axis: int
    b_in: str | None = None
    b_out: str | None = None
    b_in_factor: float = 1.0
    b_out_factor: float = 1.0

    def __post_init__(self) -> None:
        if self.channels < 1:
            raise ValueError(f"pair {self.producer}->{self.consumer}: channels must be >= 1, got {self.channels}")
        if self.w_out_axis == self.w_out_out_axis:
            raise ValueError(f"pair {self.producer}->{self.consumer}: W_out's input and output axes are equal")
        if not (np.isfinite(self.b_in_factor) and np.isfinite(self.b_out_factor)):
            raise ValueError(f"pair {self.producer}->{self.consumer}: bias factors must be finite")


@dataclass(frozen=True)
class ChannelQuantile:
    """Reducer: per-sample, per-channel quantile of a batch ``(N, ...)`` -> ``(N, C)``."""

    name: str
    side: str  # "min" -> q = outlier_prob, "max" -> q = 1 - outlier_prob
    channel_axis: int
    outlier_prob: float = ALIGN_OUTLIER_PROB

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return estimate_quantile(x, self.channel_axis, self.outlier_prob, side=self.side)  # type: ignore[arg-type]


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


# ----------------------------------------------------------------------------- pairs


def alignment_pairs(graph: GraphView, plan: QuantPlan | None = None) -> tuple[AlignmentPair, ...]:
    """The pairs where channel alignment is exact (and, with a plan, useful), in topological order."""
    return tuple(found for found in _examine_all(graph, plan).values() if isinstance(found, AlignmentPair))


def alignment_rejections(graph: GraphView, plan: QuantPlan | None = None) -> dict[str, str]:
    """For every Conv/MatMul/Gemm that does not start a pair: node name -> why not."""
    return {name: found for name, found in _examine_all(graph, plan).items() if isinstance(found, str)}


def _examine_all(graph: GraphView, plan: QuantPlan | None) -> dict[str, AlignmentPair | str]:
    checker = _PlanCheck(plan) if plan is not None else None
    examiner = _Examiner(graph)
    out: dict[str, AlignmentPair | str] = {}
    for node in graph.nodes:
        if node.op_type not in _PRODUCERS or not is_default_domain(node.domain):
            continue
        found = examiner.pair(node)
        if isinstance(found, AlignmentPair) and checker is not None:
            found = checker.veto(found) or found
        out[node.name] = found
    return out


class _Reject(Exception):
    """A candidate fails; the message says why (and names the node responsible)."""


@dataclass(frozen=True)
class _Side:
    """One end of a pair: the node, its weight, its channel axes, its bias."""

    node: NodeInfo
    weight: str
    out_axis: int  # output-channel axis of the weight
    in_axis: int  # input-channel axis of the weight
    bias: str | None
    bias_factor: float
    output: str  # the node's output after its bias
    bias_broadcasts: bool = False  # an Add constant (numpy broadcasting), not a Conv's 1-D input 2


class _Examiner:
    def __init__(self, graph: GraphView) -> None:
        self.g = graph

    def pair(self, producer: NodeInfo) -> AlignmentPair | str:
        try:
            return self._pair(producer)
        except _Reject as why:
            return str(why)

    def _pair(self, producer: NodeInfo) -> AlignmentPair:
        p = self._producer_side(self._layer(producer))
        consumer, port = self._single_reader(p.output, producer.name)
        family = "conv" if producer.op_type == "Conv" else "linear"
        if consumer.op_type not in (("Conv",) if family == "conv" else ("MatMul", "Gemm")):
            wanted = "a Conv" if family == "conv" else "a MatMul or Gemm"
            raise _Reject(f"{p.output} goes to {consumer.op_type} {consumer.name}, not directly to {wanted}")
        if port != 0:
            raise _Reject(f"{p.output} is input {port} of {consumer.op_type} {consumer.name}, not its data input")
        c = self._consumer_side(self._layer(consumer))
        channels = self._dim(p.weight, p.out_axis)
        if self._dim(c.weight, c.in_axis) != channels:
            raise _Reject(f"{consumer.name} reads {self._dim(c.weight, c.in_axis)} channels, "
                          f"{producer.name} makes {channels}")
        axis = 1 if family == "conv" else -1
        if p.bias is not None:
            self._check_bias(p.bias, channels, axis, len(self._shape(p.weight)), p.bias_broadcasts, producer.name)
        b_out = c.bias
        if b_out is not None:
            try:
                self._check_bias(b_out, self._dim(c.weight, c.out_axis), axis, len(self._shape(c.weight)),
                                 c.bias_broadcasts, consumer.name)
            except _Reject:
                b_out = None  # only the mean shift needs it, and it is optional
        for name in (p.weight, c.weight, p.bias):
            if name:
                self._own_constant(name)
        if b_out is not None and self.g.fanout(b_out) != 1:
            b_out = None  # shared: leave it, and with it the mean shift
        return AlignmentPair(producer.name, consumer.name, p.output, 1 if family == "conv" else -1, channels,
                             p.weight, p.out_axis, c.weight, c.in_axis, c.out_axis, p.bias, b_out,
                             p.bias_factor, c.bias_factor)

    # -- the two ends ----------------------------------------------------------------------------

    def _layer(self, node: NodeInfo) -> LinearLayer:
        layer = linear_layer(self.g, node)
        if layer is None:
            if not is_default_domain(node.domain):
                raise _Reject(f"{node.name}: {node.op_type} of domain {node.domain!r} is not the ONNX operator")
            raise _Reject(f"{node.name}: its weight is not a constant initializer")
        return layer

    def _weight_axes(self, layer: LinearLayer) -> tuple[int, int]:
        """(output-channel axis, input-channel axis) of a Conv, 2-D MatMul or Gemm weight."""
        shape = self._shape(layer.weight)
        if layer.op_type == "MatMul" and len(shape) != 2:
            raise _Reject(f"{layer.name}: MatMul weight {layer.weight} has rank {len(shape)}, not 2")
        assert layer.out_axis is not None and layer.in_axis is not None
        return layer.out_axis, layer.in_axis

    def _producer_side(self, layer: LinearLayer) -> _Side:
        node, weight = layer.node, layer.weight
        self._float_constant(weight, node)
        out_axis, in_axis = self._weight_axes(layer)
        bias, factor = None, 1.0
        if node.op_type == "Conv":
            bias = layer.bias_input
        elif node.op_type == "Gemm" and layer.bias_input is not None and layer.beta != 0.0:
            bias, factor = layer.bias_input, 1.0 / layer.beta
        if bias is not None:
            self._float_constant(bias, node)
        output = layer.output
        broadcasts = node.op_type == "Gemm"
        if bias is None:
            bias, output = self._bias_add(layer)
            broadcasts = True
        return _Side(node, weight, out_axis, in_axis, bias, factor, output, broadcasts)

    def _consumer_side(self, layer: LinearLayer) -> _Side:
        node, weight = layer.node, layer.weight
        self._float_constant(weight, node)
        if layer.trans_a:
            raise _Reject(f"{node.name}: Gemm with transA=1 reads the activation transposed")
        out_axis, in_axis = self._weight_axes(layer)
        bias, factor = None, 1.0
        if node.op_type == "Conv":
            self._check_conv_geometry(node, self._shape(weight))
            bias = layer.bias_input
        elif node.op_type == "Gemm" and layer.bias_input is not None and layer.beta != 0.0:
            bias, factor = layer.bias_input, layer.alpha / layer.beta
        if bias is not None and not self._is_float_constant(bias):
            bias = None
        output = layer.output
        broadcasts = node.op_type != "Conv"
        if bias is None and node.op_type == "MatMul":
            try:
                bias, output = self._bias_add(layer)
            except _Reject:
                bias = None  # a consumer without a usable bias: no mean shift, the rescale stays exact
        return _Side(node, weight, out_axis, in_axis, bias, factor, output, broadcasts)

    def _bias_add(self, layer: LinearLayer) -> tuple[str | None, str]:
        """A following Add of a constant: (its constant, its output); (None, output) when there is none."""
        add = layer.bias_add
        if add is None:
            return None, layer.output
        if not self._is_float_constant(add.constant):
            raise _Reject(f"{add.node.name}: bias {add.constant} is not a float constant")
        return add.constant, add.output

    # -- checks ----------------------------------------------------------------------------------

    def _check_conv_geometry(self, node: NodeInfo, w_shape: tuple[int, ...]) -> None:
        a = node.attrs
        spatial = len(w_shape) - 2
        if int(a.get("group", 1)) != 1:
            raise _Reject(f"{node.name}: consumer Conv has group {a.get('group')}, not 1")
        if any(int(v) != 1 for v in a.get("strides", [1] * spatial)):
            raise _Reject(f"{node.name}: consumer Conv has strides {a.get('strides')}, not 1")
        if any(int(v) != 1 for v in a.get("dilations", [1] * spatial)):
            raise _Reject(f"{node.name}: consumer Conv has dilations {a.get('dilations')}, not 1")
        if any(int(v) != 0 for v in a.get("pads", [0] * 2 * spatial)):
            raise _Reject(f"{node.name}: consumer Conv has pads {a.get('pads')}: padding reads zeros that "
                          "the mean shift would not reach")
        auto_pad = str(a.get("auto_pad", "NOTSET"))
        if auto_pad not in ("NOTSET", "VALID") and any(int(k) != 1 for k in w_shape[2:]):
            raise _Reject(f"{node.name}: consumer Conv pads by auto_pad {auto_pad}")

    def _check_bias(self, bias: str, channels: int, channel_axis: int, out_rank: int, broadcasts: bool,
                    owner: str) -> None:
        """The bias holds one value per channel, along the activation's channel axis."""
        shape = self._shape(bias)
        if int(np.prod(shape, dtype=np.int64)) != channels:
            raise _Reject(f"{owner}: bias {bias} has shape {list(shape)}, not one value per channel ({channels})")
        if channels == 1 or not broadcasts:
            return
        if channel_axis == -1:
            position = len(shape) - 1
        else:
            if len(shape) > out_rank:
                raise _Reject(f"{owner}: bias {bias} of rank {len(shape)} widens the output")
            position = len(shape) - out_rank + channel_axis
        if position < 0 or shape[position] != channels:
            raise _Reject(f"{owner}: bias {bias} of shape {list(shape)} does not run along the channel axis")

    def _single_reader(self, tensor: str, producer: str) -> tuple[NodeInfo, int]:
        if self.g.tensor(tensor).is_graph_output:
            raise _Reject(f"{tensor} (from {producer}) is a graph output")
        readers = self.g.consumers_of(tensor)
        if len(readers) != 1:
            names = ", ".join(n.name for n, _ in readers) or "nobody"
            raise _Reject(f"{tensor} (from {producer}) is read by {len(readers)} nodes ({names}), not one")
        return readers[0]

    def _own_constant(self, name: str) -> None:
        """Only this pair's nodes read the initializer: changing it changes nothing else."""
        if self.g.fanout(name) != 1:
            raise _Reject(f"initializer {name} is shared by {self.g.fanout(name)} readers")

    def _float_constant(self, name: str, node: NodeInfo) -> None:
        if not name or not self.g.is_constant(name):
            raise _Reject(f"{node.name}: {name or 'its weight'} is not a constant initializer")
        if not self._is_float_constant(name):
            raise _Reject(f"{node.name}: {name} is {self.g.tensor(name).dtype}, not float")

    def _is_float_constant(self, name: str) -> bool:
        info = self.g.tensor(name)
        return info.is_constant and info.dtype in _FLOAT_DTYPES and info.shape is not None

    def _shape(self, name: str) -> tuple[int, ...]:
        shape = self.g.tensor(name).shape
        assert shape is not None, f"constant {name} has no shape"
        return tuple(int(d) for d in shape)  # type: ignore[arg-type]

    def _dim(self, name: str, axis: int) -> int:
        return self._shape(name)[axis]


class _PlanCheck:
    """Whether the plan makes a pair worth aligning."""

    def __init__(self, plan: QuantPlan) -> None:
        self.points = {p.tensor: p for p in plan.points}
        self.nodes = {n.node: n for n in plan.nodes}

    def veto(self, pair: AlignmentPair) -> str | None:
        for name in (pair.producer, pair.consumer):
            decision = self.nodes.get(name)
            if decision is not None and decision.status == "ignored":
                return f"{name} is kept float ({decision.reason})"
        point = self.points.get(pair.tensor)
        if point is None or point.role != "activation" or not (
                point.at_output or any(c.node == pair.consumer and c.port == 0 for c in point.consumers)):
            return f"{pair.tensor} is not quantized on its way into {pair.consumer}: nothing to gain"
        if point.config.granularity != "pertensor":
            return f"{pair.tensor} is quantized {point.config.granularity}: nothing to gain"
        for weight in (pair.w_in, pair.w_out):
            wp = self.points.get(weight)
            if wp is not None and wp.config.granularity == "pertensor":
                return f"weight {weight} is quantized per tensor: the rescale would spread its range"
        return None


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


__all__ = ["ALIGN_MAX", "ALIGN_MIN", "ALIGN_OUTLIER_PROB", "AlignedPair", "AlignmentPair", "AlignmentResult",
           "ChannelQuantile", "align_channels", "alignment_pairs", "alignment_reducers", "alignment_rejections",
           "channel_scales"]
