"""Ranges of tensors with few values per sample, and of model inputs, cover the calibration population.

The original tool's default aggregation (the mean over samples of each sample's extreme) clips half of
a tensor that holds one value per sample, and every loud sample of a raw signal. Each test computes
the population by brute force in numpy, shows that the preset's aggregation (asked for explicitly with
a configuration override, which is still honoured) clips it, and that the default does not.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from models import GraphBuilder
from rewriter.algorithms.minmax import RangeOptions, activation_ranges, population_ranges
from rewriter.calibrate.aggregators import FEW_VALUES_PER_SAMPLE, population_reason
from rewriter.pipeline import QuantizeOptions, quantize
from rewriter.plan import Consumer, FakeQuantizePoint, QuantPlan
from rewriter.spec.model import QuantizerConfig

# What the original tool's preset did, chosen explicitly in a configuration file (range_estimator).
PRESET_MEAN = RangeOptions(activations={"min": {"aggregator": "mean"}, "max": {"aggregator": "mean"}})
FEATURES = 32
# The original tool's target, named: the CPU rules quantize the ReduceMean's input (ORT's do not).
# The guard off: these tests compare the statistics themselves, and with the clipping aggregation the
# fidelity guard would (rightly) return the clipped layer to float, leaving no range to compare.
CPU = QuantizeOptions(target="CPU", guard=False)
CPU_PRESET_MEAN = QuantizeOptions(target="CPU", ranges=PRESET_MEAN, guard=False)


def _voice_activity_head(seed: int = 0) -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    """features [1, 32] -> MatMul + Add -> Sigmoid: one speech probability per sample -> ReduceMean."""
    b = GraphBuilder(seed)
    w = (b.rng.standard_normal((FEATURES, 1)) * 0.5).astype(np.float32)
    bias = np.array([-0.3], np.float32)
    logit = b.node("Add", [b.node("MatMul", ["features", b.const("head.weight", w)], "head_matmul"),
                           b.const("head.bias", bias)], "head_add")
    prob = b.node("Sigmoid", [logit], "prob")
    b.node("ReduceMean", [prob], "speech", axes=[1], keepdims=1)
    inputs = [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, FEATURES])]
    outputs = [helper.make_tensor_value_info("speech", TensorProto.FLOAT, [1, 1])]
    return b.model(inputs, outputs, "voice_activity_head"), w, bias


def _probabilities(features: np.ndarray, w: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The brute-force reference: every sample's probability, in float64."""
    logits = features.astype(np.float64) @ w.astype(np.float64) + bias
    return 1.0 / (1.0 + np.exp(-logits[:, 0]))


def _run(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, f)[0] for f in feeds])


def _entry(report: dict, tensor: str) -> dict:
    return next(e for e in report["fakequantize"] if e["tensor"] == tensor)


def test_one_probability_per_sample_is_not_clipped_at_its_mean() -> None:
    model, w, bias = _voice_activity_head()
    features = np.random.default_rng(3).standard_normal((64, FEATURES)).astype(np.float32)
    feeds = [{"features": f[None]} for f in features]
    p = _probabilities(features, w, bias)
    assert p.max() - p.mean() > 0.2, "the data must spread the probabilities for the test to mean anything"

    preset = quantize(model, feeds, CPU_PRESET_MEAN)
    old_high = float(preset.ranges["prob"].input_high)
    assert np.isclose(old_high, p.mean(), rtol=1e-5)   # the mean of 64 one-value "maxima"
    assert np.mean(p > old_high) > 0.3                  # ... clips a third of the probabilities or more
    assert "aggregation" not in _entry(preset.report, "prob")

    result = quantize(model, feeds, CPU)
    new_high = float(result.ranges["prob"].input_high)
    assert np.isclose(new_high, p.max(), rtol=1e-5)    # the population's largest probability
    assert not np.any(p > new_high + 1e-6)
    reason = _entry(result.report, "prob")["aggregation"]
    assert "1 value per sample" in reason and f"fewer than {FEW_VALUES_PER_SAMPLE}" in reason

    # What the detector decides: speech when the mean probability passes 0.5.
    reference = p >= 0.5
    clipped = _run(preset.model, feeds).ravel() >= 0.5
    kept = _run(result.model, feeds).ravel() >= 0.5
    assert np.mean(kept == reference) > np.mean(clipped == reference)
    assert np.mean(kept == reference) >= 0.95


