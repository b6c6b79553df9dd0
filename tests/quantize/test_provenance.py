"""The plan is the whole truth: every node added to an output is one the plan declares, and names its rule.

For every builder model on every target: the QuantizeLinear and DequantizeLinear nodes of the quantized
model are exactly as many as the plan's FakeQuantizes, requantized outputs and int32 biases call for, each
carries ``rewriter.source`` with the rule or spec entry and its file:line:column, and that decision is in
the plan's trails. The same for the FakeQuantize output: one FakeQuantize or compressed weight (Cast, Sub,
Mul) per planned point, every added node naming its decision. Every node record of the plan has a trail.
"""
from __future__ import annotations

import re
from functools import cache
from typing import Any
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import models
import rewriter
from rewriter.emit.provenance import expected_qdq_counts, expected_quantizers, provenance_problems
from rewriter.ir.normalize import normalize
from rewriter.sources import SOURCE_KEY

MODELS = ["conv_bn_relu_chain", "residual_block", "concat_two_branches", "squeeze_excitation",
          "matmul_const_weights", "matmul_two_activations", "attention_block", "depthwise_conv", "tiny_cnn",
          "depthwise_after_conv"]
TARGETS = ["CPU", "GPU", "VPU", "GNA", "ANY", "ORT"]
SOURCE = re.compile(r"^\w+ by \S+ @ \S+:\d+:\d+$")


def calibration(model: onnx.ModelProto, n: int = 4) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    inits = {t.name for t in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in inits]
    shape = lambda vi: [d.dim_value if d.dim_value > 0 else 1 for d in vi.type.tensor_type.shape.dim]  # noqa: E731
    return [{vi.name: rng.standard_normal(shape(vi)).astype(np.float32) for vi in inputs} for _ in range(n)]


@cache
def quantized(builder: str, target: str) -> tuple[onnx.ModelProto, Any]:
    """The builder's model and its QDQ output on ``target`` (shared by the tests below)."""
    model = getattr(models, builder)()
    # Without the speed guard: its timings could return every group to float (no integer kernel left on
    # this machine), and the checks below are about the placement the rules and specs make.
    return model, rewriter.quantize(model, target=target, data=calibration(model), speed_guard=False)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("builder", MODELS)
def test_every_emitted_qdq_node_is_planned_and_names_its_rule(builder: str, target: str) -> None:
    model, result = quantized(builder, target)
    plan, out = result.plan, result.model
    qdq = [n for n in out.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    counts = (sum(n.op_type == "QuantizeLinear" for n in qdq), sum(n.op_type == "DequantizeLinear" for n in qdq))
    assert counts == expected_qdq_counts(normalize(model).model, plan)
    assert counts[1] > 0 or target == "GNA"
    for node in qdq:
        sources = [p.value for p in node.metadata_props if p.key == SOURCE_KEY]
        assert len(sources) == 1 and SOURCE.match(sources[0]), (node.name, sources)
    assert provenance_problems(normalize(model).model, plan, out) == []
    assert all(n.trail for n in plan.nodes), [n.node for n in plan.nodes if not n.trail]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("builder", MODELS)
def test_every_target_output_loads_and_runs_in_onnxruntime(builder: str, target: str) -> None:
    """With its integer kernels fused (onnxruntime's default optimizations), close to the float model."""
    model, result = quantized(builder, target)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    feeds = calibration(model, 1)[0]
    quantized_out = ort.InferenceSession(result.model.SerializeToString(), options,
                                         providers=["CPUExecutionProvider"]).run(None, feeds)
    float_out = ort.InferenceSession(model.SerializeToString(), options,
                                     providers=["CPUExecutionProvider"]).run(None, feeds)
    for q, f in zip(quantized_out, float_out):
        assert q.shape == f.shape and np.all(np.isfinite(q))


@cache
def fakequantized(builder: str, target: str) -> tuple[onnx.ModelProto, Any]:
    """The builder's model and its FakeQuantize output on ``target`` (no self-check: tests/quantize/test_openvino.py
    runs these outputs)."""
    model = getattr(models, builder)()
    return model, rewriter.quantize(model, target=target, data=calibration(model), output_format="fakequantize",
                                    self_check=False)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("builder", MODELS)
def test_every_node_of_the_fakequantize_output_is_planned_and_names_its_rule(builder: str, target: str) -> None:
    model, result = fakequantized(builder, target)
    plan, out, float_model = result.plan, result.model, normalize(model).model
    added = [n for n in out.graph.node if n.name not in {m.name for m in float_model.graph.node}]
    assert {n.op_type for n in added} <= {"FakeQuantize", "Cast", "Sub", "Mul"}
    assert sum(n.op_type in ("FakeQuantize", "Mul") for n in added) == expected_quantizers(float_model, plan)
    for node in added:
        sources = [p.value for p in node.metadata_props if p.key == SOURCE_KEY]
        assert len(sources) == 1 and SOURCE.match(sources[0]), (node.name, sources)
    assert provenance_problems(float_model, plan, out, "fakequantize") == []
    # Every weight the plan quantizes (and some layer reads through it) is stored as integers.
    weights = [p.tensor for p in plan.points if p.role == "weight" and p.consumers]
    stored = {t.name: t.data_type for t in out.graph.initializer}
    assert all(stored.get(f"{w}_quantized") in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT16)
               for w in weights), weights
    assert weights or target == "GNA" or not any(p.role == "weight" for p in plan.points)


