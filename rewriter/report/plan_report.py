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
from pathlib import Path

from rewriter.errors import SourceLoc
from rewriter.plan import Decision, FakeQuantizePoint, QuantPlan
from rewriter.spec.builtin import BrokenInstallation, targets_root
from rewriter.spec.model import QuantizerConfig

SCHEMA = "rewriter.plan/1"


def display_path(path: str) -> str:
    """A path relative to the project root (installed: the targets folder) if inside it, else unchanged."""
    try:
        return Path(path).resolve().relative_to(targets_root()).as_posix()
    except (ValueError, OSError, BrokenInstallation):
        return path


def display_loc(loc: SourceLoc) -> str:
    return str(SourceLoc(display_path(loc.file), loc.line, loc.column)) if loc.file.endswith(
        (".rules", ".yaml", ".yml", ".json")) else str(loc)


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


def summary(plan: QuantPlan) -> dict:
    statuses = Counter(n.status for n in plan.nodes)
    roles = Counter(p.role for p in plan.points)
    return {"nodes": len(plan.nodes), **{f"nodes_{k}": statuses.get(k, 0) for k in
                                          ("quantized", "float", "ignored", "agnostic")},
            "fakequantize": len(plan.points), "fakequantize_activations": roles.get("activation", 0),
            "fakequantize_weights": roles.get("weight", 0)}


def plan_dict(plan: QuantPlan) -> dict:
    return {
        "schema": SCHEMA, "model": plan.model, "target": plan.target,
        "spec": display_path(plan.spec_path), "preset": plan.preset,
        "rules": [display_path(f) for f in plan.rule_files], "summary": summary(plan),
        "fakequantize": [point_dict(p) for p in plan.points],
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
                 f"{s['nodes_agnostic']} agnostic, {s['nodes_ignored']} ignored, {s['nodes_float']} float")
    lines.append("")
    lines.append("FakeQuantize")
    for p in plan.points:
        readers = "output" if p.at_output else ", ".join(f"{c.node}:{c.port}" for c in p.consumers)
        extra = "" if p.channel_axis is None else f" axis={p.channel_axis}"
        group = "" if p.unify_group is None else f" unified#{p.unify_group}"
        lines.append(f"  {p.tensor}  {p.role}  {p.config.describe()}{extra}{group}  -> {readers}")
        if trails:
            lines.extend(_trail_line(d) for d in p.trail)
    lines.append("")
    lines.append("Nodes")
    width = max((len(n.node) for n in plan.nodes), default=4)
    op_width = max((len(n.op_type) for n in plan.nodes), default=4)
    for n in plan.nodes:
        lines.append(f"  {n.node:<{width}}  {n.op_type:<{op_width}}  {n.status:<9}  {n.reason}")
        if trails and n.status == "ignored":
            lines.extend(_trail_line(d) for d in n.trail)
    return "\n".join(lines) + "\n"


def _trail_line(decision: Decision) -> str:
    where = "" if decision.loc.file == "<builtin>" else f" @ {display_loc(decision.loc)}"
    detail = f"  ({decision.detail})" if decision.detail else ""
    return f"      {decision.action} by {decision.source}{where}{detail}"
