"""What the default rules do to the builder models, asserted directly (not only through golden text)."""
from __future__ import annotations

import models
from plan_helpers import plan_model, quantized_inputs, status
from rewriter.ir.normalize import normalize
from rewriter.ir.view import graph_view
from rewriter.match.planner import IgnoredOperation, PlanOptions


def _graph(model):
    return graph_view(normalize(model).model)


def test_conv_chain_quantizes_every_conv_input_and_weight() -> None:
    plan = plan_model(models.conv_bn_relu_chain())
    convs = [n.node for n in plan.nodes if n.op_type == "Conv"]
    assert convs and all(status(plan)[c] == "quantized" for c in convs)
    read = quantized_inputs(plan)
    assert all((c, 0) in read and (c, 1) in read for c in convs)
    assert not any(n.op_type == "BatchNormalization" for n in plan.nodes), "BN must be folded first"
    weights = [p for p in plan.points if p.role == "weight"]
    assert all(p.config.granularity == "perchannel" and p.channel_axis == 0 for p in weights)
    # 7-bit weights by the CPU target's saturation fix, and the full 8-bit grid without it.
    assert all(p.config.level_low == -63 and p.config.level_high == 63 for p in weights)
    assert all(p.trail[-1].source == "saturation_fix" for p in weights)
    full = [p for p in plan_model(models.conv_bn_relu_chain(), saturation_fix="no").points if p.role == "weight"]
    assert all(p.config.level_low == -127 and p.config.level_high == 127 for p in full)


def test_attention_block_keeps_normalization_gelu_and_softmax_inputs_float() -> None:
    plan = plan_model(models.attention_block())
    st = status(plan)
    kinds = {n.node: n.op_type for n in plan.nodes}
    for name, op in kinds.items():
        if name.startswith(("ln1_", "ln2_", "gelu_")):
            assert st[name] == "ignored", f"{name} ({op}) must stay float"
    assert st["scale"] == "ignored"  # the 1/sqrt(d) Div in front of Softmax
    assert st["scores"] == "quantized" and st["context"] == "quantized"
    reasons = {n.node: n.reason for n in plan.nodes}
    assert "normalization_float" in reasons["ln1_pow"]
    assert "gelu_float" in reasons["gelu_erf"]


def test_fake_quantize_moves_above_reshape_and_transpose() -> None:
    plan = plan_model(models.attention_block())
    q = plan.point("q_add")
    assert q is not None and [c.node for c in q.consumers] == ["q_reshape"]
    assert any(d.action == "propagate" and "q_heads" in d.detail for d in q.trail)
    assert plan.point("q_heads") is None


def test_matmul_of_two_activations_shares_one_fake_quantize_when_both_read_the_same_tensor() -> None:
    plan = plan_model(models.matmul_two_activations())
    acts = [p for p in plan.points if p.role == "activation"]
    assert acts, "both MatMul inputs are activations and get FakeQuantize"
    assert all(p.role == "activation" for p in plan.points)


def test_concat_inputs_share_one_scale_group() -> None:
    plan = plan_model(models.concat_two_branches())
    concat = next(n for n in plan.nodes if n.op_type == "Concat")
    groups = {p.unify_group for p in plan.points if any(c.node == concat.node for c in p.consumers)}
    assert len(groups) == 1 and None not in groups
    members = [p for p in plan.points if p.unify_group in groups]
    assert len(members) == 2 and len({p.config for p in members}) == 1
    assert all(p.config.granularity == "pertensor" for p in members)


def test_squeeze_excitation_convs_stay_float() -> None:
    plan = plan_model(models.squeeze_excitation())
    st = status(plan)
    assert st["se_reduce"] == st["se_expand"] == "ignored"
    assert st["conv_trunk"] == "quantized"


def test_depthwise_conv_gets_per_channel_activations_from_the_spec_variant() -> None:
    plan = plan_model(models.depthwise_conv())
    point = plan.point("input")
    assert point.config.name == "q8_a_ch" and point.channel_axis == 1
    assert any(d.action == "spec" and "variant depthwise" in d.source for d in point.trail)


def test_gna_quantizes_outputs_with_32_bit_configs_and_16_bit_activations() -> None:
    plan = plan_model(models.conv_bn_relu_chain(), target="GNA")
    conv_outputs = {n.outputs[0] for n in _graph(models.conv_bn_relu_chain()).nodes if n.op_type == "Conv"}
    outputs = [p for p in plan.points if p.at_output and p.tensor in conv_outputs]
    assert outputs and all(p.config.bits == 32 for p in outputs)  # GNA's 32-bit accumulators
    assert all(p.config.bits == 16 for p in plan.points if p.role == "activation" and not p.at_output)


def test_presets_choose_modes() -> None:
    model = models.residual_block()
    perf = plan_model(model, options=PlanOptions(preset="performance"))
    mixed = plan_model(model, options=PlanOptions(preset="mixed"))
    acc = plan_model(model, options=PlanOptions(preset="accuracy"))
    def modes(plan, role):
        return {p.config.mode for p in plan.points if p.role == role}
    assert modes(perf, "activation") == {"symmetric"} and modes(perf, "weight") == {"symmetric"}
    assert modes(mixed, "activation") == {"asymmetric"} and modes(mixed, "weight") == {"symmetric"}
    assert modes(acc, "activation") == {"asymmetric"} and modes(acc, "weight") == {"asymmetric"}


