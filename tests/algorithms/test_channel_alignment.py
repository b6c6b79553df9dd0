"""ActivationChannelAlignment against independent computations.

The main model is Conv -> Conv whose producer's output channels span ranges
100, 1, 0.01 and 1 times a base range, and whose consumer undoes those factors
on its input channels: in float it is a balanced network, but a per-tensor
FakeQuantize between the two convolutions rounds the small channels away.
Everything is checked with onnxruntime and numpy, not with the pipeline:
the float function after alignment, the channel ranges, the 8-bit error, and
the scales from the formula applied by hand to the collected statistics.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from rewriter.algorithms.channel_alignment import (ALIGN_MAX, ALIGN_MIN, AlignmentPair, align_channels,
                                                   alignment_pairs, alignment_reducers, alignment_rejections,
                                                   channel_scales)
from rewriter.algorithms.fq_math import fake_quantize
from rewriter.algorithms.minmax import sqnr_db
from rewriter.api import load_plan_inputs
from rewriter.calibrate.collect import collect_statistics
from rewriter.ir.edit import apply_weight_updates
from rewriter.ir.normalize import normalize
from rewriter.ir.tensors import initializer_arrays
from rewriter.ir.view import graph_view
from rewriter.match.planner import PlanOptions, build_plan

FACTORS = np.array([100.0, 1.0, 0.01, 1.0])  # producer output channel c is FACTORS[c] times the balanced one
MEANS = np.array([3.0, -1.0, 0.5, 2.0])  # balanced per-channel offsets (biases), scaled like the channels


# ----------------------------------------------------------------------------- building models


def _model(nodes: Sequence[onnx.NodeProto], inits: dict[str, np.ndarray], x_shape: Sequence[int | str],
           outputs: Sequence[str]) -> onnx.ModelProto:
    graph = helper.make_graph(
        list(nodes), "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [onnx.ValueInfoProto(name=o) for o in outputs],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    normalized = normalize(model).model
    onnx.checker.check_model(normalized)
    return normalized


def _conv_conv(k_out: int = 3, *, seed: int = 0, **consumer_attrs: object) -> onnx.ModelProto:
    """x (n,3,16,16) -> conv1 3x3 pad 1 (4 ch, channel factors 100,1,0.01,1) -> conv2 k_out x k_out (6 ch) -> y."""
    rng = np.random.default_rng(seed)
    f = FACTORS[:, None, None, None]
    w1 = rng.standard_normal((4, 3, 3, 3)) * np.sqrt(2 / 27) * f
    b1 = MEANS * FACTORS
    w2 = rng.standard_normal((6, 4, k_out, k_out)) * np.sqrt(2 / (4 * k_out * k_out)) / FACTORS[None, :, None, None]
    b2 = rng.standard_normal(6) * 0.1
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c1", "w2", "b2"], ["y"], name="conv2", **consumer_attrs)]
    return _model(nodes, {"w1": w1, "b1": b1, "w2": w2, "b2": b2}, ["n", 3, 16, 16], ["y"])


def _samples(n: int, shape: Sequence[int] = (1, 3, 16, 16), seed: int = 1) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(n)]


def _plan(model: onnx.ModelProto, ignore_scope: tuple[str, ...] = ()):
    inputs = load_plan_inputs("CPU")
    return build_plan(graph_view(model), inputs.spec, inputs.rules, PlanOptions("performance", ignore_scope, ()), "m")


def _pairs(model: onnx.ModelProto, plan: bool = True) -> tuple[tuple[AlignmentPair, ...], dict[str, str]]:
    view = graph_view(model)
    p = _plan(model) if plan else None
    return alignment_pairs(view, p), alignment_rejections(view, p)


def _align(model: onnx.ModelProto, samples: list[dict[str, np.ndarray]], plan: bool = True):
    pairs, _ = _pairs(model, plan)
    reducers = alignment_reducers(pairs)
    stats = collect_statistics(model, sorted(reducers), reducers, iter(samples)).stats
    names = [n for p in pairs for n in (p.w_in, p.b_in, p.w_out, p.b_out) if n]
    result = align_channels(pairs, stats, initializer_arrays(model, names))
    return pairs, stats, result, apply_weight_updates(model, result.updates)


def _run(model: onnx.ModelProto, x: np.ndarray, tensors: Sequence[str] = ()) -> list[np.ndarray]:
    """The model's outputs followed by the named intermediate tensors (exposed on a copy)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.output.extend(onnx.ValueInfoProto(name=t) for t in tensors)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def _batch(samples: list[dict[str, np.ndarray]]) -> np.ndarray:
    return np.concatenate([s["x"] for s in samples])


