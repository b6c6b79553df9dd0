"""The documented semantics of rules (docs/rules.md, "Semantics"), one behaviour per test."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import models
from plan_helpers import plan_model, plan_with_rules, quantized_inputs, status
from rewriter.errors import UserError
from rewriter.match.planner import PlanOptions

INSERT_ALL = """
rule quantize_inputs {
    match { op : @quantizable }
    insert op.inputs
}
"""


def test_ignore_wins_over_insert_whatever_the_file_order() -> None:
    ignore_first = """
rule keep_add { match { a : Add }; ignore }
""" + INSERT_ALL
    ignore_last = INSERT_ALL + """
rule keep_add { match { a : Add }; ignore }
"""
    model = models.residual_block()
    for text in (ignore_first, ignore_last):
        plan = plan_with_rules(model, text)
        assert status(plan)["add"] == "ignored"
        assert not any(node == "add" for node, _ in quantized_inputs(plan))


def test_remove_takes_fake_quantize_off_one_edge_only() -> None:
    text = INSERT_ALL + """
pattern residual { conv : Conv; add : Add; conv -> add }
rule no_fq_into_add { match residual; remove conv -> add }
"""
    plan = plan_with_rules(models.residual_block(), text)
    read = quantized_inputs(plan)
    assert ("add", 1) in read and ("add", 0) not in read
    assert ("conv2", 0) in read
    assert any(d.action == "remove" for d in plan.node("add").trail)


def test_optional_nodes_match_longest_first() -> None:
    text = """
pattern conv_act {
    conv : Conv
    act  : Relu  optional
    conv -> act
}
rule keep_tail { match conv_act; ignore act }
"""
    plan = plan_with_rules(models.conv_bn_relu_chain(), text)
    relus = [n for n in plan.nodes if n.op_type == "Relu"]
    assert relus and all(n.status == "ignored" for n in relus)


def test_optional_node_absent_still_matches_the_rest() -> None:
    text = """
pattern conv_act {
    conv : Conv
    act  : Sigmoid  optional
    conv -> act
}
rule keep_conv { match conv_act; ignore conv }
"""
    plan = plan_with_rules(models.conv_bn_relu_chain(), text)
    assert all(n.status == "ignored" for n in plan.nodes if n.op_type == "Conv")


def _stat_broadcast_back(moves: int) -> onnx.ModelProto:
    """x -> ReduceMean -> ``moves`` x (Reshape, Expand) -> Sub(x, .) -> Relu: a mean broadcast back to its rows."""
    b = models.GraphBuilder(0)
    stat = b.node("ReduceMean", ["x"], "mean", axes=[-1], keepdims=0 if moves else 1)
    for k in range(moves):
        shape = [1, 4, 1] if k == 0 else [1, 4, 8]
        stat = b.node("Reshape", [stat, b.const(f"shape{k}", np.array(shape, np.int64))], f"reshape{k}")
        stat = b.node("Expand", [stat, b.const(f"full{k}", np.array([1, 4, 8], np.int64))], f"expand{k}")
    b.node("Relu", [b.node("Sub", ["x", stat], "sub")], "y")
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 8]) for n in ("x", "y")]
    return b.model(vi[:1], vi[1:], "stat_broadcast_back")


@pytest.mark.parametrize("arrow", ["->", "~>"])
def test_a_moves_edge_steps_over_data_movement_and_a_plain_edge_does_not(arrow: str) -> None:
    text = f"""
pattern centre {{
    stat : ReduceMean
    sub  : Sub
    stat {arrow} sub.in[1]
}}
rule keep_centre {{ match centre; ignore }}
"""
    direct = plan_with_rules(_stat_broadcast_back(0), text)
    assert status(direct)["sub"] == "ignored"                  # no movement: both arrows hold
    moved = plan_with_rules(_stat_broadcast_back(1), text)     # Reshape, Expand in between
    assert status(moved)["sub"] == ("ignored" if arrow == "~>" else "float")
    assert status(moved)["reshape0"] != "ignored"              # stepped over, not captured
    far = plan_with_rules(_stat_broadcast_back(3), text)       # six movement nodes: beyond MOVEMENT_DEPTH
    assert status(far)["sub"] == "float"


def test_propagation_needs_every_consumer_quantized() -> None:
    # MaxPool feeds a quantized Conv only: the FakeQuantize moves above it.
    text = INSERT_ALL + "rule up { match { p : @agnostic }; propagate p }\n"
    plan = plan_with_rules(models.tiny_cnn(), text)
    pool_in = plan.point("res_relu")
    assert pool_in is not None and any(c.node == "pool" for c in pool_in.consumers)
    # Without the propagate rule it stays below.
    plain = plan_with_rules(models.tiny_cnn(), INSERT_ALL)
    assert plain.point("pool") is not None


def test_propagation_stops_at_an_ignored_agnostic_node() -> None:
    text = INSERT_ALL + """
