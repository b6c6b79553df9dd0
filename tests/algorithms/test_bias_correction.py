"""FastBiasCorrection and BiasCorrection against independent numpy computations.

The models are built so that weight quantization visibly shifts the output
mean: per output channel one large weight sets the 8-bit scale and the others
are small positives below half a step, so they all round to 0 and the output
of a positive input loses sum(small) * mean(input) (or coarse 4-bit weights).
Expected values come from brute-force numpy convolutions and matmuls on
fake-quantized inputs and weights (a local FakeQuantize formula, no
onnxruntime); the "moves towards float" checks run the emitted QDQ model in
onnxruntime on held-out samples.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from rewriter.algorithms.bias_correction import (BiasTarget, ChannelMean, bias_constants, bias_correction,
                                                 bias_correction_subset, bias_reducers, bias_targets,
                                                 fast_bias_correction)
from rewriter.algorithms.minmax import activation_ranges, activation_reducers, weight_ranges
from rewriter.algorithms.types import TensorRange
from rewriter.api import load_plan_inputs
from rewriter.calibrate.collect import collect_statistics
from rewriter.calibrate.layer_runner import LayerRunner
from rewriter.emit.qdq import emit_qdq
from rewriter.errors import UserError
from rewriter.ir.edit import apply_weight_updates
from rewriter.ir.normalize import normalize
from rewriter.ir.tensors import initializer_arrays
from rewriter.ir.view import graph_view
from rewriter.match.planner import PlanOptions, build_plan
from rewriter.plan import QuantPlan
from rewriter.spec.model import QuantizerConfig

# --------------------------------------------------------------------------------------------
# Models


def _model(nodes, inits, inputs, outputs) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in inputs.items()],
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in outputs.items()],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m, full_check=True)
    return m


def _skewed(rng: np.random.Generator, rows: int, fan_in: int) -> np.ndarray:
    """Per row: one weight of +-1 sets the 8-bit scale (1/127); the rest lie in (0, 0.45) of a step and round to 0."""
    w = rng.uniform(0.05, 0.45, (rows, fan_in)) / 127.0
    w[np.arange(rows), rng.integers(0, fan_in, rows)] = rng.choice([-1.0, 1.0], rows)
    return w


def conv_model(bias: bool | str = True, seed: int = 0) -> onnx.ModelProto:
    """input [1, 8, 8, 8] -> conv (8->4, 3x3, pad 1) [-> + bias] -> output. bias="add": a following Add of [1,4,1,1]."""
    rng = np.random.default_rng(seed)
    w = _skewed(rng, 4, 8 * 9).reshape(4, 8, 3, 3)
    b = np.array([0.5, -0.4, 0.3, 0.6])
    inits = {"conv.weight": w}
    ins = ["input", "conv.weight"]
    nodes = []
    if bias is True:
        inits["conv.bias"] = b
        ins.append("conv.bias")
    conv_out = "output" if bias in (True, False) else "conv"
    nodes.append(helper.make_node("Conv", ins, [conv_out], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
    if bias == "add":
        inits["conv.add_bias"] = b.reshape(1, 4, 1, 1)
        nodes.append(helper.make_node("Add", ["conv", "conv.add_bias"], ["output"], name="bias_add"))
    return _model(nodes, inits, {"input": [1, 8, 8, 8]}, {"output": [1, 4, 8, 8]})


def matmul_model(bias: bool = True, seed: int = 1) -> onnx.ModelProto:
    """input [1, 4, 32] -> fc (MatMul by [32, 6]) [-> fc_add (+ bias [6])] -> output."""
    rng = np.random.default_rng(seed)
    inits = {"fc.weight": _skewed(rng, 6, 32).T}
    nodes = [helper.make_node("MatMul", ["input", "fc.weight"], ["fc" if bias else "output"], name="fc")]
    if bias:
        inits["fc.bias"] = np.array([0.3, -0.5, 0.4, 0.2, -0.6, 0.5])
        nodes.append(helper.make_node("Add", ["fc", "fc.bias"], ["output"], name="fc_add"))
    return _model(nodes, inits, {"input": [1, 4, 32]}, {"output": [1, 4, 6]})


def gemm_model(beta: float = 0.5, seed: int = 2) -> onnx.ModelProto:
    """input [1, 32] -> Gemm(transB=1, beta) with weight [6, 32] and C [6] -> output [1, 6]."""
    rng = np.random.default_rng(seed)
    inits = {"gemm.weight": _skewed(rng, 6, 32), "gemm.bias": np.array([0.6, -0.5, 0.4, 0.8, -0.6, 0.5])}
    node = helper.make_node("Gemm", ["input", "gemm.weight", "gemm.bias"], ["output"], name="gemm", transB=1,
                            beta=beta)
    return _model([node], inits, {"input": [1, 32]}, {"output": [1, 6]})


def two_layer_model(seed: int = 3) -> onnx.ModelProto:
    """input [1, 4, 16] -> fc1 (MatMul [16,16]) -> fc1_add -> relu -> fc2 (MatMul [16,8]) -> fc2_add -> output."""
    rng = np.random.default_rng(seed)
    inits = {"fc1.weight": rng.normal(0.0, 0.3, (16, 16)),
             "fc1.bias": rng.uniform(0.2, 0.6, 16) * rng.choice([-1, 1], 16),
             "fc2.weight": rng.normal(0.05, 0.3, (16, 8)),
             "fc2.bias": rng.uniform(0.2, 0.6, 8) * rng.choice([-1, 1], 8)}
    nodes = [helper.make_node("MatMul", ["input", "fc1.weight"], ["fc1"], name="fc1"),
             helper.make_node("Add", ["fc1", "fc1.bias"], ["fc1_add"], name="fc1_add"),
             helper.make_node("Relu", ["fc1_add"], ["relu"], name="relu"),
             helper.make_node("MatMul", ["relu", "fc2.weight"], ["fc2"], name="fc2"),
             helper.make_node("Add", ["fc2", "fc2.bias"], ["output"], name="fc2_add")]
    return _model(nodes, inits, {"input": [1, 4, 16]}, {"output": [1, 4, 8]})


def conv_chain_model(seed: int = 4) -> onnx.ModelProto:
    """input [1, 4, 8, 8] -> conv1 (4->8, 3x3) -> relu1 -> conv2 (8->8, 3x3) -> relu2 -> conv3 (8->4, 1x1) -> output."""
    rng = np.random.default_rng(seed)
    inits, nodes, x = {}, [], "input"
    for i, (cin, cout, k) in enumerate([(4, 8, 3), (8, 8, 3), (8, 4, 1)], start=1):
        inits[f"conv{i}.weight"] = rng.normal(0.02, 1.0, (cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))
        inits[f"conv{i}.bias"] = rng.uniform(0.1, 0.3, cout) * rng.choice([-1, 1], cout)
        out = "output" if i == 3 else f"conv{i}"
        nodes.append(helper.make_node("Conv", [x, f"conv{i}.weight", f"conv{i}.bias"], [out], name=f"conv{i}",
                                      kernel_shape=[k, k], pads=[k // 2] * 4))
        if i < 3:
            x = f"relu{i}"
            nodes.append(helper.make_node("Relu", [out], [x], name=x))
    return _model(nodes, inits, {"input": [1, 4, 8, 8]}, {"output": [1, 4, 8, 8]})


def _positive_samples(shape, n: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"input": rng.uniform(0.0, 2.0, shape).astype(np.float32)} for _ in range(n)]


def _normal_samples(shape, n: int, seed: int, mean: float = 0.3) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"input": (rng.standard_normal(shape) + mean).astype(np.float32)} for _ in range(n)]


# --------------------------------------------------------------------------------------------
# The pipeline's steps, as quantize.py runs them


@dataclasses.dataclass
class Setup:
    model: onnx.ModelProto
    plan: QuantPlan
    targets: tuple[BiasTarget, ...]
    stats: dict
    shapes: dict
    ranges: dict[str, TensorRange]
    weights: dict[str, np.ndarray]
    runner: LayerRunner

    @property
    def graph(self):
        return graph_view(self.model)

    def fast(self, threshold: float = 2.0, mode: str = "original"):
        """FastBiasCorrection; the tests of POT's formula ("original") are the default here."""
        return fast_bias_correction(self.targets, self.stats, self.ranges, self.weights, self.shapes,
                                    self.runner.run, threshold=threshold, mode=mode)

    def full(self, samples, threshold: float = 1000.0, run=None):
        return bias_correction(self.graph, self.plan, self.targets, self.stats, self.ranges, self.weights,
                               samples, run or self.runner.run, threshold=threshold)


