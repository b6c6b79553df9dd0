"""Render a QuantPlan as stable text (golden tests, terminal) or JSON (tools).

JSON schema "rewriter.plan/1" (documented in docs/plan-schema.md):
{schema, model, target, spec, preset, rules[], summary{...},
 fakequantize[{tensor, role, config{...}, candidates[], consumers[{node, port}],
               at_output, channel_axis, unify_group, trail[{action, source, loc, detail}]}],
 nodes[{node, op_type, status, reason, trail[...]}]}
Locations are shown relative to the project root when they lie inside it, so
the same plan renders the same on every machine.
"""
from __future__ import annotations

import json
from collections import Counter

from rewriter.plan import Decision, FakeQuantizePoint, IntegerBias, QuantPlan, Requantization
from rewriter.sources import display_loc, display_path
from rewriter.spec.model import QuantizerConfig

SCHEMA = "rewriter.plan/1"


def config_dict(config: QuantizerConfig) -> dict:
    return {"name": config.name, "bits": config.bits, "mode": config.mode,
            "granularity": config.granularity, "level_low": config.level_low,
            "level_high": config.level_high, "signed": config.signed}


def decision_dict(decision: Decision) -> dict:
    return {"action": decision.action, "source": decision.source,
            "loc": display_loc(decision.loc), "detail": decision.detail}


def point_dict(point: FakeQuantizePoint) -> dict:
    return {
        "tensor": point.tensor, "role": point.role, "config": config_dict(point.config),
        "candidates": [c.describe() for c in point.candidates],
        "consumers": [{"node": c.node, "port": c.port} for c in point.consumers],
        "at_output": point.at_output, "channel_axis": point.channel_axis,
        "unify_group": point.unify_group, "trail": [decision_dict(d) for d in point.trail],
    }


def requantization_dict(item: Requantization) -> dict:
    return {"tensor": item.tensor, "node": item.node, "grid": item.grid,
            "trail": [decision_dict(d) for d in item.trail]}


def int32_bias_dict(item: IntegerBias) -> dict:
    return {"node": item.node, "bias": item.bias or None, "activation": item.activation, "weight": item.weight,
            "trail": [decision_dict(d) for d in item.trail]}


def summary(plan: QuantPlan) -> dict:
    statuses = Counter(n.status for n in plan.nodes)
    roles = Counter(p.role for p in plan.points)
    return {"nodes": len(plan.nodes), **{f"nodes_{k}": statuses.get(k, 0) for k in
                                          ("quantized", "float", "ignored", "agnostic", "reverted")},
            "fakequantize": len(plan.points), "fakequantize_activations": roles.get("activation", 0),
            "fakequantize_weights": roles.get("weight", 0), "requantized": len(plan.requantized),
            "int32_biases": len(plan.int32_biases)}


def plan_dict(plan: QuantPlan) -> dict:
    return {
        "schema": SCHEMA, "model": plan.model, "target": plan.target,
        "spec": display_path(plan.spec_path), "preset": plan.preset,
        "rules": [display_path(f) for f in plan.rule_files], "summary": summary(plan),
        "fakequantize": [point_dict(p) for p in plan.points],
        "requantized": [requantization_dict(r) for r in plan.requantized],
        "int32_biases": [int32_bias_dict(b) for b in plan.int32_biases],
        "activation_storage": {"value": plan.activation_storage,
                               "trail": [decision_dict(d) for d in plan.storage_trail]},
        "nodes": [{"node": n.node, "op_type": n.op_type, "status": n.status, "reason": n.reason,
                   "trail": [decision_dict(d) for d in n.trail]} for n in plan.nodes],
    }


def plan_json(plan: QuantPlan) -> str:
    return json.dumps(plan_dict(plan), indent=2, sort_keys=False) + "\n"


def plan_text(plan: QuantPlan, trails: bool = True) -> str:
    """A readable, diffable rendering: FakeQuantizes with their trails, then every node."""
    lines = [f"plan for {plan.model} on {plan.target} (preset {plan.preset})",
             f"spec  {display_path(plan.spec_path)}",
             "rules " + ", ".join(display_path(f) for f in plan.rule_files), ""]
    s = summary(plan)
    lines.append(f"{s['fakequantize']} FakeQuantize ({s['fakequantize_activations']} activations, "
                 f"{s['fakequantize_weights']} weights); nodes: {s['nodes_quantized']} quantized, "
                 f"{s['nodes_agnostic']} agnostic, {s['nodes_ignored']} ignored, {s['nodes_float']} float"
                 f"{', ' + str(s['nodes_reverted']) + ' reverted' if s['nodes_reverted'] else ''}; "
                 f"{s['requantized']} requantized outputs, {s['int32_biases']} int32 biases")
    lines.append("")
    lines.append("FakeQuantize")
    for p in plan.points:
        readers = "output" if p.at_output else ", ".join(f"{c.node}:{c.port}" for c in p.consumers)
        extra = "" if p.channel_axis is None else f" axis={p.channel_axis}"
        group = "" if p.unify_group is None else f" unified#{p.unify_group}"
        lines.append(f"  {p.tensor}  {p.role}  {p.config.describe()}{extra}{group}  -> {readers}")
        if trails:
            lines.extend(_trail_line(d) for d in p.trail)
    if plan.requantized:
        lines.extend(["", "Requantized outputs (the grid of their input, lossless)"])
        for r in plan.requantized:
            lines.append(f"  {r.tensor}  after {r.node}  grid of {r.grid}")
            if trails:
                lines.extend(_trail_line(d) for d in r.trail)
    if plan.int32_biases:
        lines.extend(["", "Int32 biases (scale = activation scale x weight scale)"])
        for b in plan.int32_biases:
            lines.append(f"  {b.node}  bias {b.bias or '(none yet)'}  = {b.activation} x {b.weight}")
            if trails:
                lines.extend(_trail_line(d) for d in b.trail)
    lines.extend(["", f"Activations stored {plan.activation_storage}"])
    if trails:
        lines.extend(_trail_line(d) for d in plan.storage_trail)
    lines.append("")
    lines.append("Nodes")
    width = max((len(n.node) for n in plan.nodes), default=4)
    op_width = max((len(n.op_type) for n in plan.nodes), default=4)
    for n in plan.nodes:
        lines.append(f"  {n.node:<{width}}  {n.op_type:<{op_width}}  {n.status:<9}  {n.reason}")
        if trails and n.status in ("ignored", "reverted"):
            lines.extend(_trail_line(d) for d in n.trail)
    return "\n".join(lines) + "\n"


def _trail_line(decision: Decision) -> str:
    where = "" if decision.loc.file == "<builtin>" else f" @ {display_loc(decision.loc)}"
    detail = f"  ({decision.detail})" if decision.detail else ""
    return f"      {decision.action} by {decision.source}{where}{detail}"
