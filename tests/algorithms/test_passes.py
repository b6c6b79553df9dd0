"""The pass contract (rewriter.passes) and how the pipeline runs the passes."""
from __future__ import annotations

from pathlib import Path

import pytest

import rewriter.pipeline as pipeline
from rewriter.api import load_plan_inputs
from rewriter.calibrate.data import model_inputs, open_data
from rewriter.cli import main
from rewriter.ir.view import graph_view
from rewriter.passes import (BiasCorrectionPass, ChannelAlignmentPass, LayerwiseTuningPass, Pass, PassContext,
                             PassContractError, PassResult, SmoothingPass, enabled_passes)
from rewriter.match.planner import PlanOptions, build_plan
from rewriter.pipeline import QuantizeOptions, quantize
from tests.models import GraphBuilder, _f32, random_inputs

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _matmul_without_bias():
    b = GraphBuilder(3)
    mm = b.node("MatMul", ["x", b.weight("w", (16, 8))], "mm")
    b.node("Relu", [mm], "y")
    return b.model([_f32("x", (4, 16))], [_f32("y", (4, 8))], "matmul_without_bias")


def _context(model, **extra) -> PassContext:
    inputs = load_plan_inputs("CPU", (), None)
    plan = build_plan(graph_view(model), inputs.spec, inputs.rules, PlanOptions(), "m")
    data = open_data(random_inputs(model, 2), model_inputs(model))
    return PassContext(model, graph_view(model), plan, data, (0, 1), QuantizeOptions(), **extra)


def test_enabled_passes_follow_the_options_in_running_order() -> None:
    everything = QuantizeOptions(smoothing=0.5, channel_alignment=True, bias_correction="full", layerwise_tuning=True)
    passes = enabled_passes(everything)
    assert [type(p) for p in passes] == [SmoothingPass, ChannelAlignmentPass, BiasCorrectionPass, LayerwiseTuningPass]
    assert [p.phase for p in passes] == ["float", "float", "quantized", "quantized"]
    assert [p.name for p in passes] == ["smoothing", "channel_alignment", "bias_correction", "layerwise_tuning"]
    assert passes[2].title == "BiasCorrection"
    assert enabled_passes(QuantizeOptions()) == ()
    (fast,) = enabled_passes(QuantizeOptions(bias_correction="fast"))
    assert fast.title == "FastBiasCorrection"


def test_a_quantized_pass_requires_the_statistics_and_ranges() -> None:
    with pytest.raises(PassContractError, match="statistics, ranges, float_model"):
        LayerwiseTuningPass()(_context(_matmul_without_bias()))


def test_a_float_pass_may_not_return_ranges() -> None:
    class Cheat(Pass):
        name, title, phase = "cheat", "Cheat", "float"

        def call(self, context: PassContext) -> PassResult:
            return PassResult(context.model, {}, ranges={"w": None})  # type: ignore[dict-item]

    with pytest.raises(PassContractError, match="before the ranges exist"):
        Cheat()(_context(_matmul_without_bias()))


def test_inserted_nodes_come_back_with_the_pass_that_made_them() -> None:
    model = _matmul_without_bias()
    result = quantize(model, random_inputs(model, 8, seed=1), QuantizeOptions(bias_correction="fast", subset_size=8))
    assert result.report["passes"]["bias_correction"]["created"] == ["mm"]
    assert [(n.node, n.op_type, n.made_by) for n in result.inserted] == [("mm_bias", "Add", "FastBiasCorrection")]
    (add,) = [n for n in result.model.graph.node if n.name == "mm_bias"]
    # The node names its maker in the output model too.
    expected = [("rewriter.source", "edit by FastBiasCorrection @ <pass>")]
    assert [(p.key, p.value) for p in add.metadata_props] == expected


def test_passes_are_timed_under_their_names() -> None:
    model = _matmul_without_bias()
    options = QuantizeOptions(channel_alignment=True, bias_correction="fast", layerwise_tuning=True, subset_size=4)
    timings = quantize(model, random_inputs(model, 4), options).report["timings_s"]
    assert list(timings) == ["load_normalize", "plan", "channel_alignment", "statistics", "ranges",
                             "bias_correction", "layerwise_tuning", "emit", "errors", "speed_guard", "self_check"]


def test_an_emission_value_error_is_an_internal_error_not_bad_input(tmp_path, monkeypatch, capsys) -> None:
    def broken(*args, **kwargs):
        raise ValueError("a plan/ranges mismatch")

    monkeypatch.setattr(pipeline, "emit_qdq", broken)
    code = main(["quantize", str(EXAMPLES / "tiny_cnn.onnx"), "-o", str(tmp_path / "out.onnx"),
                 "--data", str(EXAMPLES / "calib"), "--subset-size", "2"])
    err = capsys.readouterr().err
    assert code == 1 and "internal error: ValueError: a plan/ranges mismatch" in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_bias_added_by_a_pass_is_named_in_the_plan() -> None:
    """The plan returned by a run names the bias correction's new bias in its int32-bias entry, with the pass in
    the trail, so the output's int32 bias DequantizeLinear is one the plan declares."""
    model = _matmul_without_bias()
    result = quantize(model, random_inputs(model, 8, seed=1), QuantizeOptions(bias_correction="fast", subset_size=8))
    (entry,) = [b for b in result.plan.int32_biases if b.node == "mm"]
    assert entry.bias and entry.trail[-1].action == "edit" and entry.trail[-1].source == "FastBiasCorrection"
    stored = {t.name: t.data_type for t in result.model.graph.initializer}
    assert stored[f"{entry.bias}_quantized"] == 6  # onnx.TensorProto.INT32: the added bias is stored as planned