def _max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(a)))


@pytest.fixture(scope="module")
def aligned():
    model = _conv_conv()
    calib = _samples(32)
    pairs, stats, result, new = _align(model, calib)
    return model, calib, pairs, stats, result, new


# ----------------------------------------------------------------------------- the main model


def test_conv_conv_pair_names_initializers_and_axes(aligned) -> None:
    _, _, pairs, _, _, _ = aligned
    assert pairs == (AlignmentPair("conv1", "conv2", "c1", 1, 4, "w1", 0, "w2", 1, 0, "b1", "b2"),)


def test_float_results_unchanged_up_to_rounding(aligned) -> None:
    model, calib, _, _, result, new = aligned
    assert set(result.updates) == {"w1", "b1", "w2", "b2"}
    x = _batch(_samples(16, seed=7))  # fresh data, not the calibration set
    before, after = _run(model, x)[0], _run(new, x)[0]
    diff = _max_rel_diff(before, after)
    print(f"conv->conv: max |y - y_aligned| = {np.max(np.abs(before - after)):.3g} "
          f"(max |y| = {np.max(np.abs(before)):.3g}, relative {diff:.2g})")
    assert diff < 1e-5


def _channel_ranges(act: np.ndarray) -> np.ndarray:
    flat = np.moveaxis(act, 1, 0).reshape(act.shape[1], -1)
    return flat.max(axis=1) - flat.min(axis=1)


def test_aligned_channel_ranges_are_close_to_each_other(aligned) -> None:
    model, _, _, _, result, new = aligned
    x = _batch(_samples(16, seed=7))
    before = _channel_ranges(_run(model, x, ["c1"])[1])
    after = _channel_ranges(_run(new, x, ["c1"])[1])
    print(f"channel ranges before {before.round(4).tolist()}, after {after.round(4).tolist()}")
    assert before.max() / before.min() > 1e3
    assert after.max() / after.min() < 1.5
    record = result.pairs[0]
    assert record.range_spread_before > 1e3 and record.range_spread_after == pytest.approx(1.0, abs=1e-6)


def _fq_symmetric_per_tensor(act: np.ndarray, calib_act: np.ndarray) -> np.ndarray:
    """8-bit signed symmetric per-tensor FakeQuantize, range = max |x| over the calibration activations."""
    m = float(np.max(np.abs(calib_act)))
    return fake_quantize(act, -m * 128 / 127, m, 256)


def _consumer_only(model: onnx.ModelProto) -> onnx.ModelProto:
    """conv2 alone, reading its input from the graph input "x" (its weights from ``model``)."""
    w = initializer_arrays(model, ["w2", "b2"])
    node = helper.make_node("Conv", ["x", "w2", "b2"], ["y"], name="conv2")
    return _model([node], w, ["n", 4, 16, 16], ["y"])


def test_per_tensor_8bit_error_of_the_activation_drops(aligned) -> None:
    model, calib, _, _, _, new = aligned
    x_cal, x = _batch(calib), _batch(_samples(16, seed=7))
    report = {}
    for label, m in (("before", model), ("after", new)):
        act_cal, act = _run(m, x_cal, ["c1"])[1], _run(m, x, ["c1"])[1]
        fq = _fq_symmetric_per_tensor(act, act_cal)
        per_channel = [sqnr_db(act[:, c], fq[:, c]) for c in range(act.shape[1])]
        consumer = _consumer_only(m)
        y, y_q = _run(consumer, act)[0], _run(consumer, fq)[0]
        report[label] = {"tensor": sqnr_db(act, fq), "worst_channel": min(per_channel),
                         "channels": per_channel, "consumer_output": sqnr_db(y, y_q)}
    print({k: {n: (np.round(v, 2).tolist() if isinstance(v, list) else round(v, 2)) for n, v in r.items()}
           for k, r in report.items()})
    before, after = report["before"], report["after"]
    assert before["worst_channel"] < 5.0 < 35.0 < after["worst_channel"]
    assert after["consumer_output"] > before["consumer_output"] + 20.0
    assert after["consumer_output"] > 35.0


