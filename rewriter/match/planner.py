"""Graph + hardware spec + rules -> QuantPlan.

The rules are applied in fixed phases, whatever their order in the files:

1. ignore     - captured nodes stay float (an ignored node gets no FakeQuantize
                on its inputs and none can move through it);
2. insert     - FakeQuantize on the named ports, with the configs the spec
                allows there (none where the spec allows none);
3. remove     - FakeQuantize taken off the named edges;
4. propagate  - FakeQuantize on an agnostic op's output moves onto its
                pass-through inputs, bottom-up, when every consumer reads it
                quantized;
5. symmetric  - forces symmetric mode on the named FakeQuantizes;
   asymmetric - prefers asymmetric mode there where the spec allows it;
   per_tensor - one scale and zero point there (a runtime kernel's requirement);
6. unify      - groups of FakeQuantizes share one scale;
7. requantize, int32_bias - how the QDQ output keeps integer kernels fed
                (rewriter.match.integer_chain), decided from the frozen FakeQuantizes.

Within a phase, rules run in file order; matches are computed once on the
normalized graph, so one rule's match never hides another's. The working
state below is private and mutable; what leaves this module is frozen.
"""
from __future__ import annotations

import difflib
import gc
from dataclasses import dataclass, field, replace
from typing import Iterable, TypeVar

from rewriter.dsl import ast
from rewriter.errors import SourceLoc, UserError, UserErrors
from rewriter.ir.graph import GraphView, NodeInfo
from rewriter.ir.ops import closest_op_type, known_op_types
from rewriter.match.axes import activation_channel_axis, weight_channel_axis
from rewriter.match.config_choice import (choose_config, intersect_configs, override_config, per_tensor_configs,
                                          relax_configs, share_group_configs)
from rewriter.match.integer_chain import BiasRequest, RequantizeRequest, plan_integer_chain
from rewriter.match.matcher import Match, PatternMatcher, edge_holds
from rewriter.match.node_records import NodeQuantizers, NodeRecorder
from rewriter.match.predicates import holds
from rewriter.plan import Consumer, Decision, FakeQuantizePoint, IntegerBias, QuantPlan, Requantization
from rewriter.spec.model import PRESETS, HardwareSpec, OpSpec, OpVariant, QuantizerConfig
from rewriter.spec.reader import OPENVINO_OP_NAMES


# A rule action class (ast.Ignore, ast.Insert, ...): what _rule_matches yields for the kind asked.
_Action = TypeVar("_Action")


@dataclass(frozen=True)
class IgnoredOperation:
    """An op type kept in float, optionally only when its attributes equal the given values."""

    op_type: str
    attributes: tuple[tuple[str, object], ...] = ()
    # Where a config file's ignored.operations wrote it (None: the command line or the API); names the trail.
    loc: SourceLoc | None = field(default=None, compare=False)


@dataclass(frozen=True)
class RevertRequest:
    """A node a measured search returned to float (the fidelity guard, an accuracy-driven search).

    ``by`` names the search (the decision's source); ``detail`` says what was measured. The node is kept
    float like an ignored one, and its record says "reverted" with this decision in its trail.
    """

    node: str
    by: str
    detail: str = ""


@dataclass(frozen=True)
class PlanOptions:
    preset: str = "performance"
    ignore_scope: tuple[str, ...] = ()
    ignore_ops: tuple[IgnoredOperation, ...] = ()
    # (node, pass): nodes a numeric pass inserted that must stay float (activation smoothing's Mul).
    pass_nodes: tuple[tuple[str, str], ...] = ()
    # A configuration file's weights/activations sections: an object with .apply(config, role) -> config
    # and .is_empty(), applied to every FakeQuantize before the integer-chain phase reads the configs.
    quantizer_overrides: object = None
    reverted: tuple[RevertRequest, ...] = ()
    # Where a config file's ignored.scope wrote a name of ignore_scope (the others came from the command line).
    ignore_scope_sources: tuple[tuple[str, SourceLoc], ...] = ()

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise UserError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")


@dataclass(slots=True)
class _Point:
    """A FakeQuantize being planned (mutable while the phases run)."""

    tensor: str
    role: str
    consumers: dict[tuple[int, int], tuple[QuantizerConfig, ...]] = field(default_factory=dict)
    output_configs: tuple[QuantizerConfig, ...] = ()
    trail: list[Decision] = field(default_factory=list)
    symmetric: bool = False
    asymmetric: bool = False
    per_tensor: bool = False


