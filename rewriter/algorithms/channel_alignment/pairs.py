"""Which (producer, consumer) pairs channel alignment can rescale exactly, and why the others cannot.

The conditions are listed in the package docstring; every candidate producer
gets either an ``AlignmentPair`` or a sentence naming the node responsible.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rewriter.ir.graph import GraphView, NodeInfo
from rewriter.ir.layers import LinearLayer, is_default_domain, linear_layer
from rewriter.plan import QuantPlan

__all__ = ["AlignmentPair", "alignment_pairs", "alignment_rejections"]

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