def test_scales_and_updates_match_the_formula_on_the_collected_statistics(aligned) -> None:
    model, calib, pairs, stats, result, _ = aligned
    # The statistics themselves: per-sample per-channel quantiles of the activation, by numpy.
    act = np.concatenate([_run(model, s["x"], ["c1"])[1] for s in calib])
    lows = np.array([[np.quantile(a[c].astype(np.float64), 1e-4) for c in range(4)] for a in act])
    highs = np.array([[np.quantile(a[c].astype(np.float64), 1 - 1e-4) for c in range(4)] for a in act])
    # The collector runs onnxruntime's fused, batched kernels: float32 rounding of each channel's scale.
    tolerance = 1e-6 * np.abs(act).max(axis=(0, 2, 3))
    assert np.all(np.abs(stats["c1"][ALIGN_MIN] - lows) <= tolerance)
    assert np.all(np.abs(stats["c1"][ALIGN_MAX] - highs) <= tolerance)

    # The formula, by hand on the collected statistics.
    amin, amax = np.median(stats["c1"][ALIGN_MIN], axis=0), np.median(stats["c1"][ALIGN_MAX], axis=0)
    ranges = amax - amin
    reference = sorted(r for r in ranges if r > 0)
    mid = len(reference) // 2
    median = reference[mid] if len(reference) % 2 else (reference[mid - 1] + reference[mid]) / 2
    s = np.array([min(max(r / median, 0.01), 100.0) if r > 0 else 1.0 for r in ranges])
    amean = (amax + amin) / 2
    np.testing.assert_allclose(result.pairs[0].scale, s, rtol=1e-12)
    np.testing.assert_allclose(result.pairs[0].shift, amean, rtol=1e-12)
    assert result.pairs[0].scale_min == pytest.approx(s.min()) and result.pairs[0].scale_max == pytest.approx(s.max())
    assert result.pairs[0].mean_shift_max == pytest.approx(np.abs(amean).max())

    w = initializer_arrays(model, ["w1", "b1", "w2", "b2"])
    w64 = {k: v.astype(np.float64) for k, v in w.items()}
    expect_b2 = w64["b2"].copy()
    for o in range(6):
        for i in range(4):
            expect_b2[o] += w64["w2"][o, i].sum() * amean[i]
    expect = {"w1": w64["w1"] / s[:, None, None, None], "b1": (w64["b1"] - amean) / s,
              "w2": w64["w2"] * s[None, :, None, None], "b2": expect_b2}
    for name, value in expect.items():
        assert result.updates[name].dtype == np.float32 and result.updates[name].shape == w[name].shape
        np.testing.assert_allclose(result.updates[name], value, rtol=1e-6, atol=1e-6 * np.abs(value).max())


def test_channel_scales_clip_and_keep_degenerate_channels() -> None:
    amin = np.array([-1.0, -1e-6, 0.0, 2.0, -500.0, -1.0])
    amax = np.array([1.0, 1e-6, 0.0, 1.0, 500.0, 3.0])
    # ranges 2, 2e-6, 0, -1, 1000, 4 -> positive median 3
    assert channel_scales(amin, amax).tolist() == pytest.approx([2 / 3, 0.01, 1.0, 1.0, 100.0, 4 / 3])
    assert channel_scales(np.zeros(3), np.zeros(3)).tolist() == [1.0, 1.0, 1.0]


