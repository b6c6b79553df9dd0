"""Render `audit --why` explanations as text (terminal) or JSON (tools).

JSON schema "rewriter.why/1":
{schema, model, target, preset, nodes[{node, op_type, status, reason, trail[...],
  spec{entry, loc, variant, refused_variants[{name, when, loc, reason}], activations[], weights[], outputs[],
       ports, agnostic},
  rules[{rule, loc, pattern, actions[], tried, matched, attempts[{capture, status, reason, captures{},
         dropped[], other_matches, acts_on_node}], refusing_captures{capture: [ops]}}],
  fakequantize[{tensor, role, config, consumers[{node, port}], at_output}]}]}
Trail entries are the plan's (schema rewriter.plan/1).
"""
from __future__ import annotations

import json
from typing import Sequence

from rewriter.dsl import ast
from rewriter.match.explain import CaptureAttempt, NodeExplanation, RuleAttempt, SpecAnswer
from rewriter.plan import Decision, FakeQuantizePoint, QuantPlan
from rewriter.report.plan_report import decision_dict
from rewriter.sources import display_loc
from rewriter.spec.model import QuantizerConfig

SCHEMA = "rewriter.why/1"


def action_text(action: ast.Action) -> str:
    """An action in rule-file syntax: ``insert op.inputs[0, 1]``, ``remove a -> b``, ``ignore``."""
    if isinstance(action, ast.Ignore):
        return "ignore" + (f" {', '.join(action.captures)}" if action.captures else "")
    if isinstance(action, ast.Propagate):
        return f"propagate {', '.join(action.captures)}"
    if isinstance(action, ast.Int32Bias):
        return f"int32_bias {', '.join(action.captures)}"
    if isinstance(action, ast.Requantize):
        return f"requantize {_target_text(action.outputs)} from {_target_text(action.inputs)}"
    verb = type(action).__name__.lower()
    targets = action.groups if isinstance(action, ast.Unify) else action.targets
    return f"{verb} {', '.join(_target_text(t) for t in targets)}"


def _target_text(target: ast.PortRef | ast.EdgeRef) -> str:
    if isinstance(target, ast.EdgeRef):
        return f"{target.src} -> {target.dst}"
    ports = "" if target.ports is None else f"[{', '.join(map(str, target.ports))}]"
    return f"{target.capture}.{target.direction}{ports}"


def _names(configs: tuple[QuantizerConfig, ...]) -> str:
    """Config names once each, in priority order (a name may expand to several modes)."""
    return "[" + ", ".join(dict.fromkeys(c.name for c in configs)) + "]"


# -- text ---------------------------------------------------------------------------


def why_text(plan: QuantPlan, explanations: Sequence[NodeExplanation]) -> str:
    """Each node: plan status, spec answer, every rule tried on it, the rules that could not apply."""
    blocks = [_node_text(e) for e in explanations]
    return f"why, for {plan.model} on {plan.target} (preset {plan.preset})\n\n" + "\n".join(blocks)


def _node_text(e: NodeExplanation) -> str:
    d = e.decision
    lines = [f"node {e.node} ({e.op_type}): {d.status}: {d.reason}"]
    lines.extend(_spec_lines(e.spec))
    for rule in (r for r in e.rules if r.tried):
        lines.extend(_rule_lines(rule, e.node))
    untried = [r.rule for r in e.rules if not r.tried]
    if untried:
        lines.append(f"  not tried (no capture admits {e.op_type}): {', '.join(untried)}")
    if d.trail:
        lines.append("  plan trail:")
        lines.extend(f"    {_decision_text(x)}" for x in d.trail)
    for point in e.points:
        lines.append(f"  {_point_text(point, e.node)}")
    return "\n".join(lines) + "\n"


def _spec_lines(spec: SpecAnswer) -> list[str]:
    if spec.entry is None:
        return [f"  spec: {spec.target} has no entry for {spec.op_type}: stays float"]
    entry = spec.entry
    where = f"{spec.op_type} @ {display_loc(entry.loc)}"
    if entry.agnostic:
        head = f"  spec: {where} -> quantization-agnostic (FakeQuantize passes through input(s) {entry.pass_through})"
    else:
        chosen = ""
        if spec.variant is not None:
            chosen = f" variant {spec.variant.name} @ {display_loc(spec.variant.loc)} (when {spec.variant.when})"
        ports = "all" if entry.ports is None else f"[{', '.join(map(str, entry.ports))}]"
        head = (f"  spec: {where}{chosen} -> activations {_names(spec.activations)}, weights {_names(spec.weights)}"
                f"{', outputs ' + _names(spec.outputs) if spec.outputs else ''}, ports {ports}")
    lines = [head]
    lines.extend(f"    variant {v.name} not taken: {why}" for v, why in spec.refused_variants)
    return lines


