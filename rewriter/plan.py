"""The quantization plan: plain frozen data, the one truth about what gets quantized.

The planner (``rewriter.match.planner``) builds it from a graph, a hardware
spec and rules; numeric passes read it; ``to_text``/``to_dict`` give the
stable forms that golden tests and the audit compare.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rewriter.errors import SourceLoc
from rewriter.records import direct_init
from rewriter.spec.model import QuantizerConfig

Role = Literal["activation", "weight"]
# "reverted": a measured search (the fidelity guard) returned the node to float; its trail says why.
NodeStatus = Literal["quantized", "float", "ignored", "agnostic", "reverted"]


@direct_init
@dataclass(frozen=True, slots=True)
class Decision:
    """One step of a trail: what happened, by which rule or spec entry, declared where."""

    # insert | ignore | remove | propagate | unify | symmetric | asymmetric | per_tensor | requantize
    # | int32_bias | storage | spec | config | float | agnostic | revert (a measured search returned the node
    # to float)
    action: str
    source: str  # rule name, "spec:<op>", "cli", ...
    loc: SourceLoc = field(default=SourceLoc("<builtin>"))
    detail: str = ""

    def render(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.action} by {self.source} @ {self.loc}{detail}"


def decision_key(decision: Decision) -> tuple[str, str, str, str, int, int]:
    """``decision``'s fields as one flat tuple: equal exactly when the decisions are, and far cheaper to hash or
    compare than the dataclass (whose hash also hashes its SourceLoc) when a plan holds hundreds of thousands."""
    loc = decision.loc
    return decision.action, decision.source, decision.detail, loc.file, loc.line, loc.column


@direct_init
@dataclass(frozen=True, slots=True)
class Consumer:
    """An input port that reads a tensor through its FakeQuantize."""

    node: str
    port: int


@direct_init
@dataclass(frozen=True, slots=True)
class FakeQuantizePoint:
    """A FakeQuantize on one tensor.

    ``consumers`` lists the input ports that read the quantized value (other
    consumers keep reading float); an output FakeQuantize (``at_output``)
    serves every consumer. ``config`` is the chosen config (by preset) among
    ``candidates`` (the intersection over consumers, priority order).
    """

    tensor: str
    role: Role
    config: QuantizerConfig
    candidates: tuple[QuantizerConfig, ...]
    consumers: tuple[Consumer, ...]
    at_output: bool = False
    channel_axis: int | None = None
    unify_group: int | None = None
    trail: tuple[Decision, ...] = ()


@direct_init
@dataclass(frozen=True, slots=True)
class Requantization:
    """The output of a grid-preserving op (data movement, max, zero padding) that reads quantized values.

    Its values are already levels of the grid of ``grid`` (a planned activation tensor), so the emitter
    quantizes ``tensor`` again with exactly those parameters: lossless, and the integer chain of the runtime
    is not broken by a float op. Chains of such ops all name the same ``grid``.
    """

    tensor: str
    node: str
    grid: str
    trail: tuple[Decision, ...] = ()


@direct_init
@dataclass(frozen=True, slots=True)
class IntegerBias:
    """The bias of a linear layer stored as int32 with scale = activation scale x weight scale.

    ``node`` is the layer (Conv, ConvTranspose, Gemm: bias is input 2; MatMul: the constant of the Add
    right after it, which may be added by bias correction after planning). ``activation`` and ``weight``
    are the planned tensors whose scales multiply. A bias whose values do not fit int32 at that scale stays
    float (the quantize report says so).
    """

    node: str
    activation: str
    weight: str
    bias: str = ""  # the bias tensor when planned; "" when the layer had none (a pass may add one)
    trail: tuple[Decision, ...] = ()


@direct_init
@dataclass(frozen=True, slots=True)
class NodeDecision:
    """Why a node is (or is not) quantized.

    ``body_nodes``: the nodes inside its If/Loop/Scan bodies (at any depth); the plan places nothing there,
    so they all stay float.
    """

    node: str
    op_type: str
    status: NodeStatus
    reason: str
    trail: tuple[Decision, ...] = ()
    body_nodes: int = 0


@dataclass(frozen=True)
class QuantPlan:
    """Everything the output model will hold, each item with the trail of decisions that put it there.

    ``rewriter.audit`` returns it; ``rewriter.quantize`` emits exactly it (``QuantizeResult.plan``).
    ``points``: one FakeQuantize per quantized tensor; ``requantized``: outputs quantized again with
    their input's grid; ``int32_biases``: layers whose bias is stored as int32; ``nodes``: every node
    with its status (quantized, agnostic, float, ignored, reverted) and reason. JSON form:
    docs/plan-schema.md.
    """

    model: str
    target: str
    spec_path: str
    preset: str
    rule_files: tuple[str, ...]
    points: tuple[FakeQuantizePoint, ...]
    nodes: tuple[NodeDecision, ...]
    requantized: tuple[Requantization, ...] = ()
    int32_biases: tuple[IntegerBias, ...] = ()
    # "unsigned" (uint8/uint16) or "signed" (int8/int16): the integer type activations are stored in; weights
    # always take the narrowest type of their levels' sign.
    activation_storage: str = "unsigned"
    storage_trail: tuple[Decision, ...] = ()

    def point(self, tensor: str) -> FakeQuantizePoint | None:
        return next((p for p in self.points if p.tensor == tensor), None)

    def node(self, name: str) -> NodeDecision | None:
        return next((n for n in self.nodes if n.node == name), None)


def source_of(trail: tuple[Decision, ...]) -> Decision | None:
    """The decision that placed a quantizer, bias or requantization: the last propagation (it moved the
    FakeQuantize where it is), else the first insert, requantize or int32_bias."""
    moved = [d for d in trail if d.action == "propagate"]
    if moved:
        return moved[-1]
    return next((d for d in trail if d.action in ("insert", "requantize", "int32_bias")), None)