def _signal_into_linear(seed: int = 0) -> onnx.ModelProto:
    """audio [1, 256] -> MatMul (a filter bank) -> Add: the model input is what gets quantized."""
    b = GraphBuilder(seed)
    out = b.linear("audio", "filters", 256, 8)
    b.nodes[-1].output[0] = out = "bands"
    inputs = [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, 256])]
    return b.model(inputs, [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, 8])], "signal_into_linear")


def test_a_signal_input_with_rare_peaks_keeps_its_peaks() -> None:
    rng = np.random.default_rng(4)
    audio = (rng.standard_normal((48, 256)) * 0.01).astype(np.float32)   # mostly quiet
    for row in (5, 17, 40):                                               # three loud samples
        audio[row, rng.integers(0, 256, 8)] = rng.choice([-1.0, 1.0], 8) * rng.uniform(0.3, 0.55, 8)
    feeds = [{"audio": a[None]} for a in audio]
    model = _signal_into_linear()
    peak = float(np.abs(audio).max())                                     # brute force over every value
    mean_of_peaks = float(np.mean(np.abs(audio).max(axis=1)))

    preset = quantize(model, feeds, CPU_PRESET_MEAN)
    old = preset.ranges["audio"]
    assert np.isclose(float(old.input_high), mean_of_peaks, rtol=1e-5)
    assert float(old.input_high) < peak / 3                               # every loud sample is clipped

    result = quantize(model, feeds, CPU)
    new = result.ranges["audio"]
    assert np.isclose(float(new.input_high), peak, rtol=1e-5)
    assert float(new.input_low) <= -peak                                  # symmetric: both peaks fit
    assert "model input" in _entry(result.report, "audio")["aggregation"]

    loud = [feeds[row] for row in (5, 17, 40)]
    reference = _run(model, loud)
    error_old = np.abs(_run(preset.model, loud) - reference).max()
    error_new = np.abs(_run(result.model, loud) - reference).max()
    assert error_new < error_old / 3


def _point(tensor: str, config: QuantizerConfig, axis: int | None = None) -> FakeQuantizePoint:
    return FakeQuantizePoint(tensor, "activation", config, (config,), (Consumer("n", 0),), channel_axis=axis)


def test_the_threshold_and_what_counts_as_a_value_per_sample() -> None:
    assert population_reason(FEW_VALUES_PER_SAMPLE - 1, False) is not None
    assert population_reason(FEW_VALUES_PER_SAMPLE, False) is None
    assert population_reason(None, False) is None
    assert population_reason(10_000, True) is not None                   # a model input, however large
    sym = QuantizerConfig("q8_a", 8, "symmetric", "pertensor")
    per_channel = QuantizerConfig("q8_a_ch", 8, "asymmetric", "perchannel")
    plan = QuantPlan("m", "CPU", "cpu.yaml", "performance", (),
                     (_point("wide", sym), _point("narrow", sym), _point("channels", per_channel, axis=1)), ())
    shapes = {"wide": (4, 32), "narrow": (3, 3), "channels": (64, 4)}    # 128, 9 and 64 x 4 values
    found = population_ranges(plan, shapes, ())
    assert set(found) == {"narrow"}       # per channel: min and max aggregators already keep the extremes
    assert population_ranges(plan, shapes, (), PRESET_MEAN) == {}         # the file's own choice stands


def test_population_aggregation_takes_the_extremes_of_the_per_sample_statistics() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((20, 3)) * rng.uniform(0.1, 3.0, (20, 1))     # 3 values per sample, scales vary
    asym = QuantizerConfig("q8_a", 8, "asymmetric", "pertensor")
    plan = QuantPlan("m", "CPU", "cpu.yaml", "performance", (), (_point("x", asym),), ())
    stats = {"x": {"min:min:0.0001:own": x.min(axis=1), "max:max:0.0001:own": x.max(axis=1)}}
    preset = activation_ranges(plan, stats)["x"]
    population = activation_ranges(plan, stats, population=("x",))["x"]
    assert float(preset.input_high) < x.max() and float(preset.input_low) > x.min()
    # asymmetric_range may widen to put zero on the grid, never narrow
    assert float(population.input_high) >= x.max() - 1e-6 and float(population.input_low) <= x.min() + 1e-6
    assert float(population.input_high) - float(population.input_low) < (x.max() - x.min()) * 1.01