def test_report_is_plain_data(aligned) -> None:
    *_, result, _ = aligned
    report = result.report()
    assert report["skipped"] == [] and report["aligned"][0]["producer"] == "conv1"
    assert report["aligned"][0]["means_applied"] is True
    assert result.rescaled_consumers == ("conv2",)


# ----------------------------------------------------------------------------- other exact shapes


def _exact(model: onnx.ModelProto, shape: Sequence[int] = (1, 3, 16, 16), pairs_expected: int = 1) -> float:
    pairs, _, result, new = _align(model, _samples(12, shape))
    assert len(pairs) == pairs_expected and len(result.pairs) == pairs_expected
    x = _batch(_samples(6, shape, seed=9))
    diff = _max_rel_diff(_run(model, x)[0], _run(new, x)[0])
    assert diff < 1e-5
    return diff


def test_bias_add_after_the_producer_is_its_bias() -> None:
    rng = np.random.default_rng(3)
    w1 = rng.standard_normal((4, 3, 3, 3)) * FACTORS[:, None, None, None]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["badd", "c1"], ["a1"], name="add1"),
             helper.make_node("Conv", ["a1", "w2", "b2"], ["y"], name="conv2")]
    model = _model(nodes, {"w1": w1, "badd": (MEANS * FACTORS).reshape(1, 4, 1, 1),
                           "w2": rng.standard_normal((5, 4, 1, 1)), "b2": rng.standard_normal(5)},
                   ["n", 3, 16, 16], ["y"])
    (pair,), _ = _pairs(model)
    assert (pair.tensor, pair.b_in, pair.b_out) == ("a1", "badd", "b2")
    _exact(model)


def test_without_a_bias_only_the_scales_apply() -> None:
    rng = np.random.default_rng(4)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c1", "w2", "b2"], ["y"], name="conv2", kernel_shape=[3, 3])]
    model = _model(nodes, {"w1": rng.standard_normal((4, 3, 3, 3)) * FACTORS[:, None, None, None],
                           "w2": rng.standard_normal((5, 4, 3, 3)), "b2": rng.standard_normal(5)},
                   ["n", 3, 16, 16], ["y"])
    _, _, result, _ = _align(model, _samples(8))
    record = result.pairs[0]
    assert not record.means_applied and record.mean_shift_max == 0.0 and set(result.updates) == {"w1", "w2"}
    _exact(model)


def test_a_chain_of_three_convolutions_is_two_pairs_and_stays_exact() -> None:
    rng = np.random.default_rng(5)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c1", "w2", "b2"], ["c2"], name="conv2"),
             helper.make_node("Conv", ["c2", "w3", "b3"], ["c3"], name="conv3"),
             helper.make_node("Relu", ["c3"], ["y"], name="relu")]
    model = _model(nodes, {"w1": rng.standard_normal((4, 3, 3, 3)) * FACTORS[:, None, None, None],
                           "b1": MEANS * FACTORS,
                           "w2": rng.standard_normal((4, 4, 1, 1)) / FACTORS[None, :, None, None],
                           "b2": np.array([10.0, -0.1, 0.0, 1.0]), "w3": rng.standard_normal((2, 4, 1, 1)),
                           "b3": rng.standard_normal(2)}, ["n", 3, 16, 16], ["y"])
    pairs, _ = _pairs(model)
    assert [(p.producer, p.consumer) for p in pairs] == [("conv1", "conv2"), ("conv2", "conv3")]
    _exact(model, pairs_expected=2)


def test_matmul_add_matmul_add_as_in_transformers() -> None:
    rng = np.random.default_rng(6)
    f = np.array([50.0, 1.0, 0.02, 1.0, 3.0])
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m1"], name="fc1"),
             helper.make_node("Add", ["m1", "b1"], ["a1"], name="fc1_bias"),
             helper.make_node("MatMul", ["a1", "w2"], ["m2"], name="fc2"),
             helper.make_node("Add", ["m2", "b2"], ["y"], name="fc2_bias")]
    model = _model(nodes, {"w1": rng.standard_normal((8, 5)) * f, "b1": rng.standard_normal(5) * f,
                           "w2": rng.standard_normal((5, 3)), "b2": rng.standard_normal((1, 1, 3))},
                   ["n", 6, 8], ["y"])
    (pair,), _ = _pairs(model)
    assert pair == AlignmentPair("fc1", "fc2", "a1", -1, 5, "w1", 1, "w2", 0, 1, "b1", "b2")
    _, _, result, _ = _align(model, _samples(12, (1, 6, 8)))
    assert result.pairs[0].means_applied and result.pairs[0].range_spread_before > 100
    _exact(model, (1, 6, 8))