def _with_weight_bits(plan: QuantPlan, bits: int) -> QuantPlan:
    config = QuantizerConfig(f"q{bits}_w", bits, "symmetric", "perchannel", -(2 ** (bits - 1) - 1),
                             2 ** (bits - 1) - 1)
    points = tuple(dataclasses.replace(p, config=config) if p.role == "weight" else p for p in plan.points)
    return dataclasses.replace(plan, points=points)


def setup(model: onnx.ModelProto, samples, weight_bits: int = 8) -> Setup:
    normalized = normalize(model).model
    graph = graph_view(normalized)
    inputs = load_plan_inputs("CPU")
    plan = build_plan(graph, inputs.spec, inputs.rules, PlanOptions("performance"), "m")
    if weight_bits != 8:
        plan = _with_weight_bits(plan, weight_bits)
    targets = bias_targets(graph, plan)
    reducers = activation_reducers(plan)
    for tensor, extra in bias_reducers(targets).items():
        reducers.setdefault(tensor, []).extend(extra)
    collected = collect_statistics(normalized, sorted(reducers), reducers, samples)
    weights = initializer_arrays(normalized, [p.tensor for p in plan.points if p.role == "weight"]
                                 + bias_constants(targets))
    ranges = {**weight_ranges(plan, weights), **activation_ranges(plan, collected.stats)}
    return Setup(normalized, plan, targets, collected.stats, collected.observed_shapes, ranges, weights,
                 LayerRunner(normalized))


