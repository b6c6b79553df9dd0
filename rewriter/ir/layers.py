"""The anatomy of a linear layer (Conv, ConvTranspose, Gemm, MatMul), by ONNX operator semantics.

Which input is the weight, which of its axes holds the output channels, where
the bias is (input 2, or an Add of a constant right after the node), and what
Gemm's ``transA``/``transB``/``alpha``/``beta`` and ConvTranspose's ``group``
do to them: every pass that rescales weights or moves biases needs the same
answers, so they are worked out here once, on the onnx-free ``GraphView``.

``linear_layer(graph, node)`` describes one node; the passes then apply their
own conditions (a float32 constant weight, a bias shared with nobody, ...) to
the description. ``weight_axes`` and ``matmul_bias_names`` need no graph, for
code that works on other representations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

from rewriter.ir.graph import GraphView, NodeInfo
from rewriter.records import direct_init

__all__ = [
    "BIAS_INPUT_OPS",
    "BIAS_PORT",
    "DEFAULT_DOMAINS",
    "LINEAR_OPS",
    "WEIGHT_PORT",
    "BiasAdd",
    "LinearLayer",
    "following_bias_add",
    "is_default_domain",
    "linear_layer",
    "linear_layers",
    "matmul_bias_names",
    "weight_axes",
]

#: The names of the default ONNX operator domain (models write it either way).
DEFAULT_DOMAINS: tuple[str, ...] = ("", "ai.onnx")
#: Ops whose output is a linear function of input 0 with a constant weight at input 1.
LINEAR_OPS: tuple[str, ...] = ("Conv", "ConvTranspose", "Gemm", "MatMul")
#: Linear ops that take their bias as an input (C of Gemm); MatMul's bias is a following Add.
BIAS_INPUT_OPS: tuple[str, ...] = ("Conv", "ConvTranspose", "Gemm")
WEIGHT_PORT = 1
BIAS_PORT = 2

BiasSource = Literal["input", "add", "none"]


def is_default_domain(domain: str) -> bool:
    """Whether an op domain is the default ONNX one ("" or "ai.onnx")."""
    return domain in DEFAULT_DOMAINS


def weight_axes(op_type: str, attrs: Mapping[str, Any], weight_rank: int | None) -> tuple[int | None, int | None]:
    """(output-channel axis, input-channel axis) of a linear op's weight (input 1).

    Conv: W is [C_out, C_in/g, k...] -> (0, 1). ConvTranspose: W is
    [C_in, C_out/g, k...] -> (1, 0). Gemm: B is [K, N] -> (1, 0), or [N, K]
    with ``transB`` -> (0, 1). MatMul: x @ W with W [..., K, N] -> (last,
    second to last), None where the rank has no such axis or is unknown.

    Raises:
        ValueError: ``op_type`` is not one of ``LINEAR_OPS``.
    """
    if op_type == "Conv":
        return 0, 1
    if op_type == "ConvTranspose":
        return 1, 0
    if op_type == "Gemm":
        return (0, 1) if attrs.get("transB", 0) else (1, 0)
    if op_type == "MatMul":
        if not weight_rank:
            return None, None
        return weight_rank - 1, (weight_rank - 2 if weight_rank >= 2 else None)
    raise ValueError(f"{op_type} is not a linear op ({', '.join(LINEAR_OPS)})")


def matmul_bias_names(node_name: str, output: str) -> tuple[str, str]:
    """(Add node, MatMul's renamed output) when a bias is added after a MatMul.

    The Add takes over the MatMul's output name so that readers stay unchanged;
    ``rewriter.ir.edit.apply_weight_updates`` names them so, and a pass that
    plans such a bias checks beforehand that both names are free.
    """
    return f"{node_name}_bias", f"{output}_before_bias"


# Both are made once per linear node by the planner and by each pass that looks at layers: direct_init fills
# their slots directly.
@direct_init
@dataclass(frozen=True, slots=True)
class BiasAdd:
    """An ``Add`` of a constant that is the only reader of a linear node's output.

    Attributes:
        node: the Add.
        constant: its constant input (the bias).
        port: the constant's input port on the Add.
        output: the Add's output (the layer's output after the bias).
    """

    node: NodeInfo
    constant: str
    port: int
    output: str


@direct_init
@dataclass(frozen=True, slots=True)
class LinearLayer:
    """One Conv/ConvTranspose/Gemm/MatMul node of the default domain, as the passes see it.

    Attributes:
        node: the node.
        activation: its input 0 (Gemm with ``trans_a`` reads it transposed).
        weight: its input 1 ("" when omitted).
        weight_shape: the weight's shape when every dimension is a known int, else None.
        out_axis, in_axis: output- and input-channel axes of the weight (``weight_axes``).
        bias_input: input 2 of Conv/ConvTranspose/Gemm when given, else None.
        bias_add: the Add of a constant that alone reads the node's output, if
            any -- looked up whether or not ``bias_input`` is given, so a pass
            that cannot use input 2 (Gemm with ``beta`` 0) can still see it.
        trans_a, trans_b, alpha, beta: Gemm's attributes (False/1.0 elsewhere).
        group: Conv/ConvTranspose's ``group`` (1 elsewhere).
    """

    node: NodeInfo
    activation: str
    weight: str
    weight_shape: tuple[int, ...] | None
    out_axis: int | None
    in_axis: int | None
    bias_input: str | None
    bias_add: BiasAdd | None
    trans_a: bool = False
    trans_b: bool = False
    alpha: float = 1.0
    beta: float = 1.0
    group: int = 1

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def op_type(self) -> str:
        return self.node.op_type

    @property
    def output(self) -> str:
        """The node's own output, before a following bias Add."""
        return self.node.outputs[0]

    @property
    def activation_axis(self) -> int:
        """The channel axis of the activation in and out: 1 for Conv/ConvTranspose (NC...), -1 otherwise."""
        return 1 if self.op_type in ("Conv", "ConvTranspose") else -1

    @property
    def out_channels(self) -> int | None:
        """Output channels, from the weight's shape (ConvTranspose: its per-group count times ``group``)."""
        shape = self.weight_shape
        if shape is None or self.out_axis is None or len(shape) <= self.out_axis:
            return None
        return shape[self.out_axis] * (self.group if self.op_type == "ConvTranspose" else 1)

    @property
    def bias_source(self) -> BiasSource:
        """Where the bias is: input 2 first, else the following Add, else nowhere."""
        if self.bias_input is not None:
            return "input"
        return "add" if self.bias_add is not None else "none"

    @property
    def bias(self) -> str | None:
        """The bias tensor of ``bias_source``."""
        if self.bias_input is not None:
            return self.bias_input
        return self.bias_add.constant if self.bias_add is not None else None

    @property
    def bias_port(self) -> int | None:
        """``BIAS_PORT`` when the bias is an input of the node, else None."""
        return BIAS_PORT if self.bias_input is not None else None

    @property
    def biased_output(self) -> str:
        """The layer's output after its bias: the Add's output for a bias Add, else the node's output."""
        if self.bias_input is None and self.bias_add is not None:
            return self.bias_add.output
        return self.output


