"""Why one node is (or is not) quantized: the rules tried on it, how far each got, and the spec's answer.

For every rule whose pattern has a capture that admits the node's op type,
the node is bound to that capture and the pattern is grown from there along
its edges, as the matcher grows it from an anchor, but recording the deepest
point where growth stopped: which pattern node, which edge or predicate part,
and the values actually found. A separate walk, so the matcher's own search
(``PatternMatcher.find``) carries no bookkeeping and planning costs the same.

Whether a rule matched is read from the matcher's real matches, so the answer
agrees with the plan even where an embedding exists but loses to a longer
variant at the anchor (longest match); that case is reported as "shadowed".
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Collection, Literal, Mapping, Sequence

from rewriter.dsl import ast
from rewriter.errors import SourceLoc, UserError
from rewriter.ir.graph import GraphView, NodeInfo
from rewriter.match.matcher import Match, PatternMatcher, Variant, edge_holds, grow_order, neighbours
from rewriter.match.predicates import explain_predicate
from rewriter.plan import FakeQuantizePoint, NodeDecision, QuantPlan
from rewriter.spec.model import HardwareSpec, OpSpec, OpVariant, QuantizerConfig

AttemptStatus = Literal["matched", "no match", "shadowed"]

# A failure names at most this many rejected candidates; the rest are counted.
_MAX_LISTED = 4


@dataclass(frozen=True)
class CaptureAttempt:
    """The node bound to one capture of a rule's pattern, and what came of it.

    ``captures`` (capture -> node name) is the match for "matched", the unused
    embedding for "shadowed"; ``dropped`` names the optional captures absent
    from it. ``reason`` says why not, for "no match" and "shadowed".
    """

    capture: str
    status: AttemptStatus
    reason: str = ""
    captures: tuple[tuple[str, str], ...] = ()
    dropped: tuple[str, ...] = ()
    other_matches: int = 0
    acts_on_node: bool = False


@dataclass(frozen=True)
class RuleAttempt:
    """One rule's answer for the node; ``attempts`` is empty when no capture admits its op type."""

    rule: str
    loc: SourceLoc
    pattern: str
    actions: tuple[ast.Action, ...]
    attempts: tuple[CaptureAttempt, ...]
    refusing_captures: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def tried(self) -> bool:
        return bool(self.attempts)

    @property
    def matched(self) -> bool:
        return any(a.status == "matched" for a in self.attempts)


@dataclass(frozen=True)
class SpecAnswer:
    """The spec entry that gave (or refused) the node's configs.

    ``variant`` is the first variant whose ``when`` held (None: the op's own
    lists apply); ``refused_variants`` are the variants tried before it, each
    with the part of its ``when`` that was false.
    """

    target: str
    op_type: str
    entry: OpSpec | None
    variant: OpVariant | None = None
    refused_variants: tuple[tuple[OpVariant, str], ...] = ()
    activations: tuple[QuantizerConfig, ...] = ()
    weights: tuple[QuantizerConfig, ...] = ()
    outputs: tuple[QuantizerConfig, ...] = ()


@dataclass(frozen=True)
class NodeExplanation:
    """Everything `audit --why` says about one node."""

    node: str
    op_type: str
    decision: NodeDecision
    spec: SpecAnswer
    rules: tuple[RuleAttempt, ...]
    points: tuple[FakeQuantizePoint, ...]


def explain_nodes(graph: GraphView, spec: HardwareSpec, rules: ast.RuleSet, plan: QuantPlan,
                  names: Sequence[str]) -> tuple[NodeExplanation, ...]:
    """Explain each named node of ``graph`` (the graph ``plan`` was built from).

    Raises:
        UserError: a name is not a node of the graph (with the closest names).
    """
    for name in names:
        if name not in graph.by_name:
            raise UserError(_unknown_node(name, graph))
    explainer = _Explainer(graph, spec, rules)
    return tuple(explainer.explain(graph.nodes[graph.by_name[name]], plan) for name in names)


def _unknown_node(name: str, graph: GraphView) -> str:
    near = difflib.get_close_matches(name, list(graph.by_name), n=3)
    # A prefix ("conv" for "conv_trunk") is the usual slip and scores low on similarity.
    near += [n.name for n in graph.nodes if name.lower() in n.name.lower() and n.name not in near][:3 - len(near)]
    if near:
        return f"the model has no node named {name!r}; did you mean {', '.join(near)}?"
    shown = ", ".join(n.name for n in graph.nodes[:8]) + (", ..." if len(graph.nodes) > 8 else "")
    return (f"the model has no node named {name!r}; its {len(graph.nodes)} nodes "
            f"(named as `rewriter audit` lists them) are {shown}")


