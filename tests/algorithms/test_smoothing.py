"""Activation smoothing (SmoothQuant) against independent computations.

The model: x [N, 16] read by a MatMul (W1, 16 x 12), a Gemm with transB
(W2, 12 x 16) and an Add of a constant (a residual-like reader that must keep
reading x). Channel 3 of x is 40 times the others: one per-tensor scale
leaves the other channels a few levels. Checked with numpy and onnxruntime:
the scales from the formula applied by hand, the float function after
smoothing, the rewiring, and the quantized error through the pipeline.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from rewriter.algorithms.smoothing import (MIN_SPREAD, REDUCER, ChannelAbsMax, channel_scales, smooth,
                                           smoothing_groups, smoothing_reducers)
from rewriter.api import load_plan_inputs
from rewriter.calibrate.collect import collect_statistics
from rewriter.cli import main
from rewriter.errors import UserError
from rewriter.ir.edit import apply_weight_updates, insert_scales
from rewriter.ir.normalize import normalize
from rewriter.ir.tensors import initializer_arrays
from rewriter.ir.view import graph_view
from rewriter.match.planner import PlanOptions, build_plan
from rewriter.pipeline import QuantizeOptions, quantize

OUTLIER = 3


def _model(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.standard_normal((16, 12)) * 0.3).astype(np.float32), "w1"),
             numpy_helper.from_array((rng.standard_normal((12, 16)) * 0.3).astype(np.float32), "w2"),
             numpy_helper.from_array((rng.standard_normal(16) * 0.1).astype(np.float32), "shift")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["mm"], name="mm"),
             helper.make_node("Gemm", ["x", "w2"], ["gm"], name="gm", transB=1),
             helper.make_node("Add", ["x", "shift"], ["res"], name="res")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in
               (("mm", [1, 12]), ("gm", [1, 12]), ("res", [1, 16]))]
    graph = helper.make_graph(nodes, "smooth", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _samples(n: int, seed: int, outlier: float = 40.0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.standard_normal((1, 16)).astype(np.float32)
        x[:, OUTLIER] *= outlier
        out.append({"x": x})
    return out


def _plan(model: onnx.ModelProto, pass_nodes=()):
    inputs = load_plan_inputs("CPU")
    return build_plan(graph_view(model), inputs.spec, inputs.rules, PlanOptions(pass_nodes=pass_nodes), "m")


def _run(model: onnx.ModelProto, samples) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    runs = [session.run(None, s) for s in samples]
    return [np.concatenate([r[k] for r in runs]) for k in range(len(runs[0]))]


def _smoothed(samples, alpha: float = 0.8):
    model = normalize(_model()).model
    plan = _plan(model)
    groups = smoothing_groups(graph_view(model), plan)
    reducers = smoothing_reducers(groups)
    stats = collect_statistics(model, sorted(reducers), reducers, iter(samples)).stats
    weights = initializer_arrays(model, ["w1", "w2"])
    return model, groups, stats, weights, smooth(groups, stats, weights, alpha)


def test_groups_take_the_matmul_and_gemm_readers_but_not_the_add() -> None:
    model = normalize(_model()).model
    (group,) = smoothing_groups(graph_view(model), _plan(model))
    assert group.tensor == "x" and group.channels == 16
    assert [(r.node, r.weight, r.k_axis) for r in group.readers] == [("mm", "w1", 0), ("gm", "w2", 1)]


def test_scales_and_weights_equal_the_formula_applied_by_hand() -> None:
    samples = _samples(32, seed=1)
    _, _, _, weights, result = _smoothed(samples, alpha=0.8)
    x = np.concatenate([s["x"] for s in samples]).astype(np.float64)
    act_max = np.abs(x).max(axis=0)
    w1, w2 = weights["w1"].astype(np.float64), weights["w2"].astype(np.float64)
    weight_max = np.maximum(np.abs(w1).max(axis=1), np.abs(w2).max(axis=0))  # row k of W1, column k of W2
    expected = act_max ** 0.8 / weight_max ** 0.2
    (insertion,) = result.insertions
    np.testing.assert_allclose(1.0 / insertion.scale, expected, rtol=1e-5)
    np.testing.assert_allclose(result.updates["w1"], w1 * expected[:, None], rtol=1e-5)
    np.testing.assert_allclose(result.updates["w2"], w2 * expected[None, :], rtol=1e-5)
    assert insertion.readers == ("mm", "gm")
    (group,) = result.smoothed
    assert group["activation_spread_before"] > 20 and group["activation_spread_after"] < 5
    json.dumps(result.report())


def test_float_results_are_unchanged_and_only_the_smoothed_readers_are_rewired() -> None:
    samples = _samples(16, seed=2)
    model, _, _, _, result = _smoothed(samples)
    smoothed = insert_scales(apply_weight_updates(model, result.updates), result.insertions)
    onnx.checker.check_model(smoothed)
    readers = {n.name: list(n.input) for n in smoothed.graph.node}
    (insertion,) = result.insertions
    assert readers["mm"][0] == readers["gm"][0] == insertion.output and readers["res"][0] == "x"
    for before, after in zip(_run(model, samples), _run(smoothed, samples)):
        np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-4)


def test_the_inserted_mul_stays_float_and_the_readers_stay_quantized() -> None:
    samples = _samples(16, seed=3)
    model, _, _, _, result = _smoothed(samples)
    smoothed = insert_scales(apply_weight_updates(model, result.updates), result.insertions)
    (insertion,) = result.insertions
    plan = _plan(smoothed, ((insertion.node_name, "ActivationSmoothing"),))
    node = plan.node(insertion.node_name)
    assert node.status == "ignored" and "ActivationSmoothing" in node.reason
    assert plan.node("mm").status == plan.node("gm").status == "quantized"
    assert plan.point(insertion.output) is not None  # the smoothed activation is what gets quantized
    assert not any(c.node == insertion.node_name for p in plan.points for c in p.consumers)


def test_the_inserted_mul_names_the_pass_in_the_output_model() -> None:
    result = quantize(_model(), _samples(16, seed=3), QuantizeOptions(smoothing=0.8, subset_size=16))
    (inserted,) = result.inserted
    (mul,) = [n for n in result.model.graph.node if n.name == inserted.node]
    assert mul.op_type == "Mul"
    expected = [("rewriter.source", "edit by ActivationSmoothing @ <pass>")]
    assert [(p.key, p.value) for p in mul.metadata_props] == expected


def test_smoothing_cuts_the_quantization_error_of_an_outlier_channel_input() -> None:
    calib, held_out = _samples(32, seed=4), _samples(16, seed=5)
    reference = _run(_model(), held_out)

    def error(options: QuantizeOptions) -> float:
        got = _run(quantize(_model(), calib, options).model, held_out)
        return float(np.mean((got[0] - reference[0]) ** 2) + np.mean((got[1] - reference[1]) ** 2))

    # Without the fidelity guard, which would return the unsmoothed model's damaged layers to float.
    plain, smoothed = error(QuantizeOptions(guard=False)), error(QuantizeOptions(smoothing=0.8, guard=False))
    assert smoothed < 0.5 * plain, (plain, smoothed)  # measured: 3x less


def test_no_outlier_channels_no_smoothing() -> None:
    samples = _samples(16, seed=6, outlier=1.0)
    _, _, _, _, result = _smoothed(samples)
    assert result.insertions == () and result.updates == {}
    (group,) = result.groups
    assert "no outlier channels" in group["skipped"] and f"< {MIN_SPREAD:g}" in group["skipped"]
    out = quantize(_model(), samples, QuantizeOptions(smoothing=0.8))
    assert not any(n.op_type == "Mul" for n in out.model.graph.node if n.name.endswith("_smooth_mul"))


def test_channel_scales_keep_one_where_a_maximum_is_zero() -> None:
    scale = channel_scales(np.array([4.0, 0.0, 9.0]), np.array([1.0, 2.0, 0.0]), 0.5)
    np.testing.assert_allclose(scale, [2.0, 1.0, 1.0])


def test_channel_abs_max_reduces_all_but_the_batch_and_last_axes() -> None:
    x = np.random.default_rng(7).normal(size=(3, 5, 4))
    np.testing.assert_allclose(ChannelAbsMax()(x), np.abs(x).max(axis=1))
    assert ChannelAbsMax().name == REDUCER


def test_pipeline_reports_smoothing_and_is_deterministic() -> None:
    samples = _samples(16, seed=8)
    first = quantize(_model(), samples, QuantizeOptions(smoothing=0.8))
    second = quantize(_model(), samples, QuantizeOptions(smoothing=0.8))
    assert first.model.SerializeToString() == second.model.SerializeToString()
    (entry,) = first.report["passes"]["smoothing"]["smoothed"]
    assert entry["tensor"] == "x" and entry["readers"] == ["mm", "gm"]


def test_alpha_outside_zero_one_is_a_user_error() -> None:
    with pytest.raises(UserError, match="between 0 and 1"):
        QuantizeOptions(smoothing=1.5)


def test_cli_flag_and_config_key(tmp_path, capsys) -> None:
    model_path, data = tmp_path / "m.onnx", tmp_path / "calib"
    onnx.save(_model(), model_path)
    data.mkdir()
    for i, s in enumerate(_samples(8, seed=9)):
        np.save(data / f"{i}.npy", s["x"])
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"compression": {"algorithms": [
        {"name": "DefaultQuantization", "params": {"preset": "performance", "smoothing_alpha": 0.7}}]}}))
    for args, alpha in ((["--smoothing"], 0.8), (["--config", str(config)], 0.7),
                        (["--config", str(config), "--smoothing", "0.9"], 0.9)):
        report = tmp_path / "r.json"
        code = main(["quantize", str(model_path), "-o", str(tmp_path / "q.onnx"), "--data", str(data),
                     "--report", str(report), *args])
        assert code == 0, capsys.readouterr().err
        assert json.loads(report.read_text())["passes"]["smoothing"]["alpha"] == alpha


def test_report_lists_skipped_tensors_apart_from_smoothed_ones() -> None:
    _, _, _, _, result = _smoothed(_samples(16, seed=10, outlier=1.0))
    report = result.report()
    assert report["smoothed"] == [] and [g["tensor"] for g in report["skipped"]] == ["x"]