def test_gemm_to_gemm_honours_trans_b_alpha_and_beta() -> None:
    rng = np.random.default_rng(7)
    f = np.array([100.0, 1.0, 0.01, 2.0])
    nodes = [helper.make_node("Gemm", ["x", "w1", "c1"], ["g1"], name="gemm1", transB=1, alpha=0.5, beta=2.0),
             helper.make_node("Gemm", ["g1", "w2", "c2"], ["y"], name="gemm2", alpha=1.5, beta=0.25)]
    model = _model(nodes, {"w1": rng.standard_normal((4, 6)) * f[:, None], "c1": rng.standard_normal(4) * f,
                           "w2": rng.standard_normal((4, 3)), "c2": rng.standard_normal((1, 3))},
                   ["n", 6], ["y"])
    (pair,), _ = _pairs(model)
    assert (pair.w_in_axis, pair.w_out_axis, pair.w_out_out_axis) == (0, 0, 1)
    assert (pair.b_in_factor, pair.b_out_factor) == (0.5, 6.0)
    pairs, stats, result, new = _align(model, _samples(10, (8, 6)))
    record = result.pairs[0]
    assert record.means_applied and record.scale_max > 10 and record.pooled
    x = _batch(_samples(4, (8, 6), seed=9))
    assert _max_rel_diff(_run(model, x)[0], _run(new, x)[0]) < 1e-5

    # One value per channel per sample: the ranges come from quantiles over the samples (each row is one).
    g1 = _run(model, _batch(_samples(10, (8, 6))), ["g1"])[1].astype(np.float64)
    assert stats["g1"][ALIGN_MIN].shape == (80, 4)
    np.testing.assert_allclose(stats["g1"][ALIGN_MIN], g1, rtol=1e-5)
    amin, amax = np.quantile(g1, 1e-4, axis=0), np.quantile(g1, 1 - 1e-4, axis=0)
    ranges = amax - amin
    s = np.clip(ranges / np.median(ranges), 0.01, 100)
    np.testing.assert_allclose(record.scale, s, rtol=1e-4)
    np.testing.assert_allclose(record.shift, (amax + amin) / 2, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- no pair


def _relu_between() -> onnx.ModelProto:
    rng = np.random.default_rng(8)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["y"], name="conv2")]
    return _model(nodes, {"w1": rng.standard_normal((4, 3, 3, 3)), "b1": rng.standard_normal(4),
                          "w2": rng.standard_normal((4, 4, 1, 1)), "b2": rng.standard_normal(4)},
                  ["n", 3, 16, 16], ["y"])


def _branching(graph_output: bool) -> onnx.ModelProto:
    rng = np.random.default_rng(9)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c1", "w2", "b2"], ["y"], name="conv2")]
    outputs = ["y", "c1"]
    if not graph_output:
        nodes.append(helper.make_node("MaxPool", ["c1"], ["p1"], name="pool", kernel_shape=[2, 2]))
        outputs = ["y", "p1"]
    return _model(nodes, {"w1": rng.standard_normal((4, 3, 3, 3)), "b1": rng.standard_normal(4),
                          "w2": rng.standard_normal((4, 4, 1, 1)), "b2": rng.standard_normal(4)},
                  ["n", 3, 16, 16], outputs)