class _Explainer:
    def __init__(self, graph: GraphView, spec: HardwareSpec, rules: ast.RuleSet) -> None:
        self.graph = graph
        self.spec = spec
        self.rules = rules
        self._matchers: dict[str, PatternMatcher] = {}
        self._found: dict[str, list[Match]] = {}
        self._attempts: dict[tuple[str, str, int], CaptureAttempt] = {}

    def explain(self, node: NodeInfo, plan: QuantPlan) -> NodeExplanation:
        decision = plan.node(node.name) or NodeDecision(node.name, node.op_type, "float", "not in the plan")
        points = tuple(p for p in plan.points
                       if any(c.node == node.name for c in p.consumers) or p.tensor in node.outputs)
        rules = tuple(self._rule(rule, node) for rule in self.rules.rules
                      if self.rules.pattern(rule.pattern) is not None)
        return NodeExplanation(node.name, node.op_type, decision, spec_answer(self.spec, self.graph, node),
                               rules, points)

    # -- rules ----------------------------------------------------------------

    def _matcher(self, pattern: ast.Pattern) -> PatternMatcher:
        if pattern.name not in self._matchers:
            self._matchers[pattern.name] = PatternMatcher(pattern, self.spec)
        return self._matchers[pattern.name]

    def _matches(self, pattern: ast.Pattern) -> list[Match]:
        if pattern.name not in self._found:
            self._found[pattern.name] = self._matcher(pattern).find(self.graph)
        return self._found[pattern.name]

    def _rule(self, rule: ast.Rule, node: NodeInfo) -> RuleAttempt:
        pattern = self.rules.pattern(rule.pattern)
        assert pattern is not None  # the caller keeps only rules whose pattern exists
        matcher = self._matcher(pattern)
        attempts: list[CaptureAttempt] = []
        refusing: list[tuple[str, tuple[str, ...]]] = []
        for pnode in pattern.nodes:
            allowed = matcher.allowed_ops(pnode)
            if allowed is not None and node.op_type not in allowed:
                refusing.append((pnode.name, pnode.ops))
                continue
            key = (pattern.name, pnode.name, node.index)
            if key not in self._attempts:
                self._attempts[key] = self._attempt(pattern, pnode, node)
            attempt = self._attempts[key]
            if attempt.status == "matched" and _acts_on(rule, pnode.name):
                attempt = _with_acts(attempt)
            attempts.append(attempt)
        return RuleAttempt(rule.name, rule.loc, rule.pattern, rule.actions, tuple(attempts), tuple(refusing))

    def _attempt(self, pattern: ast.Pattern, pnode: ast.PatternNode, node: NodeInfo) -> CaptureAttempt:
        capture = pnode.name
        found = [m for m in self._matches(pattern) if m.node(capture) == node.index]
        if found:
            return CaptureAttempt(capture, "matched", captures=self._named(pattern, found[0].captures),
                                  dropped=_dropped(pattern, found[0].captures), other_matches=len(found) - 1)
        refusal = explain_predicate(pnode.where, self.graph, node)
        if refusal is not None:
            return CaptureAttempt(capture, "no match", reason=f"{node.name}: {refusal}")
        matcher = self._matcher(pattern)
        deepest: _Failure | None = None
        for variant in matcher.variants:
            if all(n.name != capture for n in variant.nodes):
                continue
            grown = _Growth(matcher, self.graph, variant, capture, node.index).run()
            if isinstance(grown, dict):
                return self._shadowed(pattern, matcher, capture, grown)
            absent = _dropped(pattern, {n.name for n in variant.nodes})
            if absent:
                grown = _Failure(grown.depth, f"{grown.reason} (without optional {', '.join(absent)})")
            if deepest is None or grown.depth > deepest.depth:
                deepest = grown
        reason = deepest.reason if deepest is not None else f"no form of pattern {pattern.name} has `{capture}`"
        return CaptureAttempt(capture, "no match", reason=reason)

    def _shadowed(self, pattern: ast.Pattern, matcher: PatternMatcher, capture: str,
                  embedding: dict[str, int]) -> CaptureAttempt:
        anchor = matcher.anchor(self.graph).name
        at_anchor = embedding[anchor]
        winner = next((m for m in self._matches(pattern) if m.node(anchor) == at_anchor), None)
        won = (f" ({_captures_text(self._named(pattern, winner.captures))})" if winner is not None else "")
        reason = (f"the pattern embeds here, but at its anchor `{anchor}`={self.graph.nodes[at_anchor].name} "
                  f"a longer form matched first{won}; the longest match wins")
        return CaptureAttempt(capture, "shadowed", reason=reason, captures=self._named(pattern, embedding),
                              dropped=_dropped(pattern, embedding))

    def _named(self, pattern: ast.Pattern, captures: Mapping[str, int]) -> tuple[tuple[str, str], ...]:
        """Capture -> node name, in the pattern's declaration order (not the order growth bound them)."""
        return tuple((n.name, self.graph.nodes[captures[n.name]].name) for n in pattern.nodes if n.name in captures)


