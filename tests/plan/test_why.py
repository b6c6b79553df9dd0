"""`rewriter audit --why NODE`: which rules were tried on a node, where each stopped, and the spec's answer."""
from __future__ import annotations

import json

import onnx
import pytest

import models
from models import GraphBuilder, _f32
from rewriter.api import load_plan_inputs
from rewriter.cli import main
from rewriter.dsl.parser import parse_predicate, parse_rules
from rewriter.errors import SourceLoc, UserError
from rewriter.ir.normalize import normalize
from rewriter.ir.view import graph_view
from rewriter.match.explain import NodeExplanation, RuleAttempt, explain_nodes
from rewriter.match.planner import PlanOptions, build_plan
from rewriter.match.predicates import explain_predicate, expr_text
from rewriter.plan import QuantPlan
from rewriter.report.why_report import why_text
from rewriter.spec.loader import load_spec, resolve_target


def explain(model: onnx.ModelProto, *names: str, rules_text: str | None = None
            ) -> tuple[QuantPlan, tuple[NodeExplanation, ...]]:
    """Plan ``model`` on CPU (its own rules, or only ``rules_text``) and explain ``names``."""
    if rules_text is None:
        inputs = load_plan_inputs("CPU")
        spec, rules = inputs.spec, inputs.rules
    else:
        spec, rules = load_spec(resolve_target("CPU")), parse_rules(rules_text, "test.rules")
    graph = graph_view(normalize(model).model)
    plan = build_plan(graph, spec, rules, PlanOptions(), "model")
    return plan, explain_nodes(graph, spec, rules, plan, names)


def rule(explanation: NodeExplanation, name: str) -> RuleAttempt:
    return next(r for r in explanation.rules if r.rule == name)


def test_a_matched_rule_names_the_capture_the_action_and_the_spec_entry() -> None:
    plan, (conv2,) = explain(models.residual_block(), "conv2")
    assert (conv2.decision.status, conv2.decision.reason) == ("quantized", "FakeQuantize on inputs 0,1")
    (attempt,) = rule(conv2, "quantize_inputs").attempts
    assert (attempt.capture, attempt.status, attempt.acts_on_node) == ("op", "matched", True)
    assert conv2.spec.entry is not None and conv2.spec.entry.loc.file.endswith("hw_specs/cpu.yaml")
    assert [c.name for c in conv2.spec.activations] == ["q8_a", "q8_a"]
    assert conv2.spec.variant is None
    assert [(v.name, why) for v, why in conv2.spec.refused_variants] == [
        ("depthwise", "attr.group > 1 is false (attr.group 1)")]
    assert {p.tensor for p in conv2.points} == {"relu1", "conv2.weight", "bn2"}
    text = why_text(plan, (conv2,))
    assert "node conv2 (Conv): quantized: FakeQuantize on inputs 0,1" in text
    assert "rule quantize_inputs @ rules/placement.rules:" in text and "matched as `op` -> insert op.inputs" in text
    assert "spec: Conv @ hw_specs/cpu.yaml:" in text and "weights [q8_w_sym, q8_w_asym], ports [0, 1]" in text


def test_a_match_whose_actions_name_other_captures_says_so() -> None:
    plan, (matmul,) = explain(models.matmul_const_weights(), "fc_matmul")
    (attempt,) = rule(matmul, "operation_with_bias").attempts
    assert attempt.status == "matched" and not attempt.acts_on_node
    assert attempt.captures == (("op", "fc_matmul"), ("bias", "fc_add"))
    (fused,) = rule(matmul, "fused_op_const").attempts
    assert fused.status == "matched" and fused.dropped == ("bias", "act")
    text = why_text(plan, (matmul,))
    assert "matched as `op` (bias=fc_add) -> ignore bias (on other captures, not fc_matmul)" in text
    assert "matched as `op` (elt=fc_add) without optional bias, act -> ignore bias, act, elt" in text
    (conv,) = explain(models.squeeze_excitation(), "se_reduce")[1]
    attempts = {a.capture: a for a in rule(conv, "se_block_float").attempts}
    assert attempts["fc1"].status == "matched" and attempts["fc1"].acts_on_node
    assert dict(attempts["fc1"].captures)["scale"] == "output"
    assert attempts["fc2"].status == "no match"


def test_a_false_predicate_on_the_node_gives_the_actual_value() -> None:
    _, (relu,) = explain(models.squeeze_excitation(), "relu_trunk")
    (attempt,) = rule(relu, "fused_op_const").attempts
    assert attempt.capture == "act" and attempt.status == "no match"
    assert attempt.reason == "relu_trunk: fanout == 1 is false (fanout 2)"


def test_a_false_predicate_on_a_neighbour_names_the_capture_and_the_values() -> None:
    _, (conv2,) = explain(models.residual_block(), "conv2")
    (attempt,) = rule(conv2, "operation_with_bias").attempts
    assert attempt.reason == ("capture `bias` (Add): no consumer of conv2 fits: add (Add): "
                              "const(1) or const(0) is false (const(1) false, const(0) false)")


EDGE_RULES = """
pattern port1 { a : Conv; b : Relu; a.out[0] -> b.in[1] }
rule relu_reads_port1 { match port1; ignore b }
pattern triangle { x : Relu; c : Conv; s : Add; x -> c -> s; x -> s }
rule residual_from_relu { match triangle; ignore s }
"""


