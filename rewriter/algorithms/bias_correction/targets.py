"""Which layers bias correction works on, and where their biases are.

A target is a Conv/ConvTranspose/Gemm/MatMul (``rewriter.ir.layers``) whose
constant float32 weight the plan quantizes. Its bias is input 2, else a
following Add of a per-channel constant, else it gets one.

Where we differ from the original tool (on purpose)
    * A layer WITHOUT a bias gets one (POT skipped such layers):
      Conv/ConvTranspose/Gemm get input 2, a MatMul gets an Add after it
      (``ir.edit.apply_weight_updates`` does both). There is no old bias to
      compare with, so the acceptance test is relative to the output itself:
      ``max |shift| / max_c |float output mean_c| < threshold``.
    * A layer whose bias is shared with other nodes, computed (not a constant)
      or not one value per output channel is reported and left alone.
    * The input FakeQuantize of a layer is found through value-preserving ops
      (Reshape, Transpose, Flatten, ...) when the plan placed it above them, so
      FastBiasCorrection quantizes the constant input as the model will.
    * Gemm's ``beta`` is honoured (the bias is ``beta * C``); Gemm with
      ``transA`` is not corrected.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from rewriter.ir.graph import GraphView, NodeInfo
from rewriter.ir.layers import WEIGHT_PORT, LinearLayer, linear_layers, matmul_bias_names
from rewriter.plan import FakeQuantizePoint, QuantPlan

__all__ = ["BiasTarget", "bias_constants", "bias_targets", "fresh_name"]

# Ops whose output holds exactly the values of their input 0 (rearranged), so a
# FakeQuantize above them quantizes what they pass on.
_VALUE_PRESERVING = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity")
_MAX_WALK = 16


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
    node, shape, channels = layer.node, layer.weight_shape, layer.out_channels
    if graph.tensor(layer.weight).dtype != "float32" or shape is None or channels is None:
        return None
    out_rank: int | None
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
    axis = layer.activation_axis
    base: dict[str, Any] = dict(node=node.name, op_type=node.op_type, input=layer.activation,
                                input_range=_input_range(graph, activations, node), weight=layer.weight,
                                node_output=layer.output, channel_axis=axis, reduce_axis=reduce_axis,
                                channels=channels, weight_axis=layer.out_axis)
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

    name = fresh_name(graph, f"{node.name}.bias")
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


def fresh_name(graph: GraphView, name: str) -> str:
    candidate, k = name, 1
    while candidate in graph.tensors or candidate in graph.by_name:
        candidate, k = f"{name}_{k}", k + 1
    return candidate


def bias_constants(targets: Iterable[BiasTarget]) -> list[str]:
    """The initializers the passes read besides the planned weights: the existing biases."""
    return sorted({t.bias for t in targets if t.bias is not None and not t.problem})