def _shared_weight() -> onnx.ModelProto:
    rng = np.random.default_rng(10)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c1", "w2", "b2"], ["c2"], name="conv2"),
             helper.make_node("Conv", ["c2", "w2", "b2"], ["y"], name="conv3")]
    return _model(nodes, {"w1": rng.standard_normal((4, 3, 3, 3)), "b1": rng.standard_normal(4),
                          "w2": rng.standard_normal((4, 4, 1, 1)), "b2": rng.standard_normal(4)},
                  ["n", 3, 16, 16], ["y"])


def _conv_to_matmul() -> onnx.ModelProto:
    rng = np.random.default_rng(11)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("MatMul", ["c1", "w2"], ["y"], name="mm")]
    return _model(nodes, {"w1": rng.standard_normal((4, 3, 3, 3)), "b1": rng.standard_normal(4),
                          "w2": rng.standard_normal((16, 4))}, ["n", 3, 16, 16], ["y"])


NO_PAIR = {
    "activation function between": (_relu_between, "goes to Relu relu1"),
    "grouped consumer": (lambda: _conv_conv(1, group=2), "group 2"),
    "strided consumer": (lambda: _conv_conv(1, strides=[2, 2]), "strides [2, 2]"),
    "dilated consumer": (lambda: _conv_conv(3, dilations=[2, 2]), "dilations [2, 2]"),
    "padded consumer": (lambda: _conv_conv(3, pads=[1, 1, 1, 1]), "pads [1, 1, 1, 1]"),
    "auto-padded consumer": (lambda: _conv_conv(3, auto_pad="SAME_UPPER"), "auto_pad SAME_UPPER"),
    "producer output branches": (lambda: _branching(False), "read by 2 nodes"),
    "producer output is a graph output": (lambda: _branching(True), "graph output"),
    "weight shared with another layer": (_shared_weight, "shared by 2 readers"),
    "channel axes differ": (_conv_to_matmul, "not directly to a Conv"),
}


@pytest.mark.parametrize("case", sorted(NO_PAIR))
def test_no_pair(case: str) -> None:
    build, reason = NO_PAIR[case]
    model = build()
    for plan in (True, False):
        pairs, rejected = _pairs(model, plan)
        assert [p for p in pairs if p.producer == "conv1"] == []
        assert reason in rejected["conv1"], rejected["conv1"]


def test_a_one_by_one_consumer_with_auto_pad_same_reads_no_padding() -> None:
    (pair,), _ = _pairs(_conv_conv(1, auto_pad="SAME_UPPER"))
    assert pair.consumer == "conv2"


def test_plan_vetoes_ignored_layers() -> None:
    model = _conv_conv()
    view = graph_view(model)
    assert len(alignment_pairs(view, _plan(model))) == 1
    plan = _plan(model, ignore_scope=("conv2",))
    assert alignment_pairs(view, plan) == ()
    assert "conv2 is kept float" in alignment_rejections(view, plan)["conv1"]


def test_non_finite_statistics_leave_the_pair_alone() -> None:
    model = _conv_conv()
    pairs, _ = _pairs(model)
    stats = {"c1": {ALIGN_MIN: np.full((3, 4), -np.inf), ALIGN_MAX: np.ones((3, 4))}}
    result = align_channels(pairs, stats, initializer_arrays(model, ["w1", "b1", "w2", "b2"]))
    assert result.updates == {} and result.pairs == ()
    assert result.skipped == (("conv1", "statistics of c1 are not finite"),)
    with pytest.raises(KeyError, match="no alignment statistics"):
        align_channels(pairs, {}, {})


def test_reducers_are_per_sample_per_channel() -> None:
    pairs, _ = _pairs(_conv_conv())
    reducers = alignment_reducers(pairs)["c1"]
    assert [r.name for r in reducers] == [ALIGN_MIN, ALIGN_MAX] and all(r.name.startswith("align:") for r in reducers)
    x = np.random.default_rng(0).standard_normal((5, 4, 7, 7))
    lo, hi = (r(x) for r in reducers)
    assert lo.shape == hi.shape == (5, 4)
    assert hi[2, 3] == pytest.approx(np.quantile(x[2, 3], 1 - 1e-4))
    assert lo[2, 3] == pytest.approx(np.quantile(x[2, 3], 1e-4))