def test_the_check_finds_a_fakequantize_the_plan_does_not_declare() -> None:
    model, result = fakequantized("conv_bn_relu_chain", "CPU")
    out = onnx.ModelProto()
    out.CopyFrom(result.model)
    planned = next(n for n in out.graph.node if n.op_type == "FakeQuantize")
    stray = out.graph.node.add()
    stray.CopyFrom(planned)
    stray.name, stray.output[0] = "stray", "stray_out"
    del stray.metadata_props[:]
    problems = provenance_problems(normalize(model).model, result.plan, out, "fakequantize")
    assert any("the plan declares" in p for p in problems) and any("stray" in p for p in problems)


def test_the_check_finds_a_node_the_plan_does_not_declare() -> None:
    """provenance_problems, which every run applies to its output, fails on a Q/DQ pair nobody planned."""
    from onnx import helper

    model = models.conv_bn_relu_chain()
    result = rewriter.quantize(model, target="CPU", data=calibration(model))
    out = onnx.ModelProto()
    out.CopyFrom(result.model)
    planned = next(n for n in out.graph.node if n.op_type == "QuantizeLinear")
    out.graph.node.append(helper.make_node("QuantizeLinear", ["output", *planned.input[1:]], ["stray_q"], name="stray"))
    problems = provenance_problems(normalize(model).model, result.plan, out)
    assert any("the plan declares" in p for p in problems) and any("stray" in p for p in problems)


def test_node_whose_quantizer_moved_up_names_the_rules_that_placed_it() -> None:
    plan = rewriter.audit(Path(__file__).resolve().parents[2] / "examples" / "tiny_cnn.onnx", target="CPU")
    branch = plan.node("branch_a")
    assert branch is not None and "moved up to res_relu" in branch.reason
    actions = {(d.action, d.source) for d in branch.trail}
    assert ("insert", "quantize_inputs") in actions and ("propagate", "propagate_agnostic") in actions


def test_signed_activation_storage_is_a_spec_field(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    spec = tmp_path / "signed.yaml"
    spec.write_text(f"name: SIGNED\nextends: {root / 'hw_specs' / 'cpu.yaml'}\nactivation_storage: signed\n")
    model = models.conv_bn_relu_chain()
    result = rewriter.quantize(model, target=str(spec), data=calibration(model))
    assert result.plan.activation_storage == "signed"
    assert str(result.plan.storage_trail[0].loc) == f"{spec}:3:21"
    zero_points = {t.name: t for t in result.model.graph.initializer}
    q_nodes = [n for n in result.model.graph.node if n.op_type == "QuantizeLinear"]
    assert q_nodes and all(zero_points[n.input[2]].data_type == onnx.TensorProto.INT8 for n in q_nodes)
    import onnxruntime as ort
    session = ort.InferenceSession(result.model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = calibration(model, 1)[0]
    got = session.run(None, feeds)[0]
    unsigned = rewriter.quantize(model, target="CPU", data=calibration(model)).model
    want = ort.InferenceSession(unsigned.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    # The same grids in another storage type: the same values.
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)



def linear_model(bias: np.ndarray) -> onnx.ModelProto:
    """x[2, 8] -> MatMul(w[8, 4]) -> Add(bias) -> y."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"], name="mm"),
             helper.make_node("Add", ["mm", "b"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(bias, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_bias_that_is_not_one_value_per_channel_is_not_planned_as_int32() -> None:
    """A bias with a value per element of the output ([2, N] here) stays float, and the plan says so up front;
    a [1, N] bias (as jax2tf exports write it) is a vector once normalized, and is planned as int32."""
    rng = np.random.default_rng(1)
    per_element = linear_model(rng.standard_normal((2, 4)).astype(np.float32))
    result = rewriter.quantize(per_element, target="ORT", data=calibration(per_element))
    assert result.plan.int32_biases == ()
    assert not [e for e in result.report["emitted_extra"] if e["role"] == "bias"]
    bias = rng.standard_normal(4).astype(np.float32)
    for vector in (linear_model(bias), linear_model(bias.reshape(1, 4))):
        planned = rewriter.quantize(vector, target="ORT", data=calibration(vector)).plan.int32_biases
        assert [b.node for b in planned] == ["mm"]
