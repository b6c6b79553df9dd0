"""What a reader of the audit sees first about a node: one of five display statuses, from its plan record.

The plan's node statuses (quantized, agnostic, float, ignored, reverted) say what happened; the display
status also says who decided a float node: the target's spec (it has no entry for the op type) or the
rules (a rule or an ignore kept it float, or no rule placed a quantizer although the spec allows one).
The HTML page, the Model Explorer overlay and the target diff all use these names.
"""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["DISPLAY_STATUSES", "display_status"]

#: Display status -> what the legend says about it.
DISPLAY_STATUSES = {
    "quantized": "quantized",
    "agnostic": "agnostic (runs on its input's grid)",
    "float-rule": "float by rule",
    "float-spec": "float by spec",
    "reverted": "reverted to float (guard or search)",
}


def display_status(node: Mapping[str, Any]) -> str:
    """The display status of a ``rewriter.plan/1`` node record (``{"status", "trail", ...}``)."""
    status = node.get("status")
    if status in ("quantized", "agnostic", "reverted"):
        return str(status)
    if status == "ignored":
        return "float-rule"
    for decision in node.get("trail") or ():
        # The planner's record of a node whose op type the spec does not list (rewriter.match.node_records).
        if decision.get("action") == "float" and str(decision.get("detail", "")).startswith("no entry for "):
            return "float-spec"
    return "float-rule"
