"""FastBiasCorrection and BiasCorrection: make each quantized layer's output mean the float one.

Quantizing the weights (and the input) of a Conv/ConvTranspose/Gemm/MatMul
shifts the mean of its output channels: the rounding errors of a channel's
weights do not average out when the weights are skewed, and the next layers
see a constant offset. Both methods measure that shift per output channel and
fold it into the layer's bias, as the original tool (POT) did
(pot-facts.md, section c):

``fast_bias_correction`` (the default, ``use_fast_bias: true``)
    For each layer: the per-channel mean of its float input and of its float
    output (after the bias) over the calibration set, from the one statistics
    pass MinMax makes anyway (``bias_reducers`` adds the reductions). Then the
    layer alone, bias removed, is run on ONE constant tensor ``m`` whose
    channel c is the float input mean of c. Accepted if
    ``max |(new - old) / old| < threshold`` (2.0). Two estimates (``mode``):

    * ``"weights"`` (default): ``new_bias = old + layer(m) - layer_q(m)``,
      ``layer_q`` with fake-quantized weights. For a linear layer this is
      ``(W - W_q) . E[x]``, the mean shift the weight rounding causes,
      exactly, and the approximations of the constant input (padding
      borders, positions that differ from the channel mean) cancel between
      the two runs. The input FakeQuantize is not applied: rounding one
      constant to the grid says nothing about what rounding the data does on
      average (nearly nothing, for round-to-nearest).
    * ``"original"``: POT's formula, input and weights fake-quantized,
      ``new_bias = float output mean (data) - layer_q(fq(m))``. It mixes the
      data's output mean with a one-tensor estimate, so their difference
      (large on small images, where the padding borders are a big part of the
      output) lands in the bias: on the benchmark's 8x8-digit CNN it cost
      8 dB of output SQNR and 1.4% accuracy, where ``"weights"`` is neutral
      (docs/benchmarks.md; issue 5's closing note has the other models).

``bias_correction`` (``use_fast_bias: false``)
    On the first ``max(int(0.2 * stat_subset_size), 1)`` samples, in
    topological order, the shift of each layer is measured on the real
    activations of the quantized model, upstream corrections applied, so the
    error a layer inherits from the layers before it is corrected too:
    ``shift = float output mean - quantized output mean`` (means over those
    samples and all non-channel positions); ``bias += shift`` if
    ``max |shift / bias| < threshold`` (1000).

How BiasCorrection runs (and how it differs from the original tool)
    POT rebuilt, for every biased layer, the sub-graph from the previous biased
    layers' inputs to this layer and re-ran it on stored activations, so the
    work grew with layers x sub-graph size. Here the quantized model is
    simulated ONCE over the subset, in topological order, cut into segments
    that each end at a corrected layer's output (or before a node that reads a
    FakeQuantize of a tensor produced in the same segment):

    * every segment runs in onnxruntime through ``run_nodes`` (the
      ``LayerRunner``) on all its samples, with the planned FakeQuantizes
      applied exactly as the plan says: fake-quantized weights, and the
      readers listed by each activation FakeQuantize given
      ``fq_math.fake_quantize`` of the tensor (the other readers keep float);
    * when a segment ends at a layer's output, the layer's shift is computed
      from that output and, when accepted, added to the stored output of every
      sample before anything downstream runs. A bias is a per-channel constant
      added to the output, so adding the shift to the stored output is
      exactly what re-running the layer with the new bias would give: later
      layers see the corrected earlier ones, as in the original tool, without
      running anything twice;
    * the float reference (the output means over the same samples) is read
      from the statistics of the MinMax pass (first rows), so there is no
      float pass at all.

    The cost is one pass of the quantized model (unfused, segment by segment)
    over the subset, whatever the number of layers; memory holds the live
    activations of the subset at one cut of the graph. It is exact, not an
    approximation of POT's sub-graph re-execution: both compute the quantized
    output of a layer from the quantized upstream with the corrections made so
    far; ours simulates the whole upstream where POT cut it at the previous
    biased layers' inputs and fed float activations there. Only the nodes
    that some corrected layer depends on are run.

Where we differ from the original tool (on purpose)
    * A layer WITHOUT a bias gets one (the issue asks for it; POT skipped such
      layers): Conv/ConvTranspose/Gemm get input 2, a MatMul gets an Add after
      it (``ir.edit.apply_weight_updates`` does both). There is no old bias to
      compare with, so the acceptance test is relative to the output itself:
      ``max |shift| / max_c |float output mean_c| < threshold``.
    * A layer whose bias is shared with other nodes, computed (not a constant)
      or not one value per output channel is reported and left alone.
    * The input FakeQuantize of a layer is found through value-preserving ops
      (Reshape, Transpose, Flatten, ...) when the plan placed it above them, so
      FastBiasCorrection quantizes the constant input as the model will.
    * Gemm's ``beta`` is honoured (the bias is ``beta * C``); Gemm with
      ``transA`` is not corrected.

Layering: numpy and the GraphView only; every onnxruntime execution comes in
as a callable (``rewriter.calibrate.layer_runner.LayerRunner.run``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol, Sequence

import numpy as np

from rewriter.algorithms.fq_math import fake_quantize
from rewriter.algorithms.types import TensorRange
from rewriter.ir.graph import GraphView, NodeInfo
from rewriter.ir.layers import WEIGHT_PORT, LinearLayer, linear_layers, matmul_bias_names
from rewriter.plan import FakeQuantizePoint, QuantPlan

__all__ = [
    "BiasCorrectionResult",
    "BiasTarget",
    "ChannelMean",
    "FAST_MODES",
    "FAST_THRESHOLD",
    "LayerCorrection",
    "NodeRunner",
    "THRESHOLD",
    "bias_constants",
    "bias_correction",
    "bias_correction_subset",
    "bias_reducers",
    "bias_targets",
    "fast_bias_correction",
]

#: Default thresholds of the original tool: FastBiasCorrection, BiasCorrection.
FAST_THRESHOLD = 2.0
THRESHOLD = 1000.0
#: FastBiasCorrection estimates (module docstring): ours by default, and the original tool's formula.
FAST_MODES = ("weights", "original")
#: BiasCorrection runs on this fraction of the statistics subset (at least one sample).
SUBSET_RATIO = 0.2
REDUCER_PREFIX = "bias:"

# Ops whose output holds exactly the values of their input 0 (rearranged), so a
# FakeQuantize above them quantizes what they pass on.
_VALUE_PRESERVING = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity")
_MAX_WALK = 16


class NodeRunner(Protocol):
    """Runs some nodes of the model (``LayerRunner.run``): names in topological order -> outputs."""

    def __call__(self, nodes: Sequence[str], feeds: Mapping[str, np.ndarray],
                 overrides: Mapping[str, np.ndarray] | None = None, *, outputs: Sequence[str] | None = None,
                 aliases: Mapping[tuple[str, int], str] | None = None) -> dict[str, np.ndarray]: ...


# ----------------------------------------------------------------------------------------------
# Which layers


@dataclass(frozen=True)
class BiasTarget:
    """A layer whose bias can be corrected.

    Attributes:
        node, op_type: the Conv/ConvTranspose/Gemm/MatMul node.
        input: the tensor the node reads at port 0 (its activation).
        input_range: the planned tensor whose range quantizes ``input`` (the
            input itself, or a tensor above value-preserving ops); None when
            the input stays float.
        weight: the constant weight (port 1), which the plan quantizes.
        node_output: the node's own output (before a separate bias Add).
        output: the tensor after the bias: the node's output, or the output of
            the bias Add that follows a MatMul/Conv.
        channel_axis: the output channel axis as the op defines it (1 for
            Conv/ConvTranspose, -1 for Gemm/MatMul).
        reduce_axis: the same channel axis counted from the end (``1 - rank``
            for Conv, -1 otherwise) for input and output; it stays right when a
            tensor is reduced with an extra leading axis.
        channels: number of output channels.
        weight_axis: the weight's output-channel axis.
        bias: the initializer holding the bias, None when there is none yet.
        bias_in_node: the bias is an input of the node (Conv/Gemm input 2), so
            running the node alone includes it; else it is in a separate Add.
        bias_scale: the factor the op multiplies the bias by (Gemm's beta; else 1).
        create: no bias yet: one is created (named ``new_bias_name``).
        problem: why this layer cannot be corrected ("" when it can).
    """

    node: str
    op_type: str
    input: str
    input_range: str | None
    weight: str
    node_output: str
    output: str
    channel_axis: int
    reduce_axis: int
    channels: int
    weight_axis: int
    bias: str | None
    bias_in_node: bool
    bias_scale: float = 1.0
    create: bool = False
    new_bias_name: str | None = None
    problem: str = ""


def bias_targets(graph: GraphView, plan: QuantPlan) -> tuple[BiasTarget, ...]:
    """The Conv/ConvTranspose/Gemm/MatMul nodes whose constant weight the plan quantizes, in graph order.

    A target's bias is Conv/ConvTranspose/Gemm input 2, else a following Add
    of a per-channel constant (the node's only reader; the constant read by
    that Add only), else none (``create``). Layers that cannot be corrected
    (shared or computed bias, a bias that is not per channel) are returned
    with ``problem`` set, so reports can say why.
    """
    weight_points = {(c.node, c.port): p for p in plan.points if p.role == "weight" for c in p.consumers}
    activations = {p.tensor: p for p in plan.points if p.role != "weight"}
    targets = []
    for layer in linear_layers(graph):
        point = weight_points.get((layer.name, WEIGHT_PORT))
        if point is None or point.tensor != layer.weight or not graph.is_constant(layer.weight):
            continue
        target = _target(graph, activations, layer)
        if target is not None:
            targets.append(target)
    return tuple(targets)


def _target(graph: GraphView, activations: Mapping[str, FakeQuantizePoint], layer: LinearLayer) -> BiasTarget | None:
    node, shape = layer.node, layer.weight_shape
    if graph.tensor(layer.weight).dtype != "float32" or shape is None or layer.out_channels is None:
        return None
    if node.op_type in ("Conv", "ConvTranspose"):
        if len(shape) < 3:
            return None
        # The output has the weight's rank: N, C and one axis per kernel axis.
        reduce_axis, out_rank = 1 - len(shape), len(shape)
    elif node.op_type == "Gemm":
        if layer.trans_a or len(shape) != 2:
            return None
        reduce_axis, out_rank = -1, 2
    else:
        if len(shape) < 2:
            return None
        out_shape = graph.tensor(layer.output).shape
        reduce_axis, out_rank = -1, len(out_shape) if out_shape is not None else None
    channels, axis = layer.out_channels, layer.activation_axis
    base = dict(node=node.name, op_type=node.op_type, input=layer.activation,
                input_range=_input_range(graph, activations, node), weight=layer.weight, node_output=layer.output,
                channel_axis=axis, reduce_axis=reduce_axis, channels=channels,
                weight_axis=layer.out_axis)
    scale = layer.beta if node.op_type == "Gemm" else 1.0

    if layer.bias_input is not None:
        bias = layer.bias_input
        problem = _bias_problem(graph, bias, channels, node.op_type)
        if not problem and scale == 0.0:
            problem = "Gemm beta is 0: its bias has no effect"
        return BiasTarget(**base, output=layer.output, bias=bias, bias_in_node=True, bias_scale=scale,
                          problem=problem)

    add = layer.bias_add
    if add is not None and _per_channel_add(graph, add.constant, channels, axis, out_rank):
        return BiasTarget(**base, output=add.output, bias=add.constant, bias_in_node=False)

    name = _fresh(graph, f"{node.name}.bias")
    problem = ""
    if node.op_type == "MatMul":
        add_name, raw_output = matmul_bias_names(node.name, layer.output)
        taken = [n for n in (add_name,) if n in graph.by_name] + [t for t in (raw_output,) if t in graph.tensors]
        if taken:
            problem = f"cannot add a bias: the name {taken[0]!r} is taken"
    elif scale == 0.0:
        problem = "Gemm beta is 0: a bias would have no effect"
    return BiasTarget(**base, output=layer.output, bias=None, bias_in_node=node.op_type != "MatMul",
                      bias_scale=scale if scale else 1.0, create=True, new_bias_name=name, problem=problem)


def _bias_problem(graph: GraphView, bias: str, channels: int, op_type: str) -> str:
    if not graph.is_constant(bias):
        return f"the bias {bias!r} is computed, not a constant"
    if graph.fanout(bias) > 1:
        return f"the bias {bias!r} is shared with other nodes"
    shape = graph.tensor(bias).shape or ()
    ok = [(channels,)] + ([(1, channels)] if op_type == "Gemm" else [])
    if tuple(shape) not in ok:
        return f"the bias {bias!r} has shape {tuple(shape)}, not one value per output channel ({channels})"
    return ""


def _per_channel_add(graph: GraphView, const: str, channels: int, axis: int, out_rank: int | None) -> bool:
    """Whether a following Add's constant is a bias: float32, read by that Add only, one value per channel."""
    if graph.fanout(const) != 1:
        return False
    info = graph.tensor(const)
    if info.dtype != "float32" or info.shape is None or not all(isinstance(d, int) for d in info.shape):
        return False
    shape = tuple(info.shape)
    if axis == -1:
        position = len(shape) - 1
        if out_rank is not None and len(shape) > out_rank:
            return False
    else:
        if out_rank is None or len(shape) > out_rank:
            return False
        position = len(shape) - out_rank + axis
    return not (position < 0 or shape[position] != channels
                or any(d != 1 for i, d in enumerate(shape) if i != position))


def _input_range(graph: GraphView, activations: Mapping[str, FakeQuantizePoint], node: NodeInfo) -> str | None:
    """The planned tensor whose FakeQuantize the node's input 0 goes through, if any."""
    reader, port, tensor = node.name, 0, node.inputs[0]
    for _ in range(_MAX_WALK):
        p = activations.get(tensor)
        if p is not None and (p.at_output or any(c.node == reader and c.port == port for c in p.consumers)):
            return p.tensor
        producer = graph.producer_of(tensor)
        if producer is None or producer.op_type not in _VALUE_PRESERVING:
            return None
        reader, port, tensor = producer.name, 0, producer.inputs[0]
    return None


def _fresh(graph: GraphView, name: str) -> str:
    candidate, k = name, 1
    while candidate in graph.tensors or candidate in graph.by_name:
        candidate, k = f"{name}_{k}", k + 1
    return candidate


def bias_constants(targets: Iterable[BiasTarget]) -> list[str]:
    """The initializers the passes read besides the planned weights: the existing biases."""
    return sorted({t.bias for t in targets if t.bias is not None and not t.problem})


def bias_correction_subset(stat_subset_size: int) -> int:
    """Samples BiasCorrection uses: ``max(int(0.2 * stat_subset_size), 1)``, as the original tool."""
    return max(int(SUBSET_RATIO * stat_subset_size), 1)


# ----------------------------------------------------------------------------------------------
# Statistics


@dataclass(frozen=True)
class ChannelMean:
    """Per-sample mean of each channel: (N, ...) -> (N, C), returned as float64.

    ``axis`` counts from the end (negative), so a tensor handed over with an
    extra leading axis (the collector does that for tensors without a batch
    axis) is reduced along the same channel.

    The sums run in float32 without copying the tensor (numpy's pairwise
    summation along the contiguous axis: relative error about 1e-7 on a
    112x112 plane), three times faster than float64 accumulation -- this
    reducer runs on every sample of the statistics pass, where float64 made
    MobileNetV2's pass 1.7 times slower (float32: 1.3 times).
    """

    name: str
    axis: int

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        position = x.ndim + self.axis
        if position < 1:
            raise ValueError(f"reducer {self.name}: tensor of shape {x.shape} has no channel axis {self.axis} "
                             "after its sample axis")
        shape = x.shape
        grouped = x.reshape(shape[0], int(np.prod(shape[1:position])), shape[position],
                            int(np.prod(shape[position + 1:])))
        if grouped.dtype not in (np.float32, np.float64):
            grouped = grouped.astype(np.float32)
        return grouped.mean(axis=(1, 3)).astype(np.float64)


def _mean_reducer(axis: int) -> ChannelMean:
    return ChannelMean(f"{REDUCER_PREFIX}channel_mean:{axis}", axis)


def bias_reducers(targets: Iterable[BiasTarget]) -> dict[str, list[ChannelMean]]:
    """Per tensor, the reducers both methods need: channel means of each input and output.

    Merge them into the one MinMax statistics pass (names start with "bias:",
    so they never clash with MinMax's).
    """
    wanted: dict[str, dict[str, ChannelMean]] = {}
    for t in targets:
        if t.problem:
            continue
        for tensor in (t.input, t.output):
            reducer = _mean_reducer(t.reduce_axis)
            wanted.setdefault(tensor, {})[reducer.name] = reducer
    return {tensor: list(by_name.values()) for tensor, by_name in wanted.items()}


def _stat(stats: Mapping[str, Mapping[str, np.ndarray]], tensor: str, axis: int) -> np.ndarray:
    name = _mean_reducer(axis).name
    try:
        return np.asarray(stats[tensor][name], dtype=np.float64)
    except KeyError:
        raise ValueError(f"no statistic {name!r} for tensor {tensor!r}: merge bias_reducers(targets) into the "
                         "statistics pass") from None


# ----------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class LayerCorrection:
    """What happened to one layer's bias.

    ``shift`` is per output channel (new bias - old bias, in the op's terms:
    Gemm's ``beta * C``); ``magnitude`` is what the threshold was compared
    with (``max |shift / old|``, or ``max |shift| / max |float output mean|``
    for a created bias; inf when skipped for a zero bias element).
    ``mean_input_error`` (FastBiasCorrection only): the largest difference, over
    channels, between the float output mean and the float layer's output on the
    constant mean input -- what evaluating at the mean costs on this layer.
    """

    node: str
    op_type: str
    bias: str | None
    created: bool
    accepted: bool
    reason: str
    channels: int = 0
    shift_max_abs: float | None = None
    shift_mean_abs: float | None = None
    magnitude: float | None = None
    mean_input_error: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True, eq=False)
