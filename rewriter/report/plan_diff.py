"""What changes between two plans of one model (two targets): node by node, and quantizer by quantizer.

Both plans are ``rewriter.plan/1`` documents (``plan_dict`` of a plan, or a quantize report, which holds
one), so ``rewriter audit --diff-target`` and the HTML report compare the same way.
"""
from __future__ import annotations

from typing import Any, Mapping

from rewriter.report.node_status import display_status

__all__ = ["diff_text", "plan_diff"]


def plan_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """The differences between plan ``a`` and plan ``b``.

    ``nodes``: every node whose display status or reason differs, in ``a``'s order (then nodes only in
    ``b``), each ``{"node", "op_type", "a": {"status", "reason"} | None, "b": ... | None}``;
    ``fakequantize``: tensors quantized in one plan only (``only_a``, ``only_b``) and tensors quantized in
    both with another quantizer (``changed``: ``{"tensor", "a", "b"}``, the configs described).
    """
    nodes_b = {n["node"]: n for n in b.get("nodes", ())}
    names_a = set()
    changed_nodes = []
    for node in a.get("nodes", ()):
        names_a.add(node["node"])
        other = nodes_b.get(node["node"])
        side_a, side_b = _side(node), _side(other) if other is not None else None
        if side_a != side_b:
            changed_nodes.append({"node": node["node"], "op_type": node.get("op_type", ""), "a": side_a, "b": side_b})
    for name, node in nodes_b.items():
        if name not in names_a:
            changed_nodes.append({"node": name, "op_type": node.get("op_type", ""), "a": None, "b": _side(node)})
    points_a = {p["tensor"]: _config_text(p) for p in a.get("fakequantize", ())}
    points_b = {p["tensor"]: _config_text(p) for p in b.get("fakequantize", ())}
    return {
        "a": _title(a), "b": _title(b),
        "nodes": changed_nodes,
        "fakequantize": {
            "only_a": [t for t in points_a if t not in points_b],
            "only_b": [t for t in points_b if t not in points_a],
            "changed": [{"tensor": t, "a": points_a[t], "b": points_b[t]} for t in points_a
                        if t in points_b and points_a[t] != points_b[t]],
        },
    }


def diff_text(diff: Mapping[str, Any]) -> str:
    """The diff as stable text: a summary line, then one line per changed node and quantizer."""
    a, b = diff["a"], diff["b"]
    fq = diff["fakequantize"]
    lines = [f"plan diff: {a} -> {b}",
             f"{len(diff['nodes'])} node(s) change; FakeQuantize: {len(fq['only_a'])} only on {a}, "
             f"{len(fq['only_b'])} only on {b}, {len(fq['changed'])} with another quantizer", ""]
    if diff["nodes"]:
        width = max(len(n["node"]) for n in diff["nodes"])
        op_width = max(len(n["op_type"]) for n in diff["nodes"])
        lines.append("Nodes")
        for n in diff["nodes"]:
            before, after = n["a"] or {"status": "(absent)", "reason": ""}, n["b"] or {"status": "(absent)",
                                                                                     "reason": ""}
            lines.append(f"  {n['node']:<{width}}  {n['op_type']:<{op_width}}  {before['status']} -> "
                         f"{after['status']}")
            lines.append(f"      {a}: {before['reason']}")
            lines.append(f"      {b}: {after['reason']}")
    if fq["only_a"] or fq["only_b"] or fq["changed"]:
        lines.extend(["", "FakeQuantize"])
        lines.extend(f"  {t}  only on {a}" for t in fq["only_a"])
        lines.extend(f"  {t}  only on {b}" for t in fq["only_b"])
        lines.extend(f"  {c['tensor']}  {c['a']} -> {c['b']}" for c in fq["changed"])
    return "\n".join(lines) + "\n"


def _side(node: Mapping[str, Any]) -> dict[str, str]:
    return {"status": display_status(node), "reason": str(node.get("reason", ""))}


def _config_text(point: Mapping[str, Any]) -> str:
    config = point.get("config") or {}
    axis = "" if point.get("channel_axis") is None else f" axis={point['channel_axis']}"
    return f"{config.get('bits')}b {config.get('mode')} {config.get('granularity')}{axis}"


def _title(plan: Mapping[str, Any]) -> str:
    return str(plan.get("target", "?"))