def _dropped(pattern: ast.Pattern, present: Collection[str]) -> tuple[str, ...]:
    """The pattern's captures missing from ``present`` (absent optional nodes)."""
    return tuple(n.name for n in pattern.nodes if n.name not in present)


def _captures_text(captures: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{cap}={name}" for cap, name in captures)


def _acts_on(rule: ast.Rule, capture: str) -> bool:
    """Does one of the rule's actions name ``capture`` (a bare ``ignore`` names every capture)?"""
    for action in rule.actions:
        if isinstance(action, ast.Ignore):
            if not action.captures or capture in action.captures:
                return True
        elif isinstance(action, (ast.Propagate, ast.Int32Bias)):
            if capture in action.captures:
                return True
        elif isinstance(action, ast.Requantize):
            if action.outputs.capture == capture:
                return True
        elif isinstance(action, ast.Unify):
            if any(g.capture == capture for g in action.groups):
                return True
        else:
            for target in action.targets:
                names = (target.src, target.dst) if isinstance(target, ast.EdgeRef) else (target.capture,)
                if capture in names:
                    return True
    return False


def _with_acts(attempt: CaptureAttempt) -> CaptureAttempt:
    return CaptureAttempt(attempt.capture, attempt.status, attempt.reason, attempt.captures, attempt.dropped,
                          attempt.other_matches, acts_on_node=True)


# -- growing a pattern from the node, remembering where it stopped ---------------


@dataclass(frozen=True)
class _Failure:
    depth: int  # pattern nodes bound when growth stopped: deeper is the nearer miss
    reason: str


class _Growth:
    """Depth-first growth of one variant from one bound capture, like ``PatternMatcher._extend``."""

    def __init__(self, matcher: PatternMatcher, graph: GraphView, variant: Variant, capture: str,
                 index: int) -> None:
        self.matcher = matcher
        self.graph = graph
        self.variant = variant
        self.order = grow_order(variant, capture)
        self.pnodes = {n.name: n for n in variant.nodes}
        self.bound = {capture: index}
        self.deepest: _Failure | None = None

    def run(self) -> dict[str, int] | _Failure:
        """A full embedding, or the deepest failure met on the way."""
        embedding = self._extend(1)
        if embedding is not None:
            return embedding
        assert self.deepest is not None  # every dead end records why
        return self.deepest

    def _fail(self, reason: str) -> None:
        depth = len(self.bound)
        if self.deepest is None or depth > self.deepest.depth:
            self.deepest = _Failure(depth, reason)

    def _extend(self, step: int) -> dict[str, int] | None:
        if step == len(self.order):
            return dict(self.bound)
        name, via = self.order[step]
        pnode = self.pnodes[name]
        head = f"capture `{name}` ({' | '.join(pnode.ops)})"
        candidates = neighbours(self.graph, via, self.bound, name)
        if not candidates:
            self._fail(f"{head}: {self._no_neighbour(via, name)}")
            return None
        rejected = []
        for cand in candidates:
            refusal = self._refusal(pnode, cand)
            if refusal is None:
                self.bound[name] = cand
                refusal = self._broken_edge(name)
                if refusal is None:
                    embedding = self._extend(step + 1)
                    if embedding is not None:
                        return embedding
                del self.bound[name]
            if refusal is not None:
                rejected.append(refusal)
        if rejected:
            listed = "; ".join(rejected[:_MAX_LISTED])
            more = f"; and {len(rejected) - _MAX_LISTED} more" if len(rejected) > _MAX_LISTED else ""
            self._fail(f"{head}: no {self._relation(via, name)} fits: {listed}{more}")
        return None

    def _relation(self, via: ast.PatternEdge, name: str) -> str:
        if via.dst == name:
            return f"consumer of {self.graph.nodes[self.bound[via.src]].name}"
        return f"producer of {self.graph.nodes[self.bound[via.dst]].name}'s inputs"

    def _refusal(self, pnode: ast.PatternNode, index: int) -> str | None:
        node = self.graph.nodes[index]
        taken = next((cap for cap, i in self.bound.items() if i == index), None)
        if taken is not None:
            return f"{node.name} is already captured as `{taken}`"
        allowed = self.matcher.allowed_ops(pnode)
        if allowed is not None and node.op_type not in allowed:
            return f"{node.name} is {node.op_type}"
        why = explain_predicate(pnode.where, self.graph, node)
        return None if why is None else f"{node.name} ({node.op_type}): {why}"

    def _broken_edge(self, name: str) -> str | None:
        """The first other pattern edge between ``name`` and a bound node that the graph lacks."""
        for edge in self.variant.edges:
            if name not in (edge.src, edge.dst) or edge.src not in self.bound or edge.dst not in self.bound:
                continue
            src, dst = self.graph.nodes[self.bound[edge.src]], self.graph.nodes[self.bound[edge.dst]]
            if not edge_holds(self.graph, src, dst, edge.src_port, edge.dst_port, moves=edge.moves):
                return (f"{self.graph.nodes[self.bound[name]].name}: edge {edge_text(edge)} does not hold "
                        f"({src.name}{_out(edge.src_port)} does not feed {dst.name}{_in(edge.dst_port)})")
        return None

    def _no_neighbour(self, via: ast.PatternEdge, name: str) -> str:
        edge = f"edge {edge_text(via)}"
        if via.dst == name:
            src = self.graph.nodes[self.bound[via.src]]
            tail = f" at input {via.dst_port}" if via.dst_port is not None else ""
            return f"nothing reads {src.name}{_out(via.src_port)}{tail} ({edge})"
        dst = self.graph.nodes[self.bound[via.dst]]
        if via.dst_port is None:
            return f"no input of {dst.name} comes from a node{_out_of(via.src_port)} ({edge})"
        port = via.dst_port
        tensor = dst.inputs[port] if port < len(dst.inputs) else ""
        if not tensor:
            return f"{dst.name} has no input {port} ({edge})"
        producer = self.graph.producer.get(tensor)
        if producer is None:
            kind = "a constant" if self.graph.is_constant(tensor) else (
                "a graph input" if self.graph.tensor(tensor).is_graph_input else "not produced by a node")
            return f"input {port} of {dst.name} ({tensor}) is {kind} ({edge})"
        return (f"input {port} of {dst.name} is output {producer[1]} of {self.graph.nodes[producer[0]].name}, "
                f"not output {via.src_port} ({edge})")


def edge_text(edge: ast.PatternEdge) -> str:
    """A pattern edge in rule-file syntax: ``a.out[0] -> b.in[1]`` (``~>`` through data movement)."""
    src = edge.src if edge.src_port is None else f"{edge.src}.out[{edge.src_port}]"
    dst = edge.dst if edge.dst_port is None else f"{edge.dst}.in[{edge.dst_port}]"
    return f"{src} {'~>' if edge.moves else '->'} {dst}"


def _out(port: int | None) -> str:
    return "" if port is None else f" output {port}"


def _out_of(port: int | None) -> str:
    return "" if port is None else f" as its output {port}"


def _in(port: int | None) -> str:
    return "" if port is None else f" at input {port}"


# -- the spec's answer ------------------------------------------------------------


def spec_answer(spec: HardwareSpec, graph: GraphView, node: NodeInfo) -> SpecAnswer:
    """Which spec entry (and variant) gives the node's configs, as the planner chooses them."""
    entry = spec.op(node.op_type)
    if entry is None:
        return SpecAnswer(spec.name, node.op_type, None)
    refused: list[tuple[OpVariant, str]] = []
    for variant in entry.variants:
        why = explain_predicate(variant.when_ast, graph, node)
        if why is None:
            return SpecAnswer(spec.name, node.op_type, entry, variant, tuple(refused),
                              variant.activations, variant.weights, variant.outputs)
        refused.append((variant, why))
    return SpecAnswer(spec.name, node.op_type, entry, None, tuple(refused),
                      entry.activations, entry.weights, entry.outputs)


__all__ = ["explain_nodes", "spec_answer", "edge_text", "NodeExplanation", "RuleAttempt", "CaptureAttempt",
           "SpecAnswer"]
