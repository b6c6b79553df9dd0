"""Plan a built model in memory, the way `rewriter audit` does."""
from __future__ import annotations

from pathlib import Path

import onnx

from rewriter.api import load_plan_inputs, plan_graph
from rewriter.dsl.parser import load_rule_files, parse_rules
from rewriter.ir.normalize import normalize
from rewriter.ir.view import graph_view
from rewriter.match.planner import PlanOptions, build_plan
from rewriter.plan import QuantPlan
from rewriter.spec.loader import load_spec, resolve_target

GOLDEN = Path(__file__).resolve().parent / "golden"


def plan_model(model: onnx.ModelProto, target: str = "CPU", name: str = "model",
               options: PlanOptions = PlanOptions(), model_type: str | None = None,
               rules: tuple[str, ...] = (), saturation_fix: str | None = None) -> QuantPlan:
    inputs = load_plan_inputs(target, rules, model_type)
    graph = graph_view(normalize(model).model)
    return plan_graph(graph, inputs, options, name, saturation_fix)


def plan_with_rules(model: onnx.ModelProto, rules_text: str, target: str = "CPU",
                    options: PlanOptions = PlanOptions(), filename: str = "test.rules") -> QuantPlan:
    """Plan with only the given rule text (plus nothing from the target's rule files)."""
    spec = load_spec(resolve_target(target))
    ruleset = parse_rules(rules_text, filename)
    graph = graph_view(normalize(model).model)
    return build_plan(graph, spec, ruleset, options, "model")


def status(plan: QuantPlan) -> dict[str, str]:
    return {n.node: n.status for n in plan.nodes}


def quantized_inputs(plan: QuantPlan) -> set[tuple[str, int]]:
    return {(c.node, c.port) for p in plan.points for c in p.consumers}


__all__ = ["plan_model", "plan_with_rules", "status", "quantized_inputs", "GOLDEN", "load_rule_files"]