class BiasCorrectionResult:
    """New bias values, to apply with ``rewriter.ir.edit.apply_weight_updates(model, updates, new_biases)``.

    Attributes:
        method: "FastBiasCorrection" or "BiasCorrection".
        updates: existing bias initializer -> corrected value (same shape and dtype).
        new_biases: node -> (initializer name, bias vector) for layers that had none.
        layers: one entry per target, in graph order (BiasCorrection: topological order).
        threshold: the acceptance threshold used.
        samples: calibration samples the shifts were measured on (FastBiasCorrection:
            the rows of the statistics).
        estimate: FastBiasCorrection's mode ("weights" or "original"); "" for BiasCorrection.
    """

    method: str
    updates: Mapping[str, np.ndarray]
    new_biases: Mapping[str, tuple[str, np.ndarray]]
    layers: tuple[LayerCorrection, ...]
    threshold: float
    samples: int
    estimate: str = ""

    def to_dict(self) -> dict[str, Any]:
        """For the report JSON."""
        return {"method": self.method, **({"estimate": self.estimate} if self.estimate else {}),
                "threshold": self.threshold, "samples": self.samples,
                "corrected": sum(1 for layer in self.layers if layer.accepted),
                "created": sorted(self.new_biases),
                "layers": [layer.to_dict() for layer in self.layers]}


