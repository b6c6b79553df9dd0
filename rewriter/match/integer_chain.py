"""The planner's last phase: which outputs are quantized again, and which biases are stored as int32.

Both follow from the FakeQuantizes already planned and from the rules that ask for them
(``requantize`` and ``int32_bias`` actions, in rules/integer_kernels.rules for the built-in targets):

- ``requantize a.outputs from a.inputs[...]``: when every named input of node ``a`` reads values on one
  quantization grid (one planned activation FakeQuantize, per tensor, or one unified group of them), the
  named outputs are quantized again with that grid. Visited in graph order, so a chain of data-movement
  ops carries the grid down.
- ``int32_bias a``: when linear layer ``a`` reads a per-tensor quantized activation (directly or through
  such a chain) and a quantized constant weight whose channel axis (if any) is the layer's output axis,
  its bias is stored as int32 at scale = activation scale x weight scale.

Everything here is decided from the plan and the graph alone; the emitter only carries it out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from rewriter.dsl import ast
from rewriter.ir.graph import GraphView, NodeInfo
from rewriter.ir.layers import WEIGHT_PORT, LinearLayer, linear_layer
from rewriter.plan import Decision, FakeQuantizePoint, IntegerBias, Requantization

#: Grids wider than this many bits have no ONNX integer type (GNA's 32-bit accumulators stay float).
MAX_STORED_BITS = 16


@dataclass(frozen=True, slots=True)
class RequantizeRequest:
    """A ``requantize`` action matched on one node."""

    node: int
    action: ast.Requantize
    decision: Decision


@dataclass(frozen=True, slots=True)
class BiasRequest:
    """An ``int32_bias`` action matched on one node."""

    node: int
    decision: Decision


class _Grids:
    """Which (node, input port) reads which quantization grid, named by the planned tensor that defines it."""

    def __init__(self, graph: GraphView, points: Sequence[FakeQuantizePoint]) -> None:
        self.graph = graph
        self.points = {p.tensor: p for p in points}
        self.activations: dict[tuple[str, int], str] = {}
        self.weights: dict[tuple[str, int], str] = {}
        for p in points:
            if p.config.bits > MAX_STORED_BITS:
                continue
            table = self.weights if graph.is_constant(p.tensor) else self.activations
            for c in p.consumers:
                table[(c.node, c.port)] = p.tensor
            if p.at_output:
                for reader, port in graph.consumers_of(p.tensor):
                    table[(reader.name, port)] = p.tensor
        self.requantized: dict[str, str] = {}  # re-quantized output -> the tensor whose grid it takes

    def activation(self, node: NodeInfo, port: int) -> str | None:
        tensor = node.inputs[port] if port < len(node.inputs) else ""
        if not tensor:
            return None
        return self.activations.get((node.name, port)) or self.requantized.get(tensor)

    def per_tensor(self, tensor: str) -> bool:
        point = self.points[tensor]
        return point.config.granularity == "pertensor" and point.channel_axis is None

    def same(self, a: str, b: str) -> bool:
        group = self.points[a].unify_group
        return a == b or (group is not None and group == self.points[b].unify_group)


def _requantize(graph: GraphView, grids: _Grids, requests: Iterable[RequantizeRequest],
                ignored: set[int]) -> tuple[Requantization, ...]:
    planned = set(grids.points)
    out: list[Requantization] = []
    for request in sorted(requests, key=lambda r: r.node):
        if request.node in ignored:
            continue
        node = graph.nodes[request.node]
        src, dst = request.action.inputs, request.action.outputs
        ports = src.ports if src.ports is not None else [p for p, t in enumerate(node.inputs) if t]
        found = [grids.activation(node, p) for p in ports if p < len(node.inputs)]
        if not found or any(g is None for g in found):
            continue
        first = found[0]
        assert first is not None
        if not grids.per_tensor(first) or not all(grids.same(first, g) for g in found[1:] if g is not None):
            continue
        outputs = dst.ports if dst.ports is not None else range(len(node.outputs))
        for port in outputs:
            tensor = node.outputs[port] if port < len(node.outputs) else ""
            if (not tensor or tensor in planned or tensor in grids.requantized
                    or not graph.consumers.get(tensor)):
                continue
            grids.requantized[tensor] = first
            detail = f"{node.name} output {port} takes the grid of {first}"
            out.append(Requantization(tensor, node.name, first,
                                      (Decision(request.decision.action, request.decision.source,
                                                request.decision.loc, f"{request.decision.detail}; {detail}"),)))
    return tuple(out)


def plan_integer_chain(graph: GraphView, points: Sequence[FakeQuantizePoint],
                       requantize: Iterable[RequantizeRequest], requests: Iterable[BiasRequest],
                       ignored: set[int]) -> tuple[tuple[Requantization, ...], tuple[IntegerBias, ...]]:
    """Requantized outputs and int32 biases, each in graph order (see the module docstring).

    Requantization comes first: a layer behind a chain of data-movement ops reads the grid it carries.
    """
    grids = _Grids(graph, points)
    requantized = _requantize(graph, grids, requantize, ignored)
    biases: list[IntegerBias] = []
    seen: set[int] = set()
    for request in sorted(requests, key=lambda r: r.node):
        if request.node in seen or request.node in ignored:
            continue
        seen.add(request.node)
        node = graph.nodes[request.node]
        activation = grids.activation(node, 0)
        weight = grids.weights.get((node.name, WEIGHT_PORT))
        if activation is None or weight is None or not grids.per_tensor(activation):
            continue
        # Described only now: a layer whose operands are not both quantized needs no description.
        layer = linear_layer(graph, node)
        if layer is None:
            continue
        if not _weight_axis_fits(layer, grids.points[weight]):
            continue
        bias = _constant_bias(graph, layer)
        if bias and not _bias_fits(graph, bias, layer, grids.points[weight]):
            continue
        what = f"bias {bias}" if bias else "no bias yet (a bias correction pass may add one)"
        detail = f"{node.name}: {what}; scale = scale of {activation} x scale of {weight}"
        d = request.decision
        biases.append(IntegerBias(node.name, activation, weight, bias,
                                  (Decision(d.action, d.source, d.loc, f"{d.detail}; {detail}"),)))
    return requantized, tuple(biases)


def _weight_axis_fits(layer: LinearLayer, weight: FakeQuantizePoint) -> bool:
    """A per-channel weight's scales must run along the layer's output channels, which the bias follows.

    MatMul only with a 2-D weight's last axis (-1 or 1): onnxruntime fuses MatMul + Add into a Gemm, the
    kernel the int32 bias is for, only for 2-D weights.
    """
    if weight.config.granularity == "pertensor" or weight.channel_axis is None:
        return True
    if layer.op_type == "MatMul":
        return weight.channel_axis in (-1, 1)
    return weight.channel_axis == layer.out_axis


def _bias_fits(graph: GraphView, bias: str, layer: LinearLayer, weight: FakeQuantizePoint) -> bool:
    """A float vector with one value per weight scale: the shapes an int32 bias at x_scale * w_scale takes.

    Unknown shapes or types pass; the emitter then keeps a bias float that does not fit, and says so.
    """
    info = graph.tensor(bias)
    if info.dtype is not None and not info.dtype.startswith("float"):
        return False
    if info.shape is None:
        return True
    if len(info.shape) != 1:
        return False
    axis = weight.channel_axis if weight.config.granularity == "perchannel" else None
    if axis is None or layer.weight_shape is None or not isinstance(info.shape[0], int):
        return True
    return layer.weight_shape[axis] == info.shape[0]


def _constant_bias(graph: GraphView, layer: LinearLayer) -> str:
    """The layer's constant bias tensor, "" when it has none (yet)."""
    if layer.op_type == "MatMul":
        return layer.bias_add.constant if layer.bias_add is not None else ""
    bias = layer.bias_input or ""
    return bias if graph.is_constant(bias) else ""