def test_transformer_model_type_forces_symmetric_activation_matmuls_and_ignores_elementwise() -> None:
    plan = plan_model(models.attention_block(), model_type="transformer",
                      options=PlanOptions(preset="mixed"))
    st = status(plan)
    assert st["residual1"] == "ignored"
    scores_inputs = [p for p in plan.points if any(c.node in ("q_reshape", "k_reshape") for c in p.consumers)]
    assert scores_inputs and all(p.config.mode == "symmetric" for p in scores_inputs)


def test_cli_style_ignores_keep_nodes_float_and_say_so() -> None:
    model = models.residual_block()
    plan = plan_model(model, options=PlanOptions(ignore_scope=("conv1",),
                                                 ignore_ops=(IgnoredOperation("Add"),)))
    st = status(plan)
    assert st["conv1"] == "ignored"
    assert all(st[n.node] == "ignored" for n in plan.nodes if n.op_type == "Add")
    node = plan.node("conv1")
    assert node.trail[0].source == "cli" and "--ignore-scope" in str(node.trail[0].loc)


def test_every_fake_quantize_names_the_rule_and_spec_entry_with_file_and_line() -> None:
    plan = plan_model(models.tiny_cnn())
    for point in plan.points:
        inserts = [d for d in point.trail if d.action == "insert"]
        specs = [d for d in point.trail if d.action == "spec"]
        assert inserts and specs
        assert all(d.loc.file.endswith(".rules") and d.loc.line > 0 for d in inserts)
        assert all(d.loc.file.endswith(".yaml") and d.loc.line > 0 for d in specs)


def test_plans_are_deterministic() -> None:
    first = plan_model(models.attention_block())
    second = plan_model(models.attention_block())
    assert first == second


def test_ort_target_quantizes_cnn_residual_adds_but_not_transformer_ones() -> None:
    cnn = plan_model(models.tiny_cnn(), target="ORT")
    assert status(cnn)["res_add"] == "quantized"
    assert all(p.config.mode == "asymmetric" for p in cnn.points if p.role == "activation")
    transformer = plan_model(models.attention_block(), target="ORT")
    st = status(transformer)
    assert st["residual1"] in ("float", "ignored") and st["residual2"] in ("float", "ignored")
    assert all(st[n] == "quantized" for n in ("q_matmul", "scores", "context", "ffn_in_matmul"))


def test_ort_target_leaves_ops_without_integer_kernels_float() -> None:
    plan = plan_model(models.squeeze_excitation(), target="ORT")
    quantized = {n.op_type for n in plan.nodes if n.status == "quantized"}
    assert quantized <= {"Conv", "ConvTranspose", "MatMul", "Gemm", "AveragePool", "GlobalAveragePool", "Add", "Mul"}


def test_ort_target_keeps_float_the_convs_whose_result_only_float_ops_read() -> None:
    # onnxruntime runs a Conv as QLinearConv only with a QuantizeLinear after it: a Conv into a SiLU or a
    # Sigmoid would run as a float convolution behind Q/DQ work (rules/ort.rules).
    plan = plan_model(models.conv_silu_head(), target="ORT")
    st = status(plan)
    assert st["conv0"] == "ignored" and "conv_into_swish_float" in plan.node("conv0").reason
    assert st["head"] == "ignored" and "conv_into_float_function_float" in plan.node("head").reason
    assert st["conv1"] == "quantized"
    assert plan.point("input") is None, "nothing quantizes the input of a float conv0"
    # The other targets' placement (the original tool's) is untouched.
    cpu = status(plan_model(models.conv_silu_head(), target="CPU"))
    assert cpu["conv0"] == "quantized" and cpu["head"] == "quantized"


def test_add_feeding_a_layer_norm_stays_float_on_cpu() -> None:
    plan = plan_model(models.attention_block())
    assert plan.node("residual1").reason == "kept float by normalization_input_float"


def test_decision_key_is_equal_exactly_when_the_decisions_are() -> None:
    from rewriter.errors import SourceLoc
    from rewriter.plan import Decision, decision_key

    base = Decision("insert", "rule_a", SourceLoc("rules/x.rules", 3, 5), "conv input 0")
    same = Decision("insert", "rule_a", SourceLoc("rules/x.rules", 3, 5), "conv input 0")
    assert base is not same and decision_key(base) == decision_key(same)
    others = [Decision("ignore", "rule_a", base.loc, base.detail), Decision("insert", "rule_b", base.loc, base.detail),
              Decision("insert", "rule_a", SourceLoc("rules/x.rules", 3, 6), base.detail),
              Decision("insert", "rule_a", SourceLoc("rules/y.rules", 3, 5), base.detail),
              Decision("insert", "rule_a", base.loc, "conv input 1")]
    assert all(decision_key(o) != decision_key(base) and o != base for o in others)