def linear_layer(graph: GraphView, node: NodeInfo) -> LinearLayer | None:
    """The description of ``node``; None unless it is a default-domain linear op with a weight input."""
    if node.op_type not in LINEAR_OPS or not is_default_domain(node.domain) or len(node.inputs) <= WEIGHT_PORT:
        return None
    weight = node.inputs[WEIGHT_PORT]
    shape = graph.tensor(weight).shape if weight else None
    dims = [d for d in shape if isinstance(d, int)] if shape is not None else []
    static = tuple(dims) if shape is not None and len(dims) == len(shape) else None
    rank = len(shape) if shape is not None else None
    out_axis, in_axis = weight_axes(node.op_type, node.attrs, rank)
    bias_input = None
    if node.op_type in BIAS_INPUT_OPS and len(node.inputs) > BIAS_PORT and node.inputs[BIAS_PORT]:
        bias_input = node.inputs[BIAS_PORT]
    attrs = node.attrs
    gemm = node.op_type == "Gemm"
    return LinearLayer(
        node=node, activation=node.inputs[0], weight=weight, weight_shape=static,
        out_axis=out_axis, in_axis=in_axis, bias_input=bias_input, bias_add=following_bias_add(graph, node),
        trans_a=bool(attrs.get("transA", 0)) if gemm else False,
        trans_b=bool(attrs.get("transB", 0)) if gemm else False,
        alpha=float(attrs.get("alpha", 1.0)) if gemm else 1.0,
        beta=float(attrs.get("beta", 1.0)) if gemm else 1.0,
        group=int(attrs.get("group", 1)) if node.op_type in ("Conv", "ConvTranspose") else 1)


def linear_layers(graph: GraphView) -> tuple[LinearLayer, ...]:
    """Every linear layer of the graph, in graph order."""
    layers = (linear_layer(graph, node) for node in graph.nodes)
    return tuple(layer for layer in layers if layer is not None)


def following_bias_add(graph: GraphView, node: NodeInfo) -> BiasAdd | None:
    """The default-domain two-input Add of a constant that is the only reader of ``node``'s output 0.

    The output must not be a graph output (the Add would then not be the only
    one to see it). Whether the constant fits as a bias (dtype, shape, other
    readers) is for the caller to judge.
    """
    if not node.outputs or not node.outputs[0]:
        return None
    output = node.outputs[0]
    # From the consumer index itself (asked for every linear node by the planner and the passes): one reader,
    # and not a graph output, which would count as a second.
    readers = graph.consumers.get(output)
    if readers is None or len(readers) != 1 or graph.tensor(output).is_graph_output:
        return None
    index, port = readers[0]
    add = graph.nodes[index]
    if add.op_type != "Add" or not is_default_domain(add.domain) or len(add.inputs) != 2:
        return None
    constant = add.inputs[1 - port]
    if constant == output or not graph.is_constant(constant):
        return None
    return BiasAdd(add, constant, 1 - port, add.outputs[0])