@dataclass
class _Builder:
    method: str
    threshold: float
    estimate: str = ""
    updates: dict[str, np.ndarray] = field(default_factory=dict)
    new_biases: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)
    layers: list[LayerCorrection] = field(default_factory=list)

    def skip(self, t: BiasTarget, reason: str) -> None:
        self.layers.append(LayerCorrection(t.node, t.op_type, t.bias or t.new_bias_name, t.create, False, reason,
                                           t.channels))

    def decide(self, t: BiasTarget, old: np.ndarray, shift: np.ndarray, float_mean: np.ndarray,
               old_value: np.ndarray | None, mean_input_error: float | None = None) -> bool:
        """Accept or reject ``shift`` (per channel, effective units); record the new value if accepted."""
        magnitude, reason = _magnitude(t, old, shift, float_mean)
        accepted = reason == "" and magnitude < self.threshold
        if reason == "":
            reason = "corrected" if accepted else f"shift magnitude {magnitude:.4g} >= threshold {self.threshold:g}"
        self.layers.append(LayerCorrection(
            t.node, t.op_type, t.bias or t.new_bias_name, t.create, accepted, reason, t.channels,
            float(np.max(np.abs(shift))) if np.all(np.isfinite(shift)) else None,
            float(np.mean(np.abs(shift))) if np.all(np.isfinite(shift)) else None,
            magnitude, mean_input_error))
        if accepted:
            value = ((old + shift) / t.bias_scale).astype(np.float32)
            if t.create:
                assert t.new_bias_name is not None
                self.new_biases[t.node] = (t.new_bias_name, value)
            else:
                assert t.bias is not None and old_value is not None
                self.updates[t.bias] = value.reshape(old_value.shape).astype(old_value.dtype)
        return accepted

    def result(self, samples: int) -> BiasCorrectionResult:
        return BiasCorrectionResult(self.method, dict(self.updates), dict(self.new_biases), tuple(self.layers),
                                    self.threshold, samples, self.estimate)