def _rule_lines(rule: RuleAttempt, node: str) -> list[str]:
    head = f"  rule {rule.rule} @ {display_loc(rule.loc)}"
    if len(rule.attempts) == 1:
        return [f"{head}: {_attempt_text(rule, rule.attempts[0], node)}"]
    return [f"{head}:"] + [f"    {_attempt_text(rule, a, node)}" for a in rule.attempts]


def _attempt_text(rule: RuleAttempt, attempt: CaptureAttempt, node: str) -> str:
    if attempt.status != "matched":
        return f"{attempt.status} as `{attempt.capture}`: {attempt.reason}"
    others = [f"{cap}={name}" for cap, name in attempt.captures if cap != attempt.capture]
    context = f" ({', '.join(others)})" if others else ""
    if attempt.dropped:
        context += f" without optional {', '.join(attempt.dropped)}"
    more = f" and {attempt.other_matches} more match(es)" if attempt.other_matches else ""
    actions = "; ".join(action_text(a) for a in rule.actions)
    aside = "" if attempt.acts_on_node else f" (on other captures, not {node})"
    return f"matched as `{attempt.capture}`{context}{more} -> {actions}{aside}"


def _decision_text(decision: Decision) -> str:
    where = "" if decision.loc.file == "<builtin>" else f" @ {display_loc(decision.loc)}"
    detail = f"  ({decision.detail})" if decision.detail else ""
    return f"{decision.action} by {decision.source}{where}{detail}"


def _point_text(point: FakeQuantizePoint, node: str) -> str:
    ports = [c.port for c in point.consumers if c.node == node]
    if ports:
        where = f"input {','.join(map(str, ports))} reads"
    else:
        readers = "every consumer" if point.at_output else ", ".join(f"{c.node}:{c.port}" for c in point.consumers)
        where = f"output read by {readers} through"
    return f"{where} FakeQuantize on {point.tensor} ({point.role}, {point.config.describe()})"


# -- JSON -----------------------------------------------------------------------------


def why_dict(plan: QuantPlan, explanations: Sequence[NodeExplanation]) -> dict:
    return {"schema": SCHEMA, "model": plan.model, "target": plan.target, "preset": plan.preset,
            "nodes": [_node_dict(e) for e in explanations]}


def why_json(plan: QuantPlan, explanations: Sequence[NodeExplanation]) -> str:
    return json.dumps(why_dict(plan, explanations), indent=2) + "\n"


def _node_dict(e: NodeExplanation) -> dict:
    d = e.decision
    return {"node": e.node, "op_type": e.op_type, "status": d.status, "reason": d.reason,
            "trail": [decision_dict(x) for x in d.trail], "spec": _spec_dict(e.spec),
            "rules": [_rule_dict(r) for r in e.rules],
            "fakequantize": [{"tensor": p.tensor, "role": p.role, "config": p.config.describe(),
                              "consumers": [{"node": c.node, "port": c.port} for c in p.consumers],
                              "at_output": p.at_output} for p in e.points]}


def _spec_dict(spec: SpecAnswer) -> dict:
    entry = spec.entry
    return {
        "entry": spec.op_type if entry is not None else None,
        "loc": display_loc(entry.loc) if entry is not None else None,
        "variant": spec.variant.name if spec.variant is not None else None,
        "refused_variants": [{"name": v.name, "when": v.when, "loc": display_loc(v.loc), "reason": why}
                             for v, why in spec.refused_variants],
        "activations": [c.describe() for c in spec.activations],
        "weights": [c.describe() for c in spec.weights],
        "outputs": [c.describe() for c in spec.outputs],
        "ports": list(entry.ports) if entry is not None and entry.ports is not None else None,
        "agnostic": bool(entry is not None and entry.agnostic),
    }


def _rule_dict(rule: RuleAttempt) -> dict:
    return {
        "rule": rule.rule, "loc": display_loc(rule.loc), "pattern": rule.pattern,
        "actions": [action_text(a) for a in rule.actions], "tried": rule.tried, "matched": rule.matched,
        "attempts": [{"capture": a.capture, "status": a.status, "reason": a.reason,
                      "captures": dict(a.captures), "dropped": list(a.dropped),
                      "other_matches": a.other_matches, "acts_on_node": a.acts_on_node} for a in rule.attempts],
        "refusing_captures": {cap: list(ops) for cap, ops in rule.refusing_captures},
    }