def _run(model: onnx.ModelProto, samples) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, s)[0] for s in samples])


def _mean_error(s: Setup, result, held_out, axis: int) -> float:
    """Mean over channels of |quantized - float| output mean on held-out samples, with the result applied."""
    model = s.model if result is None else apply_weight_updates(s.model, result.updates, result.new_biases)
    quantized = emit_qdq(model, s.plan, s.ranges).model
    float_out, q_out = _run(s.model, held_out), _run(quantized, held_out)
    per_channel = lambda y: np.moveaxis(y, axis, 0).reshape(y.shape[axis], -1).mean(axis=1)  # noqa: E731
    return float(np.mean(np.abs(per_channel(q_out) - per_channel(float_out))))


# --------------------------------------------------------------------------------------------
# Independent numpy references


def fq_ref(x: np.ndarray, r: TensorRange) -> np.ndarray:
    """FakeQuantize by its textbook formula (float64), per channel along r.axis."""
    lo, hi = np.asarray(r.input_low, np.float64), np.asarray(r.input_high, np.float64)
    if lo.ndim:
        shape = [1] * x.ndim
        shape[r.axis] = lo.size
        lo, hi = lo.reshape(shape), hi.reshape(shape)
    steps = r.levels - 1
    k = np.round((np.clip(x, lo, hi) - lo) / (hi - lo) * steps)
    return k / steps * (hi - lo) + lo