@dataclass(frozen=True)
class _Configs:
    activations: tuple[QuantizerConfig, ...]
    weights: tuple[QuantizerConfig, ...]
    outputs: tuple[QuantizerConfig, ...]
    entry: OpSpec
    variant: str = ""


def build_plan(graph: GraphView, spec: HardwareSpec, rules: ast.RuleSet,
               options: PlanOptions = PlanOptions(), model_name: str = "") -> QuantPlan:
    """Apply ``rules`` for ``spec`` to ``graph`` and return the frozen plan."""
    # Planning allocates many small long-lived objects; the cyclic collector
    # would rescan them all repeatedly (superlinear on 100k-node graphs) and
    # there are no reference cycles to find here.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _Planner(graph, spec, rules, options).run(model_name or graph.name)
    finally:
        if was_enabled:
            gc.enable()


class _Planner:
    def __init__(self, graph: GraphView, spec: HardwareSpec, rules: ast.RuleSet,
                 options: PlanOptions) -> None:
        self.graph = graph
        self.spec = spec
        self.rules = rules
        self.options = options
        self.ignored: dict[int, list[Decision]] = {}
        self.points: dict[str, _Point] = {}
        self.node_trail: dict[int, list[Decision]] = {}
        self.unify_parent: dict[str, str] = {}
        self._match_text: dict[int, str] = {}
        # Decisions that depend only on the spec entry or the config, one object each: a large graph repeats
        # them on tens of thousands of points, and trails that share objects are cheaper to compare and to
        # write (the JSON's decision table looks them up by identity first).
        self._spec_decisions: dict[tuple[str, str], Decision] = {}
        self._config_decisions: dict[int, tuple[QuantizerConfig, Decision]] = {}
        # Config choices by the identity of the lists chosen from (kept alive in the value) and the flags.
        self._choices: dict[tuple, tuple] = {}
        self._fallbacks: dict[int, tuple[QuantizerConfig, QuantizerConfig, Decision]] = {}
        # The configs the quantize_inputs and quantize_outputs rules both ask for every node (_configs): by op
        # type where the type has no variants, else by node (which variant holds depends on the node).
        self._op_configs: dict[str, _Configs | None] = {}
        self._node_configs: dict[int, _Configs] = {}
        self._config_sets: dict[tuple[int, int], _Configs] = {}
        self.matches = self._match_all()

    # -- matching ---------------------------------------------------------

    def _match_all(self) -> dict[str, list[Match]]:
        matchers = {p.name: PatternMatcher(p, self.spec) for p in self.rules.patterns}
        used = {r.pattern for r in self.rules.rules}
        return {name: matchers[name].find(self.graph) for name in sorted(used) if name in matchers}

    def _rule_matches(self, kind: type[_Action]) -> Iterable[tuple[ast.Rule, _Action, Match]]:
        for rule in self.rules.rules:
            for action in rule.actions:
                if isinstance(action, kind):
                    for match in self.matches.get(rule.pattern, ()):
                        yield rule, action, match

    def _decision(self, action: str, rule: ast.Rule, match: Match, detail: str = "") -> Decision:
        text = self._match_text.get(id(match))
        if text is None:
            nodes = self.graph.nodes
            if len(match.nodes) == 1:  # most matches: one-node patterns such as { op : @quantizable }
                anchor = f"{match.names[0]}={nodes[match.nodes[0]].name}"
            else:
                anchor = ", ".join(f"{cap}={nodes[i].name}" for cap, i in zip(match.names, match.nodes))
            text = self._match_text[id(match)] = f"pattern {rule.pattern}: {anchor}"
        return Decision(action, rule.name, rule.loc, f"{text}; {detail}" if detail else text)

    def _note(self, node: int, decision: Decision) -> None:
        self.node_trail.setdefault(node, []).append(decision)

    # -- phases -------------------------------------------------------------

    def run(self, model_name: str) -> QuantPlan:
        self._ignore_cli()
        for rule, ignore, match in self._rule_matches(ast.Ignore):
            self._ignore(rule, ignore, match)
        for rule, insert, match in self._rule_matches(ast.Insert):
            for target in insert.targets:
                self._insert(rule, match, target)
        for rule, remove, match in self._rule_matches(ast.Remove):
            for edge_or_port in remove.targets:
                self._remove(rule, match, edge_or_port)
        self._propagate()
        for rule, symmetric, match in self._rule_matches(ast.Symmetric):
            for target in symmetric.targets:
                for point in self._points_at(match, target):
                    point.symmetric = True
                    point.trail.append(self._decision("symmetric", rule, match))
        for rule, asymmetric, match in self._rule_matches(ast.Asymmetric):
            for target in asymmetric.targets:
                for point in self._points_at(match, target):
                    point.asymmetric = True
                    point.trail.append(self._decision("asymmetric", rule, match))
        for rule, per_tensor, match in self._rule_matches(ast.PerTensor):
            for target in per_tensor.targets:
                for point in self._points_at(match, target):
                    # Activations only: integer kernels take per-channel weights. And only where the spec's
                    # configs allow a per-channel choice, so the rule is in the trail where it changed something.
                    if point.role == "activation" and _allows_per_channel(point):
                        point.per_tensor = True
                        point.trail.append(self._decision("per_tensor", rule, match))
        for rule, unify, match in self._rule_matches(ast.Unify):
            for group in unify.groups:
                self._unify(rule, match, group)
        return self._freeze(model_name)

    def _chain_requests(self) -> tuple[list[RequantizeRequest], list[BiasRequest]]:
        requantize_requests: list[RequantizeRequest] = []
        bias_requests: list[BiasRequest] = []
        for rule, requantize, match in self._rule_matches(ast.Requantize):
            index = match.node(requantize.outputs.capture)
            if index is not None:
                requantize_requests.append(RequantizeRequest(index, requantize,
                                                             self._decision("requantize", rule, match)))
        for rule, int32_bias, match in self._rule_matches(ast.Int32Bias):
            for cap in int32_bias.captures:
                index = match.node(cap)
                if index is not None:
                    bias_requests.append(BiasRequest(index, self._decision("int32_bias", rule, match)))
        return requantize_requests, bias_requests

    def _ignore_cli(self) -> None:
        known = self.graph.by_name
        written = dict(self.options.ignore_scope_sources)
        unknown = []
        for name in self.options.ignore_scope:
            loc = written.get(name)
            if name not in known:
                near = difflib.get_close_matches(name, list(known), n=3)
                hint = f"; did you mean {', '.join(near)}?" if near else ""
                what = "ignored.scope" if loc else "--ignore-scope"
                unknown.append(UserError(f"{what} names node {name!r}, which the model does not have{hint}", loc))
                continue
            self.ignored.setdefault(known[name], []).append(
                Decision("ignore", "config" if loc else "cli", loc or SourceLoc("--ignore-scope"), f"node {name}"))
        if unknown:  # every unknown name at once, each where it was written
            raise unknown[0] if len(unknown) == 1 else UserErrors(unknown)
        for name, made_by in self.options.pass_nodes:
            self.ignored.setdefault(known[name], []).append(
                Decision("ignore", made_by, SourceLoc("<pass>"), f"node {name} inserted by {made_by}"))
        for revert in self.options.reverted:
            if revert.node not in known:
                raise ValueError(f"a revert names node {revert.node!r}, which the graph does not have")
            self.ignored.setdefault(known[revert.node], []).append(
                Decision("revert", revert.by, SourceLoc(f"<{revert.by}>"), revert.detail))
        for ignored in self.options.ignore_ops:
            if ignored.op_type not in self.graph.by_op and ignored.op_type not in known_op_types():
                # A misspelt type would keep nothing float, silently; a custom op the model has is fine.
                close = OPENVINO_OP_NAMES.get(ignored.op_type) or closest_op_type(ignored.op_type)
                hint = f"; did you mean {close!r}?" if close else ""
                raise UserError(f"--ignore-op names op type {ignored.op_type!r}, which neither ONNX nor the "
                                f"model has{hint}")
            for i in self.graph.by_op.get(ignored.op_type, ()):
                attrs = self.graph.nodes[i].attrs
                if all(attrs.get(k) == v for k, v in ignored.attributes):
                    self.ignored.setdefault(i, []).append(
                        Decision("ignore", "config" if ignored.loc else "cli", ignored.loc or SourceLoc("--ignore-op"),
                                 f"op type {ignored.op_type}"))

    def _ignore(self, rule: ast.Rule, action: ast.Ignore, match: Match) -> None:
        names = action.captures or match.names
        for cap in names:
            index = match.node(cap)
            if index is not None:
                self.ignored.setdefault(index, []).append(self._decision("ignore", rule, match, f"{cap} kept float"))

    def _insert(self, rule: ast.Rule, match: Match, target: ast.PortRef) -> None:
        index = match.node(target.capture)
        if index is None:
            return
        node = self.graph.nodes[index]
        configs = self._configs(node)
        if configs is None:
            return
        if index in self.ignored:
            wanted = configs.outputs if target.direction == "outputs" else configs.activations or configs.weights
            if wanted:
                self._note(index, self._decision("skip-insert", rule, match,
                                                 f"ignored by {self.ignored[index][0].source}"))
            return
        if target.direction == "outputs":
            self._insert_outputs(rule, match, node, target, configs)
        else:
            self._insert_inputs(rule, match, node, target, configs)

    def _insert_inputs(self, rule: ast.Rule, match: Match, node: NodeInfo, target: ast.PortRef,
                       configs: _Configs) -> None:
        ports = target.ports if target.ports is not None else (
            configs.entry.ports if configs.entry.ports is not None else range(len(node.inputs)))
        for port in ports:
            tensor = node.inputs[port] if port < len(node.inputs) else ""
            if not tensor:
                continue
            info = self.graph.tensors.get(tensor)  # one lookup for both questions below
            constant = info is not None and info.is_constant
            allowed = configs.weights if constant else configs.activations
            if not allowed:
                continue
            dtype = info.dtype if info is not None else None
            if dtype is not None and not dtype.startswith(("float", "bfloat")):
                self._note(node.index, self._decision("skip-insert", rule, match,
                                                      f"input {port} is {dtype}, not float"))
                continue
            point = self.points.get(tensor)
            if point is None:
                point = self.points[tensor] = _Point(tensor, "weight" if constant else "activation")
            if (node.index, port) not in point.consumers:
                point.consumers[(node.index, port)] = allowed
            point.trail.append(self._decision("insert", rule, match, f"{node.name} input {port}"))
            self._add_spec_decision(point, node, configs)

    def _insert_outputs(self, rule: ast.Rule, match: Match, node: NodeInfo, target: ast.PortRef,
                        configs: _Configs) -> None:
        if not configs.outputs:
            return
        ports = target.ports if target.ports is not None else range(len(node.outputs))
        for port in ports:
            tensor = node.outputs[port] if port < len(node.outputs) else ""
            if not tensor:
                continue
            point = self.points.get(tensor)
            if point is None:
                point = self.points[tensor] = _Point(tensor, "activation")
            point.output_configs = configs.outputs
            point.trail.append(self._decision("insert", rule, match, f"{node.name} output {port}"))
            self._add_spec_decision(point, node, configs)

    def _add_spec_decision(self, point: _Point, node: NodeInfo, configs: _Configs) -> None:
        decision = self._spec_decisions.get((node.op_type, configs.variant))
        if decision is None:
            variant = f" variant {configs.variant}" if configs.variant else ""
            decision = self._spec_decisions[(node.op_type, configs.variant)] = Decision(
                "spec", f"{self.spec.name}:{node.op_type}{variant}", configs.entry.loc)
        if decision not in point.trail:
            point.trail.append(decision)

    def _remove(self, rule: ast.Rule, match: Match, target: ast.PortRef | ast.EdgeRef) -> None:
        if isinstance(target, ast.EdgeRef):
            src, dst = match.node(target.src), match.node(target.dst)
            if src is None or dst is None:
                return
            outs = set(self.graph.nodes[src].outputs)
            node = self.graph.nodes[dst]
            ports = [p for p, t in enumerate(node.inputs) if t and t in outs]
        else:
            index = match.node(target.capture)
            if index is None:
                return
            node = self.graph.nodes[index]
            if target.direction == "outputs":
                for port in target.ports if target.ports is not None else range(len(node.outputs)):
                    point = self.points.get(node.outputs[port]) if port < len(node.outputs) else None
                    if point and point.output_configs:
                        point.output_configs = ()
                        point.trail.append(self._decision("remove", rule, match, f"{node.name} output {port}"))
                return
            ports = list(target.ports) if target.ports is not None else list(range(len(node.inputs)))
        for port in ports:
            tensor = node.inputs[port] if port < len(node.inputs) else ""
            point = self.points.get(tensor)
            if point and point.consumers.pop((node.index, port), None) is not None:
                decision = self._decision("remove", rule, match, f"{node.name} input {port}")
                point.trail.append(decision)
                self._note(node.index, decision)

    def _propagate(self) -> None:
        rules_for: dict[int, tuple[ast.Rule, Match]] = {}
        for rule, action, match in self._rule_matches(ast.Propagate):
            for cap in action.captures:
                index = match.node(cap)
                if index is not None:
                    rules_for.setdefault(index, (rule, match))
        for index in sorted(rules_for, reverse=True):
            node = self.graph.nodes[index]
            entry = self.spec.op(node.op_type)
            if index in self.ignored or entry is None or not entry.agnostic:
                continue
            rule, match = rules_for[index]
            self._move_up(node, entry, rule, match)

    def _move_up(self, node: NodeInfo, entry: OpSpec, rule: ast.Rule, match: Match) -> None:
        found = [self.points.get(t) for t in node.outputs if t]
        below = [p for p in found if p is not None]
        if not below or len(below) != len(found) or not all(self._covers_all(p) for p in below):
            return
        ports = self._pass_through_ports(node, entry)
        if not ports:
            return
        allowed = intersect_configs([_candidates(p) for p in below])
        trail = [d for p in below for d in p.trail]
        decision = self._decision("propagate", rule, match, f"up through {node.name} ({node.op_type})")
        for port in ports:
            tensor = node.inputs[port]
            point = self.points.setdefault(tensor, _Point(tensor, "activation"))
            point.consumers[(node.index, port)] = allowed
            point.trail.extend(d for d in trail if d not in point.trail)
            point.trail.append(decision)
            point.symmetric = point.symmetric or any(p.symmetric for p in below)
            point.asymmetric = point.asymmetric or any(p.asymmetric for p in below)
        for p in below:
            del self.points[p.tensor]
        self._note(node.index, decision)

    def _covers_all(self, point: _Point) -> bool:
        if point.output_configs or self.graph.tensor(point.tensor).is_graph_output:
            return False
        readers = set(self.graph.consumers.get(point.tensor, ()))
        return bool(readers) and readers == set(point.consumers)

    def _pass_through_ports(self, node: NodeInfo, entry: OpSpec) -> list[int]:
        present = [p for p, t in enumerate(node.inputs) if t]
        if entry.pass_through == "first":
            ports = present[:1]
        elif entry.pass_through == "non_const":
            ports = [p for p in present if not self.graph.is_constant(node.inputs[p])]
        else:
            ports = present
        # Moving onto a constant or an integer input would leave the output off the grid.
        for p in ports:
            info = self.graph.tensor(node.inputs[p])
            if info.is_constant or (info.dtype is not None and not info.dtype.startswith(("float", "bfloat"))):
                return []
        return ports

    def _points_at(self, match: Match, target: ast.PortRef) -> list[_Point]:
        index = match.node(target.capture)
        if index is None:
            return []
        node = self.graph.nodes[index]
        if target.direction == "outputs":
            names = [node.outputs[p] for p in (target.ports or range(len(node.outputs))) if p < len(node.outputs)]
            return [self.points[t] for t in names if t in self.points]
        ports = target.ports if target.ports is not None else range(len(node.inputs))
        found = [self._serving_point(index, p) for p in ports if p < len(node.inputs)]
        return [p for p in found if p is not None]

    def _serving_point(self, index: int, port: int) -> _Point | None:
        """The FakeQuantize whose value reaches (node, port), looking up through agnostic ops."""
        tensor = self.graph.nodes[index].inputs[port]
        point = self.points.get(tensor)
        if point is not None and (index, port) in point.consumers:
            return point
        above = self._agnostic_writer(tensor)
        if above is None:
            return None
        producer, entry = above
        for p in self._pass_through_ports(producer, entry)[:1]:
            return self._serving_point(producer.index, p)
        return None

    def _agnostic_writer(self, tensor: str) -> tuple[NodeInfo, OpSpec] | None:
        """The node writing ``tensor`` and its spec entry, when it is an agnostic op the rules did not ignore
        (the only kind a FakeQuantize placed above can pass through); else None."""
        producer = self.graph.producer_of(tensor) if tensor else None
        entry = self.spec.op(producer.op_type) if producer else None
        if producer is None or entry is None or not entry.agnostic or producer.index in self.ignored:
            return None
        return producer, entry

    def _unify(self, rule: ast.Rule, match: Match, group: ast.PortRef) -> None:
        index = match.node(group.capture)
        if index is None or index in self.ignored:
            return
        node = self.graph.nodes[index]
        if group.ports is not None:
            port_groups = [group.ports]
        else:
            entry = self.spec.op(node.op_type)
            spec_groups = entry.unified_scales if entry else None
            if spec_groups is None:
                return
            port_groups = [tuple(range(len(node.inputs)))] if spec_groups == "all" else list(spec_groups)
        for ports in port_groups:
            members = []
            for p in ports:
                point = self._serving_point(index, p) if p < len(node.inputs) and node.inputs[p] else None
                if point is not None and point not in members:
                    members.append(point)
            if len(members) < 2:
                continue
            decision = self._decision("unify", rule, match, f"inputs {list(ports)} of {node.name}")
            for point in members:
                point.trail.append(decision)
                self._union(members[0].tensor, point.tensor)

    def _find(self, tensor: str) -> str:
        while self.unify_parent.get(tensor, tensor) != tensor:
            tensor = self.unify_parent[tensor]
        return tensor

    def _union(self, a: str, b: str) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self.unify_parent[max(ra, rb)] = min(ra, rb)

    # -- spec lookups -------------------------------------------------------

    def _configs(self, node: NodeInfo) -> _Configs | None:
        # Asked of most nodes twice (by the rules that quantize inputs and outputs). An op type without
        # variants has the same configs on every node: found once per op type; the others once per node.
        op_type = node.op_type
        if op_type in self._op_configs:
            return self._op_configs[op_type]
        if node.index in self._node_configs:
            return self._node_configs[node.index]
        entry = self.spec.op(op_type)
        if entry is None or not entry.variants:
            found = self._op_configs[op_type] = None if entry is None else self._config_set(entry, None)
        else:
            found = self._node_configs[node.index] = self._find_configs(node, entry)
        return found

    def _find_configs(self, node: NodeInfo, entry: OpSpec) -> _Configs:
        for variant in entry.variants:
            if holds(variant.when_ast, self.graph, node):
                # The loader fills a variant's unnamed lists from its op, so an
                # empty list here is deliberate: that variant stays float.
                return self._config_set(entry, variant)
        return self._config_set(entry, None)

    def _config_set(self, entry: OpSpec, variant: OpVariant | None) -> _Configs:
        """The configs of a spec entry or one of its variants: one object each, shared by all their nodes."""
        key = (id(entry), id(variant))  # both live as long as the spec the planner holds
        known = self._config_sets.get(key)
        if known is None:
            known = self._config_sets[key] = (
                _Configs(entry.activations, entry.weights, entry.outputs, entry) if variant is None else
                _Configs(variant.activations, variant.weights, variant.outputs, entry, variant.name))
        return known

    # -- freezing -----------------------------------------------------------

    def _freeze(self, model_name: str) -> QuantPlan:
        chain_requests = self._chain_requests()
        # Every rule's matches have been acted on: they go before the points are frozen, not with the
        # planner (at a million nodes they and their decision texts are a few hundred MB of the plan stage's
        # peak). The texts are keyed by the matches' identities, which new objects could take.
        self.matches = {}
        self._match_text = {}
        live = {t: p for t, p in self.points.items() if p.consumers or p.output_configs}
        groups = self._groups(live)
        frozen = share_group_configs([self._freeze_point(point, groups) for point in live.values()])
        frozen = [override_config(p, self.options.quantizer_overrides) for p in frozen]
        # In graph order: by the first node that reads the point (or the one that writes it), from the
        # points' own node indexes (the frozen ones name their consumers; both steps above keep the order).
        producer = self.graph.producer
        positions = [min(index for index, _ in p.consumers) if p.consumers else producer.get(p.tensor, (-1,))[0]
                     for p in live.values()]
        frozen = [p for _, _, p in sorted(zip(positions, (p.tensor for p in frozen), frozen))]
        requantized, biases = plan_integer_chain(self.graph, frozen, *chain_requests, set(self.ignored))
        chain_items: list[Requantization | IntegerBias] = [*requantized, *biases]
        for item in chain_items:
            self._note(self.graph.by_name[item.node], item.trail[0])
        # What the node records read, by node index: lists, not dicts keyed by name, as every node of the graph
        # is looked up in each (at a million nodes a dict lookup is a few cache misses).
        count = len(self.graph.nodes)
        by_name = self.graph.by_name
        read_ports: list[set[int] | None] = [None] * count
        output_points: list[list[str] | None] = [None] * count
        for point in frozen:
            for c in point.consumers:
                index = by_name[c.node]
                ports = read_ports[index]
                if ports is None:
                    read_ports[index] = {c.port}
                else:
                    ports.add(c.port)
            if point.at_output:
                hit = producer.get(point.tensor)
                if hit is not None:
                    outputs = output_points[hit[0]]
                    if outputs is None:
                        output_points[hit[0]] = [point.tensor]
                    else:
                        outputs.append(point.tensor)
        ignored_at, noted_at = _by_index(self.ignored, count), _by_index(self.node_trail, count)
        recorder = NodeRecorder(self.spec, {p.tensor: p for p in frozen})
        nodes = tuple(recorder.record(n, ignored_by, noted, self._quantizers(n, ports, outputs))
                      for n, ignored_by, noted, ports, outputs
                      in zip(self.graph.nodes, ignored_at, noted_at, read_ports, output_points))
        storage = Decision("storage", f"{self.spec.name}:activation_storage", self.spec.activation_storage_loc,
                           f"activations stored {self.spec.activation_storage}")
        return QuantPlan(model=model_name, target=self.spec.name, spec_path=self.spec.path,
                         preset=self.options.preset, rule_files=self.rules.files,
                         points=tuple(frozen), nodes=nodes, requantized=requantized, int32_biases=biases,
                         activation_storage=self.spec.activation_storage, storage_trail=(storage,))

    def _groups(self, live: dict[str, _Point]) -> dict[str, int]:
        """Number the unified groups that have at least two live members, in tensor-name order."""
        by_root: dict[str, list[str]] = {}
        # Only a tensor a unify rule named can share a group: the others are each their own.
        unified = self.unify_parent.keys() | set(self.unify_parent.values())
        for tensor in sorted(t for t in live if t in unified):
            by_root.setdefault(self._find(tensor), []).append(tensor)
        groups = sorted(members for members in by_root.values() if len(members) > 1)
        return {t: k for k, members in enumerate(groups) for t in members}

    def _freeze_point(self, point: _Point, groups: dict[str, int]) -> FakeQuantizePoint:
        lists = [point.consumers[k] for k in sorted(point.consumers)]
        if point.output_configs:
            lists.append(point.output_configs)
        # The choice depends only on the config lists (the spec's own tuples, shared by every point of an op
        # type: keyed by identity) and the point's flags; a large graph asks the same few questions
        # tens of thousands of times.
        key = (*map(id, lists), point.per_tensor, point.role, point.symmetric, point.asymmetric)
        known = self._choices.get(key)
        if known is None:
            known = self._choices[key] = (*self._choose(point, lists), lists)
        candidates, config, notes, _ = known
        trail = [*point.trail, *notes]
        axis = None
        if config.granularity == "perchannel":
            axis = self._channel_axis(point)
            if axis is None:
                config, note = self._per_tensor_fallback(config)
                trail.append(note)
        trail.append(self._config_decision(config))
        consumers = tuple(Consumer(self.graph.nodes[i].name, port) for i, port in sorted(point.consumers))
        return FakeQuantizePoint(
            tensor=point.tensor, role=point.role, config=config, candidates=candidates,  # type: ignore[arg-type]
            consumers=consumers, at_output=bool(point.output_configs), channel_axis=axis,
            unify_group=groups.get(point.tensor), trail=tuple(trail))

    def _choose(self, point: _Point, lists: list[tuple[QuantizerConfig, ...]]) -> tuple[
            tuple[QuantizerConfig, ...], QuantizerConfig, tuple[Decision, ...]]:
        """The candidates and the config for a point reading ``lists``, with the decisions that explain them."""
        notes = []
        candidates = intersect_configs(lists)
        if not candidates:
            candidates = relax_configs(lists)
            notes.append(Decision("config", "planner", detail="consumers allow no common config; relaxed "
                                  "to per-tensor/symmetric"))
        if point.per_tensor:
            candidates = per_tensor_configs(candidates)
        config = choose_config(candidates, point.role, self.options.preset, point.symmetric, point.asymmetric)
        if point.asymmetric and config.mode != "asymmetric":
            why = "a symmetric rule wins" if point.symmetric else "the spec allows no asymmetric config here"
            notes.append(Decision("config", "planner", detail=f"asymmetric preferred, but {why}"))
        return candidates, config, tuple(notes)

    def _per_tensor_fallback(self, config: QuantizerConfig) -> tuple[QuantizerConfig, Decision]:
        """A per-channel config made per-tensor where there is no channel axis (one object per config)."""
        known = self._fallbacks.get(id(config))
        if known is None:
            known = self._fallbacks[id(config)] = (
                config, replace(config, granularity="pertensor"),
                Decision("config", "planner", detail="no channel axis here; per-tensor"))
        return known[1], known[2]

    def _config_decision(self, config: QuantizerConfig) -> Decision:
        # Keyed by identity (hashing a config costs more); the config is kept with its decision, so the id
        # stays its own for the planner's lifetime.
        known = self._config_decisions.get(id(config))
        if known is None:
            known = self._config_decisions[id(config)] = (
                config, Decision("config", f"preset {self.options.preset}", detail=config.describe()))
        return known[1]

    def _channel_axis(self, point: _Point) -> int | None:
        if point.role == "weight":
            index, port = min(point.consumers)
            return weight_channel_axis(self.graph, self.graph.nodes[index], port)
        return activation_channel_axis(self.graph, point.tensor)

    def _quantizers(self, node: NodeInfo, ports: set[int] | None, outputs: list[str] | None) -> NodeQuantizers:
        """Where ``node`` reads or writes quantized values: ``ports`` it reads a FakeQuantize at directly,
        ``outputs`` with one of their own (None: none)."""
        upstream = self._upstream_ports(node, ports or _NO_PORTS)
        if not (ports or outputs or upstream):
            return _NO_QUANTIZERS  # most nodes: one shared record instead of one each
        return NodeQuantizers(sorted(ports or ()), outputs or [], upstream)

    def _upstream_ports(self, node: NodeInfo, direct: set[int] | frozenset[int]) -> dict[int, str]:
        """Inputs that read a FakeQuantize placed above agnostic ops: port -> quantized tensor."""
        entry = self.spec.op(node.op_type)
        if entry is None or entry.agnostic or node.index in self.ignored:
            return {}
        found = {}
        for port, tensor in enumerate(node.inputs):
            # Only a value an agnostic op writes can carry a FakeQuantize from above (a port that reads one
            # placed on the value itself is direct): most inputs are ruled out by their writer alone.
            if (not tensor or port in direct or self._agnostic_writer(tensor) is None
                    or self.graph.is_constant(tensor)):
                continue
            point = self._serving_point(node.index, port)
            if point is not None and point.tensor != tensor:
                found[port] = point.tensor
        return found


_NO_QUANTIZERS = NodeQuantizers((), (), {})
_NO_PORTS: frozenset[int] = frozenset()


def _by_index(trails: dict[int, list[Decision]], count: int) -> list[list[Decision] | tuple[()]]:
    """``trails`` (node index -> decisions) as a list over all ``count`` nodes, empty where it has none."""
    out: list[list[Decision] | tuple[()]] = [()] * count
    for index, decisions in trails.items():
        out[index] = decisions
    return out


def _candidates(point: _Point) -> tuple[QuantizerConfig, ...]:
    lists = [point.consumers[k] for k in sorted(point.consumers)]
    return intersect_configs(lists) or relax_configs(lists)


def _allows_per_channel(point: _Point) -> bool:
    """Does any config its consumers or its producer's output entry allow quantize per channel?"""
    lists = [*point.consumers.values(), point.output_configs]
    return any(c.granularity == "perchannel" for configs in lists for c in configs)


__all__ = ["build_plan", "PlanOptions", "IgnoredOperation", "PRESETS", "edge_holds"]