def _magnitude(t: BiasTarget, old: np.ndarray, shift: np.ndarray, float_mean: np.ndarray) -> tuple[float, str]:
    if not np.all(np.isfinite(shift)):
        return float("inf"), "the shift is not finite"
    if t.create:
        reference = float(np.max(np.abs(float_mean))) if float_mean.size else 0.0
        if reference == 0.0:
            return (0.0, "") if not np.any(shift) else (float("inf"), "the float output mean is 0 in every channel")
        return float(np.max(np.abs(shift)) / reference), ""
    if np.any(old == 0):
        return float("inf"), "the bias has a zero element (the original tool skips such layers)"
    return float(np.max(np.abs(shift / old))), ""


def effective_bias(t: BiasTarget, weights: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """The bias in effective units (per channel, times Gemm's beta) and the stored value."""
    if t.bias is None:
        return np.zeros(t.channels, np.float64), None
    try:
        stored = np.asarray(weights[t.bias])
    except KeyError:
        raise ValueError(f"weights has no value for bias {t.bias!r} (pass bias_constants(targets) too)") from None
    return stored.astype(np.float64).reshape(t.channels) * t.bias_scale, stored


def fake_quantize_range(x: np.ndarray, rng: TensorRange) -> np.ndarray:
    """``x`` through the FakeQuantize ``rng`` describes (per channel along ``rng.axis`` when it has one)."""
    per_channel = np.ndim(rng.input_low) > 0
    return fake_quantize(x, rng.input_low, rng.input_high, rng.levels, axis=rng.axis if per_channel else None)


def range_of(ranges: Mapping[str, TensorRange], tensor: str) -> TensorRange:
    """``ranges[tensor]``, or a ValueError naming the tensor (a plan/ranges mismatch is a bug)."""
    try:
        return ranges[tensor]
    except KeyError:
        raise ValueError(f"no range for planned tensor {tensor!r}") from None


def weight_of(weights: Mapping[str, np.ndarray], tensor: str) -> np.ndarray:
    """``weights[tensor]`` as an array, or a ValueError naming the missing constant."""
    try:
        return np.asarray(weights[tensor])
    except KeyError:
        raise ValueError(f"weights has no value for {tensor!r}") from None


def _channel_means(y: np.ndarray, axis: int) -> np.ndarray:
    """Mean of each channel over every other axis of ``y``."""
    moved = np.moveaxis(np.asarray(y), y.ndim + axis if axis < 0 else axis, 0)
    return moved.reshape(moved.shape[0], -1).mean(axis=1, dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# FastBiasCorrection


def fast_bias_correction(targets: Sequence[BiasTarget], stats: Mapping[str, Mapping[str, np.ndarray]],
                         ranges: Mapping[str, TensorRange], weights: Mapping[str, np.ndarray],
                         shapes: Mapping[str, Sequence[int]], run_layer: NodeRunner,
                         threshold: float = FAST_THRESHOLD, mode: str = "weights") -> BiasCorrectionResult:
    """FastBiasCorrection (see the module docstring): one run of each layer alone on its mean input.

    Args:
        targets: from ``bias_targets``.
        stats: the statistics pass's results (``CollectedStats.stats``), with
            ``bias_reducers(targets)`` merged in.
        ranges: the FakeQuantize ranges of the plan (weights and activations).
        weights: float values of the targets' weights and biases
            (``bias_constants(targets)``).
        shapes: an observed shape of each target's input (``CollectedStats.observed_shapes``);
            the constant input gets it with batch 1.
        run_layer: runs nodes with feeds and initializer overrides (``LayerRunner.run``).
        threshold: accept a layer when ``max |(new - old) / old|`` is below it.
        mode: "weights" (the default) or "original" (POT's formula); see the module docstring.

    Returns:
        The corrected biases and a per-layer report.
    """
    if mode not in FAST_MODES:
        raise ValueError(f"FastBiasCorrection mode must be one of {', '.join(FAST_MODES)}, not {mode!r}")
    out = _Builder("FastBiasCorrection", threshold, estimate=mode)
    rows = 0
    for t in targets:
        if t.problem:
            out.skip(t, t.problem)
            continue
        shape = shapes.get(t.input)
        if shape is None:
            out.skip(t, f"no observed shape for the input {t.input!r}")
            continue
        input_mean = _stat(stats, t.input, t.reduce_axis)
        output_stat = _stat(stats, t.output, t.reduce_axis)
        rows = max(rows, len(output_stat))
        float_mean = output_stat.mean(axis=0)
        blob = _mean_blob(shape, input_mean.mean(axis=0), t.reduce_axis)
        weight = weight_of(weights, t.weight)
        old, stored = effective_bias(t, weights)
        quantize_input = mode == "original" and t.input_range is not None
        q_blob = fake_quantize_range(blob, range_of(ranges, t.input_range)) if quantize_input else blob
        q_weight = fake_quantize_range(weight, range_of(ranges, t.weight))
        zero_bias = {} if not (t.bias_in_node and t.bias) else {t.bias: np.zeros_like(stored)}
        q_out = run_layer([t.node], {t.input: q_blob}, {t.weight: q_weight, **zero_bias},
                          outputs=[t.node_output])[t.node_output]
        f_out = run_layer([t.node], {t.input: blob}, {t.weight: weight, **zero_bias},
                          outputs=[t.node_output])[t.node_output]
        q_mean = _channel_means(q_out, t.channel_axis)
        f_mean = _channel_means(f_out, t.channel_axis)
        if mode == "original":
            new = float_mean - q_mean  # the bias that makes the quantized output mean the float one
        else:
            new = old + f_mean - q_mean
        error = float(np.max(np.abs(float_mean - old - f_mean)))
        out.decide(t, old, new - old, float_mean, stored, error)
    return out.result(rows)


def _mean_blob(shape: Sequence[int], means: np.ndarray, axis: int) -> np.ndarray:
    """A float32 tensor of ``shape`` (batch 1) whose channel c (``axis`` from the end) is ``means[c]``."""
    dims = [int(d) for d in shape]
    if len(dims) >= 2:
        dims[0] = 1
    position = len(dims) + axis
    if position < 0 or dims[position] != means.shape[0]:
        raise ValueError(f"input shape {tuple(shape)} has no axis {axis} of {means.shape[0]} channels")
    view = [1] * len(dims)
    view[position] = means.shape[0]
    return np.broadcast_to(means.reshape(view), dims).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# BiasCorrection


@dataclass
class _Segment:
    nodes: list[str]
    reads: list[str]  # env tensors fed directly
    holes: list[str]  # alias names fed with a FakeQuantize of their source
    aliases: dict[tuple[str, int], str]
    outputs: list[str]
    target: BiasTarget | None = None


def bias_correction(graph: GraphView, plan: QuantPlan, targets: Sequence[BiasTarget],
                    stats: Mapping[str, Mapping[str, np.ndarray]], ranges: Mapping[str, TensorRange],
                    weights: Mapping[str, np.ndarray], samples: Iterable[Mapping[str, np.ndarray]],
                    run_nodes: NodeRunner, threshold: float = THRESHOLD) -> BiasCorrectionResult:
    """BiasCorrection (see the module docstring): one segment-wise pass of the quantized model.

    Args:
        graph: the view of the model ``run_nodes`` runs.
        plan: the quantization plan (which readers see which FakeQuantize).
        targets: from ``bias_targets``.
        stats: the statistics pass's results with ``bias_reducers(targets)``; their
            first rows must come from ``samples`` (the float reference).
        ranges: the FakeQuantize ranges of every planned tensor.
        weights: float values of every planned weight and of the targets' biases.
        samples: the first ``bias_correction_subset(stat_subset_size)`` samples of the
            statistics pass, as input dicts.
        run_nodes: runs nodes with feeds, outputs and port aliases (``LayerRunner.run``).
        threshold: accept a layer when ``max |shift / bias|`` is below it.
    """
    out = _Builder("BiasCorrection", threshold)
    samples = [dict(s) for s in samples]
    if not samples:
        raise ValueError("BiasCorrection needs at least one sample")
    active = [t for t in targets if not t.problem]
    producer_index = {t.node: graph.producer[t.output][0] for t in active}
    active.sort(key=lambda t: producer_index[t.node])
    segments, hole_source = _segments(graph, plan, active)
    weight_holes = _weight_holes(plan, ranges, weights, segments, hole_source)
    last_use = _last_use(segments, hole_source)
    envs: list[dict[str, np.ndarray]] = [dict(s) for s in samples]
    run_batches = [_run_batch(s) for s in samples]
    for k, segment in enumerate(segments):
        for env in envs:
            feeds = {name: _env(env, name) for name in segment.reads}
            for hole in segment.holes:
                if hole in weight_holes:
                    feeds[hole] = weight_holes[hole]
                else:
                    if hole not in env:
                        source = hole_source[hole]
                        env[hole] = fake_quantize_range(_env(env, source), range_of(ranges, source))
                    feeds[hole] = env[hole]
            env.update(run_nodes(segment.nodes, feeds, None, outputs=segment.outputs, aliases=segment.aliases))
        t = segment.target
        if t is not None:
            _correct(out, t, stats, weights, envs, run_batches)
        for env in envs:
            for name in [n for n in env if last_use.get(n, len(segments)) <= k]:
                del env[name]
    for t in targets:
        if t.problem:
            out.skip(t, t.problem)
    return out.result(len(samples))


def _env(env: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    try:
        return env[name]
    except KeyError:
        raise ValueError(f"BiasCorrection: tensor {name!r} is needed but the sample does not give it "
                         "(a graph input missing from the sample?)") from None


def _correct(out: _Builder, t: BiasTarget, stats: Mapping[str, Mapping[str, np.ndarray]],
             weights: Mapping[str, np.ndarray], envs: list[dict[str, np.ndarray]],
             run_batches: list[int | None]) -> None:
    """Measure and decide the shift of ``t`` from the quantized outputs in ``envs``; correct them if accepted."""
    reducer = _mean_reducer(t.reduce_axis)
    rows = []
    for env, batch in zip(envs, run_batches):
        y = env[t.output]
        rows.append(reducer(y if y.ndim >= 1 and batch is not None and y.shape[0] == batch else y[None]))
    quantized = np.concatenate(rows, axis=0)
    reference = _stat(stats, t.output, t.reduce_axis)
    if len(reference) < len(quantized):
        raise ValueError(f"BiasCorrection: the statistics of {t.output!r} have {len(reference)} rows, fewer than "
                         f"the {len(quantized)} of its samples; pass the first samples of the statistics pass")
    float_mean = reference[:len(quantized)].mean(axis=0)
    shift = float_mean - quantized.mean(axis=0)
    old, stored = effective_bias(t, weights)
    if out.decide(t, old, shift, float_mean, stored):
        for env in envs:
            y = env[t.output]
            view = [1] * y.ndim
            view[t.channel_axis] = t.channels
            env[t.output] = (y + shift.reshape(view)).astype(y.dtype)


def _run_batch(sample: Mapping[str, np.ndarray]) -> int | None:
    sizes = {np.asarray(v).shape[0] for v in sample.values() if np.ndim(v) >= 1}
    return sizes.pop() if len(sizes) == 1 else None


def _hole_name(graph: GraphView, tensor: str) -> str:
    return _fresh(graph, f"{tensor}::fq")


def _segments(graph: GraphView, plan: QuantPlan,
              active: Sequence[BiasTarget]) -> tuple[list[_Segment], dict[str, str]]:
    """Cut the nodes the targets depend on into runs (see the module docstring)."""
    needed = ancestors(graph, [t.output for t in active])
    # Which input ports read a FakeQuantize, and under which alias name.
    port_alias: dict[tuple[str, int], str] = {}
    hole_source: dict[str, str] = {}
    for point in plan.points:
        readers = ([(n.name, port) for n, port in graph.consumers_of(point.tensor)] if point.at_output
                   else [(c.node, c.port) for c in point.consumers])
        readers = [r for r in readers if r[0] in graph.by_name and graph.by_name[r[0]] in needed]
        if not readers:
            continue
        hole = _hole_name(graph, point.tensor)
        hole_source[hole] = point.tensor
        for reader in readers:
            port_alias[reader] = hole
    ends = {graph.producer[t.output][0]: t for t in active}
    constants = {name for name, info in graph.tensors.items() if info.is_constant}
    activation_holes = {h for h, src in hole_source.items() if src not in constants}
    segments: list[_Segment] = []
    current: list[NodeInfo] = []

    def close(target: BiasTarget | None) -> None:
        if current:
            segments.append(_segment(current, port_alias, constants, target))
            current.clear()

    produced: set[str] = set()
    for index in sorted(needed):
        node = graph.nodes[index]
        holes = [port_alias.get((node.name, port)) for port in range(len(node.inputs))]
        if any(h in activation_holes and hole_source[h] in produced for h in holes if h is not None):
            close(None)
            produced.clear()
        current.append(node)
        produced.update(o for o in node.outputs if o)
        if index in ends:
            close(ends[index])
            produced.clear()
    close(None)
    _segment_outputs(graph, segments, hole_source, {t.output for t in active})
    return segments, hole_source


def _segment(nodes: list[NodeInfo], port_alias: Mapping[tuple[str, int], str], constants: set[str],
             target: BiasTarget | None) -> _Segment:
    produced: set[str] = set()
    reads: list[str] = []
    holes: list[str] = []
    aliases: dict[tuple[str, int], str] = {}
    for node in nodes:
        for port, name in enumerate(node.inputs):
            if not name:
                continue
            alias = port_alias.get((node.name, port))
            if alias is not None:
                aliases[(node.name, port)] = alias
                holes.append(alias)
            elif name not in produced and name not in constants:
                reads.append(name)
        produced.update(o for o in node.outputs if o)
    return _Segment([n.name for n in nodes], list(dict.fromkeys(reads)), list(dict.fromkeys(holes)), aliases, [],
                     target)


def _segment_outputs(graph: GraphView, segments: list[_Segment], hole_source: Mapping[str, str],
                     target_outputs: set[str]) -> None:
    """Each segment returns what later segments read (directly or through a FakeQuantize) and target outputs."""
    later: set[str] = set()
    for segment in reversed(segments):
        produced = [o for name in segment.nodes for o in graph.nodes[graph.by_name[name]].outputs if o]
        segment.outputs = [o for o in produced if o in later or o in target_outputs]
        later.update(segment.reads)
        later.update(hole_source[h] for h in segment.holes)


def _last_use(segments: list[_Segment], hole_source: Mapping[str, str]) -> dict[str, int]:
    """Index of the last segment that reads each stored name (tensor or FakeQuantize alias)."""
    last: dict[str, int] = {}
    for k, segment in enumerate(segments):
        for name in segment.reads:
            last[name] = k
        for hole in segment.holes:
            last[hole] = k
            last[hole_source[hole]] = max(last.get(hole_source[hole], k), k)
    for k, segment in enumerate(segments):
        for name in segment.outputs:
            last.setdefault(name, k)  # produced for a target only: drop once measured
    return last


def _weight_holes(plan: QuantPlan, ranges: Mapping[str, TensorRange], weights: Mapping[str, np.ndarray],
                  segments: list[_Segment], hole_source: Mapping[str, str]) -> dict[str, np.ndarray]:
    """Fake-quantized values of the planned weights the segments read."""
    roles = {p.tensor: p.role for p in plan.points}
    used = {h for s in segments for h in s.holes}
    values = {}
    for hole in sorted(used):
        source = hole_source[hole]
        if roles.get(source) == "weight":
            values[hole] = fake_quantize_range(weight_of(weights, source), range_of(ranges, source))
    return values


def ancestors(graph: GraphView, tensors: Iterable[str]) -> set[int]:
    """Indexes of the nodes the given tensors depend on (their producers included)."""
    seen: set[int] = set()
    stack = [graph.producer[t][0] for t in tensors if t in graph.producer]
    while stack:
        index = stack.pop()
        if index in seen:
            continue
        seen.add(index)
        for name in graph.nodes[index].inputs:
            hit = graph.producer.get(name)
            if hit is not None and hit[0] not in seen:
                stack.append(hit[0])
    return seen