def conv_ref(x: np.ndarray, w: np.ndarray, pad: int) -> np.ndarray:
    """Brute-force 2-D convolution (stride 1, group 1), NCHW."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((n, o, h + 2 * pad - kh + 1, wd + 2 * pad - kw + 1))
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            window = xp[:, :, i:i + kh, j:j + kw]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", window, w.astype(np.float64))
    return out


def channel_mean(y: np.ndarray, axis: int) -> np.ndarray:
    return np.moveaxis(y, axis, 0).reshape(y.shape[axis], -1).mean(axis=1)


# --------------------------------------------------------------------------------------------
# Targets and reducers


def test_targets_find_the_bias_of_each_op_kind() -> None:
    cases = {
        "conv": (conv_model(True), ("conv.bias", True, "output", False)),
        "conv_add": (conv_model("add"), ("conv.add_bias", False, "output", False)),
        "conv_none": (conv_model(False), (None, True, "output", True)),
        "matmul": (matmul_model(True), ("fc.bias", False, "output", False)),
        "matmul_none": (matmul_model(False), (None, False, "output", True)),
        "gemm": (gemm_model(), ("gemm.bias", True, "output", False)),
    }
    for name, (model, (bias, in_node, output, create)) in cases.items():
        graph = graph_view(normalize(model).model)
        inputs = load_plan_inputs("CPU")
        plan = build_plan(graph, inputs.spec, inputs.rules, PlanOptions("performance"), "m")
        (t,) = bias_targets(graph, plan)
        assert (t.bias, t.bias_in_node, t.output, t.create) == (bias, in_node, output, create), name
        assert t.input_range == "input" and not t.problem, name
        if create:
            assert t.new_bias_name and t.new_bias_name not in graph.tensors
    t = bias_targets(*_graph_plan(gemm_model(0.5)))[0]
    assert t.bias_scale == 0.5 and t.channel_axis == -1 and t.channels == 6


def _graph_plan(model):
    graph = graph_view(normalize(model).model)
    inputs = load_plan_inputs("CPU")
    return graph, build_plan(graph, inputs.spec, inputs.rules, PlanOptions("performance"), "m")


def test_targets_find_the_input_fakequantize_above_reshapes_and_report_unusable_biases() -> None:
    import models

    graph, plan = _graph_plan(models.attention_block())
    by_node = {t.node: t for t in bias_targets(graph, plan)}
    assert by_node["out_matmul"].input == "context_merge" and by_node["out_matmul"].input_range == "context"
    assert by_node["q_matmul"].output == "q_add"
    # A bias shared by two convolutions cannot be changed for one of them.
    w = np.random.default_rng(0).normal(size=(4, 4, 1, 1))
    nodes = [helper.make_node("Conv", ["input", "w1", "b"], ["c1"], name="c1"),
             helper.make_node("Conv", ["c1", "w2", "b"], ["output"], name="c2")]
    model = _model(nodes, {"w1": w, "w2": w, "b": np.ones(4)}, {"input": [1, 4, 4, 4]}, {"output": [1, 4, 4, 4]})
    targets = bias_targets(*_graph_plan(model))
    assert [t.problem for t in targets] == ["the bias 'b' is shared with other nodes"] * 2
    assert bias_reducers(targets) == {}


def test_reducers_are_per_sample_channel_means_named_apart_from_minmax() -> None:
    s_graph, plan = _graph_plan(conv_model())
    targets = bias_targets(s_graph, plan)
    reducers = bias_reducers(targets)
    names = {r.name for rs in reducers.values() for r in rs}
    assert names == {"bias:channel_mean:-3"}
    minmax = {r.name for rs in activation_reducers(plan).values() for r in rs}
    assert not names & minmax
    x = np.random.default_rng(0).normal(size=(5, 3, 4, 4))
    np.testing.assert_allclose(ChannelMean("m", -3)(x), x.mean(axis=(2, 3)))
    # The same channel when the collector adds a leading axis (tensor without batch axis).
    np.testing.assert_allclose(ChannelMean("m", -3)(x[None])[0], x.mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(ChannelMean("m", -1)(x), x.mean(axis=(1, 2)))


# --------------------------------------------------------------------------------------------
# FastBiasCorrection


def _expected_fast_conv(s: Setup, samples, with_bias: np.ndarray | None) -> np.ndarray:
    x = np.concatenate([d["input"] for d in samples]).astype(np.float64)
    w = s.weights["conv.weight"].astype(np.float64)
    float_out = conv_ref(x, w, 1)
    if with_bias is not None:
        float_out += with_bias.reshape(1, -1, 1, 1)
    blob = np.broadcast_to(x.mean(axis=(0, 2, 3)).reshape(1, -1, 1, 1), (1, *x.shape[1:]))
    q_out = conv_ref(fq_ref(blob, s.ranges["input"]), fq_ref(w, s.ranges["conv.weight"]), 1)
    return channel_mean(float_out, 1) - channel_mean(q_out, 1)


def test_fast_conv_bias_equals_numpy_and_moves_the_quantized_mean_to_float() -> None:
    samples = _positive_samples((1, 8, 8, 8), 16, seed=10)
    s = setup(conv_model(True), samples)
    result = s.fast()
    old = s.weights["conv.bias"]
    expected = _expected_fast_conv(s, samples, old)
    np.testing.assert_allclose(result.updates["conv.bias"], expected, rtol=1e-5, atol=1e-5)
    (layer,) = result.layers
    assert layer.accepted and layer.reason == "corrected"
    assert layer.shift_max_abs == pytest.approx(np.max(np.abs(expected - old)), rel=1e-4)
    assert layer.magnitude == pytest.approx(np.max(np.abs((expected - old) / old)), rel=1e-4)
    assert np.min(expected - old) > 0.05  # the small weights rounded to 0 take a visible part of the mean away
    held_out = _positive_samples((1, 8, 8, 8), 8, seed=11)
    before, after = _mean_error(s, None, held_out, 1), _mean_error(s, result, held_out, 1)
    assert after < 0.25 * before, (before, after)
    json.dumps(result.report())


def test_fast_weights_mode_conv_bias_equals_the_numpy_weight_rounding_shift() -> None:
    samples = _positive_samples((1, 8, 8, 8), 16, seed=10)
    s = setup(conv_model(True), samples)
    result = s.fast(mode="weights")
    x = np.concatenate([d["input"] for d in samples]).astype(np.float64)
    w, old = s.weights["conv.weight"].astype(np.float64), s.weights["conv.bias"]
    blob = np.broadcast_to(x.mean(axis=(0, 2, 3)).reshape(1, -1, 1, 1), (1, *x.shape[1:]))
    # Float and weight-quantized layer on the same mean input: no input FakeQuantize, padding borders cancel.
    shift = (channel_mean(conv_ref(blob, w, 1), 1)
             - channel_mean(conv_ref(blob, fq_ref(w, s.ranges["conv.weight"]), 1), 1))
    np.testing.assert_allclose(result.updates["conv.bias"], old + shift, rtol=1e-5, atol=1e-5)
    assert result.layers[0].accepted
    held_out = _positive_samples((1, 8, 8, 8), 8, seed=11)
    before, after = _mean_error(s, None, held_out, 1), _mean_error(s, result, held_out, 1)
    assert after < 0.25 * before, (before, after)


def test_fast_weights_mode_matmul_shift_is_the_weight_error_times_the_input_mean() -> None:
    samples = _positive_samples((1, 4, 32), 16, seed=13)
    s = setup(matmul_model(True), samples)
    result = s.fast(mode="weights")
    x = np.concatenate([d["input"] for d in samples]).astype(np.float64).reshape(-1, 32)
    w = s.weights["fc.weight"].astype(np.float64)
    expected = s.weights["fc.bias"] + x.mean(axis=0) @ (w - fq_ref(w, s.ranges["fc.weight"]))
    np.testing.assert_allclose(result.updates["fc.bias"], expected, rtol=1e-5, atol=1e-5)


def test_fast_weights_mode_is_not_fooled_by_padding_borders_where_the_original_formula_is() -> None:
    # Small images whose content sits in the centre (like 8x8 digits): the border outputs of a padded
    # conv differ from what a constant mean input gives. The original formula puts that difference into
    # the bias; the weights mode compares like with like.
    rng = np.random.default_rng(40)
    mask = np.zeros((8, 8), np.float32)
    mask[2:6, 2:6] = 1.0
    samples = [{"input": (rng.uniform(0.5, 2.0, (1, 8, 8, 8)) * mask).astype(np.float32)} for _ in range(24)]
    s = setup(conv_model(True), samples)
    held_out = [{"input": (rng.uniform(0.5, 2.0, (1, 8, 8, 8)) * mask).astype(np.float32)} for _ in range(8)]
    float_out = _run(s.model, held_out)

    def output_error(result) -> float:
        model = apply_weight_updates(s.model, result.updates, result.new_biases)
        return float(np.mean((_run(emit_qdq(model, s.plan, s.ranges).model, held_out) - float_out) ** 2))

    none = float(np.mean((_run(emit_qdq(s.model, s.plan, s.ranges).model, held_out) - float_out) ** 2))
    weights, original = output_error(s.fast(mode="weights")), output_error(s.fast(mode="original"))
    assert weights < 0.8 * original and weights < 0.8 * none, (none, weights, original)


def test_fast_mode_must_be_known() -> None:
    s = setup(matmul_model(True), _positive_samples((1, 4, 32), 2, seed=13))
    with pytest.raises(ValueError, match="mode must be one of weights, original"):
        s.fast(mode="statistics")


def test_fast_conv_with_a_following_add_updates_that_constant_in_its_shape() -> None:
    samples = _positive_samples((1, 8, 8, 8), 8, seed=12)
    s = setup(conv_model("add"), samples)
    result = s.fast()
    expected = _expected_fast_conv(s, samples, s.weights["conv.add_bias"].reshape(-1))
    assert result.updates["conv.add_bias"].shape == (1, 4, 1, 1)
    np.testing.assert_allclose(result.updates["conv.add_bias"].reshape(-1), expected, rtol=1e-5, atol=1e-5)


def test_fast_matmul_bias_equals_numpy_and_moves_the_quantized_mean_to_float() -> None:
    samples = _positive_samples((1, 4, 32), 16, seed=13)
    s = setup(matmul_model(True), samples)
    result = s.fast()
    x = np.concatenate([d["input"] for d in samples]).astype(np.float64)
    w, b = s.weights["fc.weight"].astype(np.float64), s.weights["fc.bias"]
    float_mean = (x @ w + b).reshape(-1, 6).mean(axis=0)
    blob = np.broadcast_to(x.reshape(-1, 32).mean(axis=0), (1, 4, 32))
    q_mean = (fq_ref(blob, s.ranges["input"]) @ fq_ref(w, s.ranges["fc.weight"])).reshape(-1, 6).mean(axis=0)
    np.testing.assert_allclose(result.updates["fc.bias"], float_mean - q_mean, rtol=1e-5, atol=1e-5)
    held_out = _positive_samples((1, 4, 32), 8, seed=14)
    before, after = _mean_error(s, None, held_out, -1), _mean_error(s, result, held_out, -1)
    assert after < 0.25 * before, (before, after)


def test_fast_gemm_bias_honours_beta() -> None:
    samples = _positive_samples((1, 32), 16, seed=15)
    s = setup(gemm_model(beta=0.5), samples)
    result = s.fast()
    x = np.concatenate([d["input"] for d in samples]).astype(np.float64)
    w, c = s.weights["gemm.weight"].astype(np.float64), s.weights["gemm.bias"]
    float_mean = (x @ w.T + 0.5 * c).mean(axis=0)
    q_mean = (fq_ref(x.mean(axis=0, keepdims=True), s.ranges["input"]) @ fq_ref(w, s.ranges["gemm.weight"]).T)[0]
    np.testing.assert_allclose(0.5 * result.updates["gemm.bias"], float_mean - q_mean, rtol=1e-5, atol=1e-5)
    held_out = _positive_samples((1, 32), 16, seed=16)
    before, after = _mean_error(s, None, held_out, -1), _mean_error(s, result, held_out, -1)
    assert after < 0.25 * before, (before, after)


def test_threshold_rejects_large_relative_shifts() -> None:
    s = setup(conv_model(True), _positive_samples((1, 8, 8, 8), 8, seed=17))
    accepted = s.fast()
    rejected = s.fast(threshold=0.5 * accepted.layers[0].magnitude)
    (layer,) = rejected.layers
    assert not layer.accepted and "threshold" in layer.reason
    assert layer.magnitude == pytest.approx(accepted.layers[0].magnitude)
    assert rejected.updates == {} and rejected.new_biases == {}


def test_a_zero_bias_element_skips_the_layer_as_the_original_tool_did() -> None:
    model = conv_model(True)
    bias = next(t for t in model.graph.initializer if t.name == "conv.bias")
    bias.CopyFrom(numpy_helper.from_array(np.array([0.5, 0.0, 0.3, 0.6], np.float32), "conv.bias"))
    samples = _positive_samples((1, 8, 8, 8), 8, seed=18)
    s = setup(model, samples)
    for result in (s.fast(), s.full(samples[:2])):
        (layer,) = result.layers
        assert not layer.accepted and "zero element" in layer.reason and layer.magnitude == float("inf")
        assert result.updates == {}
        assert layer.to_dict()["magnitude"] is None  # JSON has no inf


def test_a_conv_without_bias_gets_one() -> None:
    samples = _positive_samples((1, 8, 8, 8), 16, seed=19)
    s = setup(conv_model(False), samples)
    result = s.fast()
    (t,) = s.targets
    name, value = result.new_biases["conv"]
    assert name == t.new_bias_name and result.updates == {}
    np.testing.assert_allclose(value, _expected_fast_conv(s, samples, None), rtol=1e-5, atol=1e-5)
    assert result.layers[0].created and result.layers[0].accepted
    corrected = apply_weight_updates(s.model, result.updates, result.new_biases)
    conv = next(n for n in corrected.graph.node if n.name == "conv")
    assert list(conv.input)[2] == name
    held_out = _positive_samples((1, 8, 8, 8), 8, seed=20)
    before, after = _mean_error(s, None, held_out, 1), _mean_error(s, result, held_out, 1)
    assert after < 0.25 * before, (before, after)


def test_a_matmul_without_add_gets_one() -> None:
    samples = _positive_samples((1, 4, 32), 16, seed=21)
    s = setup(matmul_model(False), samples)
    for result in (s.fast(), s.full(samples[:4])):
        name, value = result.new_biases["fc"]
        assert value.shape == (6,) and result.layers[0].created
        corrected = apply_weight_updates(s.model, result.updates, result.new_biases)
        assert [n.op_type for n in corrected.graph.node] == ["MatMul", "Add"]
        held_out = _positive_samples((1, 4, 32), 8, seed=22)
        before, after = _mean_error(s, None, held_out, -1), _mean_error(s, result, held_out, -1)
        assert after < 0.25 * before, (result.method, before, after)


# --------------------------------------------------------------------------------------------
# BiasCorrection


def test_bias_correction_equals_a_numpy_simulation_of_sequential_correction() -> None:
    samples = _normal_samples((1, 4, 16), 20, seed=30)
    s = setup(two_layer_model(), samples, weight_bits=4)
    subset = samples[:bias_correction_subset(len(samples))]
    assert len(subset) == 4
    result = s.full(subset)
    r, w = s.ranges, s.weights
    x = np.concatenate([d["input"] for d in subset]).astype(np.float64)
    w1, b1, w2, b2 = (w[k].astype(np.float64) for k in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"))
    # Float reference over the subset.
    h_fp = x @ w1 + b1
    out_fp = np.maximum(h_fp, 0) @ w2 + b2
    # Quantized, layer 1, then its correction applied before layer 2 runs.
    h_q = fq_ref(x, r["input"]) @ fq_ref(w1, r["fc1.weight"]) + b1
    shift1 = channel_mean(h_fp, -1) - channel_mean(h_q, -1)
    out_q = fq_ref(np.maximum(h_q + shift1, 0), r["relu"]) @ fq_ref(w2, r["fc2.weight"]) + b2
    shift2 = channel_mean(out_fp, -1) - channel_mean(out_q, -1)
    # One activation element falling on the other side of a rounding boundary (float32
    # in onnxruntime, float64 here) moves a channel mean by one step over the rows.
    step = float(r["relu"].input_high - r["relu"].input_low) / (r["relu"].levels - 1)
    tolerance = 1.01 * step * np.abs(w2).max() / (len(subset) * 4) + 1e-5
    np.testing.assert_allclose(result.updates["fc1.bias"], b1 + shift1, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(result.updates["fc2.bias"], b2 + shift2, atol=tolerance, rtol=0)
    assert [layer.node for layer in result.layers] == ["fc1", "fc2"]
    assert all(layer.accepted for layer in result.layers) and result.samples == 4
    # Layer 2 inherited error from layer 1: its shift differs from the one measured on float inputs.
    out_local = fq_ref(np.maximum(h_fp, 0), r["relu"]) @ fq_ref(w2, r["fc2.weight"]) + b2
    assert np.max(np.abs(shift2 - (channel_mean(out_fp, -1) - channel_mean(out_local, -1)))) > 0.01


def test_bias_correction_runs_each_node_once_per_sample() -> None:
    samples = _normal_samples((1, 4, 8, 8), 10, seed=31)
    s = setup(conv_chain_model(), samples, weight_bits=4)
    executed: list[str] = []

    def counting(nodes, feeds, overrides=None, **kw):
        executed.extend(nodes)
        return s.runner.run(nodes, feeds, overrides, **kw)

    subset = samples[:3]
    result = s.full(subset, run=counting)
    assert len(result.layers) == 3
    graph = s.graph
    assert sorted(executed) == sorted([n.name for n in graph.nodes] * len(subset))
    # One session per segment: the layers and the Relus between them, cut at the FakeQuantizes.
    assert s.runner.sessions_built <= len(graph.nodes)


def test_bias_correction_beats_or_equals_fast_when_errors_accumulate() -> None:
    samples = _normal_samples((1, 4, 8, 8), 40, seed=32)
    s = setup(conv_chain_model(), samples, weight_bits=4)
    fast = s.fast()
    full = s.full(samples[:bias_correction_subset(len(samples))])
    held_out = _normal_samples((1, 4, 8, 8), 20, seed=33)
    none, e_fast, e_full = (_mean_error(s, r, held_out, 1) for r in (None, fast, full))
    assert e_full <= e_fast, (none, e_fast, e_full)
    assert e_full < 0.5 * none, (none, e_fast, e_full)


def test_bias_correction_needs_the_statistics_of_its_samples() -> None:
    samples = _positive_samples((1, 4, 32), 2, seed=34)
    s = setup(matmul_model(True), samples)
    with pytest.raises(ValueError, match="fewer than"):
        s.full(_positive_samples((1, 4, 32), 3, seed=35))


def test_subset_size_is_a_fifth_of_the_statistics_subset_at_least_one() -> None:
    assert [bias_correction_subset(n) for n in (1, 4, 5, 300, 301)] == [1, 1, 1, 60, 60]


# --------------------------------------------------------------------------------------------
# LayerRunner


def test_layer_runner_runs_one_node_with_overridden_weights() -> None:
    model = conv_model(True)
    runner = LayerRunner(model)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 8)).astype(np.float32)
    w = np.random.default_rng(1).normal(size=(4, 8, 3, 3)).astype(np.float32)
    out = runner.run(["conv"], {"input": x}, {"conv.weight": w, "conv.bias": np.zeros(4, np.float32)})["output"]
    np.testing.assert_allclose(out, conv_ref(x, w, 1), rtol=1e-4, atol=1e-4)
    runner.run(["conv"], {"input": x[:1]}, {"conv.weight": w * 2, "conv.bias": np.ones(4, np.float32)})
    assert runner.sessions_built == 1 and runner.runs == 2
    # Without overrides the model's own initializers are used.
    (b,) = [numpy_helper.to_array(t) for t in model.graph.initializer if t.name == "conv.bias"]
    (w0,) = [numpy_helper.to_array(t) for t in model.graph.initializer if t.name == "conv.weight"]
    out = runner.run(["conv"], {"input": x})["output"]
    np.testing.assert_allclose(out, conv_ref(x, w0, 1) + b.reshape(1, -1, 1, 1), rtol=1e-4, atol=1e-4)


def test_layer_runner_runs_a_subgraph_with_aliases_and_chosen_outputs() -> None:
    model = normalize(two_layer_model()).model
    runner = LayerRunner(model)
    x = np.random.default_rng(0).normal(size=(1, 4, 16)).astype(np.float32)
    other = np.abs(x[..., :16]) + 1.0
    full = runner.run(["fc1", "fc1_add", "relu"], {"input": x}, outputs=["relu"])
    assert list(full) == ["relu"]
    aliased = runner.run(["fc1", "fc1_add", "relu"], {"input": x, "x::fq": other}, outputs=["relu"],
                         aliases={("fc1", 0): "x::fq"})
    w = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "fc1.weight"))
    b = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "fc1.bias"))
    np.testing.assert_allclose(aliased["relu"], np.maximum(other @ w + b, 0), rtol=1e-5, atol=1e-5)
    with pytest.raises(UserError, match="neither fed nor a constant"):
        runner.run(["relu"], {})
    with pytest.raises(KeyError, match="not an initializer"):
        runner.run(["relu"], {"fc1_add": x}, {"nope": x})