def test_edge_failures_name_the_edge_and_what_the_graph_has() -> None:
    _, (conv1, relu1, conv2) = explain(models.residual_block(), "conv1", "relu1", "conv2", rules_text=EDGE_RULES)
    (from_conv,) = rule(conv1, "relu_reads_port1").attempts
    assert from_conv.reason == "capture `b` (Relu): nothing reads conv1 output 0 at input 1 (edge a.out[0] -> b.in[1])"
    (from_relu,) = rule(relu1, "relu_reads_port1").attempts
    assert from_relu.reason == "capture `a` (Conv): relu1 has no input 1 (edge a.out[0] -> b.in[1])"
    # conv2's producer relu1 and consumer add both fit, but relu1 does not feed add: the closing edge fails.
    (closing,) = rule(conv2, "residual_from_relu").attempts
    assert closing.reason == ("capture `s` (Add): no consumer of conv2 fits: add: edge x -> s does not hold "
                              "(relu1 does not feed add)")


def test_rules_that_cannot_involve_the_op_type_are_listed_not_tried() -> None:
    plan, (relu,) = explain(models.residual_block(), "relu1")
    inputs = rule(relu, "quantize_inputs")
    assert not inputs.tried and inputs.refusing_captures == (("op", ("@quantizable",)),)
    assert relu.spec.entry is None and relu.decision.reason == "CPU spec has no entry for Relu"
    text = why_text(plan, (relu,))
    assert "spec: CPU has no entry for Relu: stays float" in text
    assert "not tried (no capture admits Relu): quantize_inputs, quantize_outputs," in text


def test_an_embedding_that_loses_to_a_longer_match_at_the_anchor_is_shadowed() -> None:
    # conv_a -> relu -> add <- conv_b: from the anchor add, the form with the optional relu wins.
    b = GraphBuilder(0)
    a = b.node("Relu", [b.conv("input", "conv_a", 4, 4)], "relu")
    b.node("Add", [a, b.conv("input", "conv_b", 4, 4)], "output")
    model = b.model([_f32("input", [1, 4, 8, 8])], [_f32("output", [1, 4, 8, 8])], "shadow")
    text = "pattern p { c : Conv; r : Relu optional; s : Add; c -> r -> s }\nrule chain { match p; ignore s }\n"
    _, (conv_a, conv_b) = explain(model, "conv_a", "conv_b", rules_text=text)
    assert rule(conv_a, "chain").attempts[0].status == "matched"
    (shadowed,) = rule(conv_b, "chain").attempts
    assert shadowed.status == "shadowed" and shadowed.dropped == ("r",)
    assert "at its anchor `s`=output a longer form matched first (c=conv_a, r=relu, s=output)" in shadowed.reason


def test_an_unknown_node_is_a_user_error_with_the_closest_names(capsys) -> None:
    with pytest.raises(UserError, match=r"the model has no node named 'conv3'; did you mean conv2, conv1\?"):
        explain(models.residual_block(), "conv3")
    with pytest.raises(UserError, match="did you mean conv_trunk"):
        explain(models.squeeze_excitation(), "conv")
    with pytest.raises(UserError, match=r"no node named 'zzz'; its 5 nodes .* are conv1, relu1, conv2, add, output$"):
        explain(models.residual_block(), "zzz")


def test_cli_json_form_and_unknown_node_exit_code(tmp_path, capsys) -> None:
    path = tmp_path / "residual_block.onnx"
    onnx.save(models.residual_block(), str(path))
    code = main(["audit", str(path), "--why", "conv2", "--why", "relu1", "--format", "json", "--target", "CPU"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["schema"] == "rewriter.why/1" and doc["target"] == "CPU"
    conv2, relu1 = doc["nodes"]
    assert (conv2["node"], conv2["status"], relu1["status"]) == ("conv2", "quantized", "float")
    assert conv2["spec"]["entry"] == "Conv" and conv2["spec"]["ports"] == [0, 1]
    bias = next(r for r in conv2["rules"] if r["rule"] == "operation_with_bias")
    assert bias["tried"] and not bias["matched"] and bias["attempts"][0]["status"] == "no match"
    assert "const(1) or const(0) is false" in bias["attempts"][0]["reason"]
    inputs = next(r for r in relu1["rules"] if r["rule"] == "quantize_inputs")
    assert not inputs["tried"] and inputs["refusing_captures"] == {"op": ["@quantizable"]}

    code = main(["audit", str(path), "--why", "conv3"])
    err = capsys.readouterr().err
    assert code == 2 and "did you mean conv2, conv1?" in err


@pytest.mark.parametrize("text", [
    "attr.group > 1 and shape(1)[1] == 1",
    "not const(0) and not const(1)",
    "(const(1) or const(0)) and fanout == 1",
    "not (graph_input(0) or rank(0) != 4)",
    'attr.mode in ["constant", "reflect"] and dtype(0) == "float32"',
    "out_shape(0)[-1] >= 16 or num_inputs == 3",
    "not present(2) or zero(2) or static(0)",
])
def test_expr_text_reads_back_as_the_same_predicate(text: str) -> None:
    expr = parse_predicate(text, SourceLoc("t"))
    assert parse_predicate(expr_text(expr), SourceLoc("t")) == expr


def test_explain_predicate_follows_not_or_to_the_operand_that_holds() -> None:
    graph = graph_view(normalize(models.residual_block()).model)
    conv1 = graph.nodes[graph.by_name["conv1"]]
    expr = parse_predicate("rank(0) == 4 and not (graph_input(0) or const(0))", SourceLoc("t"))
    assert explain_predicate(expr, graph, conv1) == "not graph_input(0) is false (graph_input(0) true)"
    assert explain_predicate(parse_predicate("rank(0) == 4", SourceLoc("t")), graph, conv1) is None
    assert explain_predicate(None, graph, conv1) is None
