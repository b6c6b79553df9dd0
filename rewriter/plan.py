"""The quantization plan: plain frozen data, the one truth about what gets quantized.

The planner (``rewriter.match.planner``) builds it from a graph, a hardware
spec and rules; numeric passes read it; ``to_text``/``to_dict`` give the
stable forms that golden tests and the audit compare.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rewriter.errors import SourceLoc
from rewriter.spec.model import QuantizerConfig

Role = Literal["activation", "weight"]
NodeStatus = Literal["quantized", "float", "ignored", "agnostic"]


@dataclass(frozen=True)
class Decision:
    """One step of a trail: what happened, by which rule or spec entry, declared where."""

    action: str  # insert | ignore | remove | propagate | merge | unify | symmetric | asymmetric | spec | config | cli
    source: str  # rule name, "spec:<op>", "cli", ...
    loc: SourceLoc = field(default=SourceLoc("<builtin>"))
    detail: str = ""

    def render(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.action} by {self.source} @ {self.loc}{detail}"


@dataclass(frozen=True)
class Consumer:
    """An input port that reads a tensor through its FakeQuantize."""

    node: str
    port: int


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class NodeDecision:
    """Why a node is (or is not) quantized."""

    node: str
    op_type: str
    status: NodeStatus
    reason: str
    trail: tuple[Decision, ...] = ()


@dataclass(frozen=True)
class QuantPlan:
    model: str
    target: str
    spec_path: str
    preset: str
    rule_files: tuple[str, ...]
    points: tuple[FakeQuantizePoint, ...]
    nodes: tuple[NodeDecision, ...]

    def point(self, tensor: str) -> FakeQuantizePoint | None:
        return next((p for p in self.points if p.tensor == tensor), None)

    def node(self, name: str) -> NodeDecision | None:
        return next((n for n in self.nodes if n.node == name), None)