rule up { match { p : @agnostic }; propagate p }
rule keep_pool { match { p : MaxPool }; ignore }
"""
    plan = plan_with_rules(models.tiny_cnn(), text)
    assert plan.point("pool") is not None
    assert status(plan)["pool"] == "ignored"


def test_symmetric_action_overrides_the_preset() -> None:
    text = INSERT_ALL + "rule sym { match { c : Conv }; symmetric c.inputs }\n"
    plan = plan_with_rules(models.residual_block(), text, options=PlanOptions(preset="accuracy"))
    conv_inputs = [p for p in plan.points if all(c.node.startswith("conv") for c in p.consumers)]
    assert conv_inputs and all(p.config.mode == "symmetric" for p in conv_inputs)
    assert any(p.config.mode == "asymmetric" for p in plan.points if p not in conv_inputs)
    plain = plan_with_rules(models.residual_block(), INSERT_ALL, options=PlanOptions(preset="accuracy"))
    assert all(p.config.mode == "asymmetric" for p in plain.points)


def test_asymmetric_action_prefers_asymmetric_where_the_spec_allows_it() -> None:
    text = INSERT_ALL + "rule asym { match { c : Conv }; asymmetric c.inputs[0] }\n"
    plan = plan_with_rules(models.residual_block(), text)  # preset performance: symmetric by default
    conv_inputs = [p for p in plan.points if p.role == "activation"
                   and any(c.node.startswith("conv") and c.port == 0 for c in p.consumers)]
    assert conv_inputs and all(p.config.mode == "asymmetric" for p in conv_inputs)
    assert all(any(d.action == "asymmetric" and d.source == "asym" for d in p.trail) for p in conv_inputs)
    others = [p for p in plan.points if p.role == "activation" and p not in conv_inputs]
    assert others and all(p.config.mode == "symmetric" for p in others)


def test_symmetric_beats_asymmetric_and_the_trail_says_so() -> None:
    text = INSERT_ALL + ("rule asym { match { c : Conv }; asymmetric c.inputs[0] }\n"
                         "rule sym { match { c : Conv }; symmetric c.inputs[0] }\n")
    plan = plan_with_rules(models.residual_block(), text, options=PlanOptions(preset="mixed"))
    conv_inputs = [p for p in plan.points if p.role == "activation"
                   and all(c.node.startswith("conv") for c in p.consumers)]
    assert conv_inputs and all(p.config.mode == "symmetric" for p in conv_inputs)
    assert all(any("a symmetric rule wins" in d.detail for d in p.trail) for p in conv_inputs)


def test_asymmetric_action_is_a_no_op_where_the_spec_has_no_asymmetric_config() -> None:
    text = INSERT_ALL + "rule asym { match { c : Conv }; asymmetric c.inputs[0] }\n"
    plain = plan_with_rules(models.residual_block(), INSERT_ALL, target="GNA")
    plan = plan_with_rules(models.residual_block(), text, target="GNA")
    assert [p.config for p in plan.points] == [p.config for p in plain.points]
    assert any("spec allows no asymmetric config" in d.detail for p in plan.points for d in p.trail)


def test_default_rules_give_gelu_and_layer_norm_outputs_asymmetric_activations() -> None:
    plan = plan_model(models.attention_block(), "CPU")
    modes = {p.tensor: p.config.mode for p in plan.points if p.role == "activation"}
    assert modes["gelu_out"] == modes["ln1_out"] == "asymmetric"
    assert {m for t, m in modes.items() if t not in ("gelu_out", "ln1_out")} == {"symmetric"}


def test_explicit_unify_ports_group_the_named_inputs() -> None:
    text = INSERT_ALL + "rule same_scale { match { a : Add }; unify a.inputs[0, 1] }\n"
    plan = plan_with_rules(models.residual_block(), text)
    groups = [p.unify_group for p in plan.points if any(c.node == "add" for c in p.consumers)]
    assert len(groups) == 2 and groups[0] is not None and groups[0] == groups[1]


def test_insert_respects_the_spec_only_configured_inputs_get_fake_quantize() -> None:
    # Relu is not quantizable on CPU: an explicit insert on it places nothing.
    text = "rule relu_in { match { r : Relu }; insert r.inputs }\n"
    plan = plan_with_rules(models.conv_bn_relu_chain(), text)
    assert plan.points == ()


def test_unknown_ignore_scope_node_is_a_user_error_with_suggestion() -> None:
    with pytest.raises(UserError, match="conv9.*did you mean"):
        plan_with_rules(models.residual_block(), INSERT_ALL,
                        options=PlanOptions(ignore_scope=("conv9",)))


def test_unknown_preset_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unknown preset"):
        PlanOptions(preset="fastest")


def test_each_match_is_reported_once_per_embedding() -> None:
    from rewriter.dsl.parser import parse_rules
    from rewriter.ir.normalize import normalize
    from rewriter.ir.view import graph_view
    from rewriter.match.matcher import PatternMatcher
    from rewriter.spec.loader import load_spec, resolve_target

    rules = parse_rules("pattern p { c : Conv; r : Relu; c -> r }\nrule r { match p; ignore }\n", "t.rules")
    graph = graph_view(normalize(models.conv_bn_relu_chain()).model)
    matcher = PatternMatcher(rules.pattern("p"), load_spec(resolve_target("CPU")))
    matches = matcher.find(graph)
    convs = graph.by_op["Conv"]
    assert [m.node("c") for m in matches] == sorted(convs)
    assert matcher.find(graph) == matches


def test_the_first_variant_that_matches_an_anchor_wins_also_after_a_shared_step() -> None:
    """The variants (bias, act), (bias), (act), () grow from the Conv as one tree: (bias, act) fails after the
    bias step it shares with (bias), which must still match, ahead of () that embeds through the second Mul."""
    from rewriter.dsl.parser import parse_rules
    from rewriter.ir.normalize import normalize
    from rewriter.ir.view import graph_view
    from rewriter.match.matcher import PatternMatcher
    from rewriter.spec.loader import load_spec, resolve_target

    b = models.GraphBuilder(0)
    conv = b.conv("x", "conv", 3, 4, bias=False)
    scale = b.const("scale", np.full((1, 4, 1, 1), 2.0, np.float32))
    b.node("Mul", [b.node("Add", [conv, b.const("bias", np.zeros((1, 4, 1, 1), np.float32))], "add"), scale], "mul")
    b.node("Mul", [conv, scale], "mul_direct")
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, c, 8, 8])
          for n, c in (("x", 3), ("mul", 4), ("mul_direct", 4))]
    graph = graph_view(normalize(b.model(vi[:1], vi[1:], "shared_step")).model)
    rules = parse_rules("pattern p {\n  op : Conv\n  bias : Add optional\n  act : Relu optional\n  elt : Mul\n"
                        "  op -> bias -> act -> elt\n}\nrule r { match p; ignore }\n", "t.rules")
    matches = PatternMatcher(rules.pattern("p"), load_spec(resolve_target("CPU"))).find(graph)
    names = [{cap: graph.nodes[i].name for cap, i in m.captures.items()} for m in matches]
    assert names == [{"op": "conv", "bias": "add", "elt": "mul"}]


def test_matches_of_different_sizes_come_out_in_graph_order() -> None:
    """Two anchors match variants of different sizes whose sorted nodes start alike: (r0, s1) and (r0, s1, s2)."""
    from rewriter.dsl.parser import parse_rules
    from rewriter.ir.normalize import normalize
    from rewriter.ir.view import graph_view
    from rewriter.match.matcher import PatternMatcher
    from rewriter.spec.loader import load_spec, resolve_target

    b = models.GraphBuilder(0)
    b.node("Sigmoid", [b.node("Sigmoid", [b.node("Relu", ["x"], "r0")], "s1")], "s2")
    b.node("Relu", [b.node("Relu", [b.node("Relu", ["x"], "r1")], "r2")], "r3")  # more Relus: anchored at c
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("x", "s2", "r3")]
    graph = graph_view(normalize(b.model(vi[:1], vi[1:], "two_sizes")).model)
    rules = parse_rules("pattern p {\n  a : Relu\n  b : Sigmoid optional\n  c : Sigmoid\n  a -> b -> c\n}\n"
                        "rule r { match p; ignore }\n", "t.rules")
    matches = PatternMatcher(rules.pattern("p"), load_spec(resolve_target("CPU"))).find(graph)
    names = [{cap: graph.nodes[i].name for cap, i in m.captures.items()} for m in matches]
    assert names == [{"c": "s1", "a": "r0"}, {"c": "s2", "b": "s1", "a": "r0"}]


def test_per_tensor_narrows_an_activation_to_one_scale_and_names_the_rule() -> None:
    """The depthwise Conv's per-channel input sits on conv1's output; per_tensor there keeps weights per channel."""
    model = models.depthwise_after_conv()
    before = {p.tensor: p for p in plan_with_rules(model, INSERT_ALL).points}
    assert before["bn1"].config.granularity == "perchannel" and before["bn1"].channel_axis == 1
    plan = plan_with_rules(model, INSERT_ALL + "rule one_scale { match { c : Conv }; per_tensor c.outputs }\n")
    points = {p.tensor: p for p in plan.points}
    assert points["bn1"].config.granularity == "pertensor" and points["bn1"].channel_axis is None
    assert [(d.action, d.source) for d in points["bn1"].trail if d.action == "per_tensor"] == [
        ("per_tensor", "one_scale")]
    assert points["dw_conv.weight"].config.granularity == "perchannel"
    # Where the spec allows only per-tensor configs the rule changes nothing and is not in the trail.
    assert not any(d.action == "per_tensor" for d in points["dw_conv"].trail)
