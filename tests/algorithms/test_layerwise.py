"""Layer-wise tuning against a brute-force numpy search, and its effect on emitted models.

The models give each output channel one large weight on an input feature that
is nearly always close to zero: MinMax sizes the 8-bit step for that weight,
so the other weights are rounded coarsely, while clipping it costs almost
nothing. A narrower range is then clearly better, which the tuning must find.
The reference search re-derives everything in float64 numpy (textbook
FakeQuantize, matmul) from the weights and samples, without onnxruntime.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from models import GraphBuilder
from rewriter.algorithms.bias_correction import bias_constants, bias_targets
from rewriter.algorithms.layerwise import GRID, float_layer_values, layerwise_subset, layerwise_tuning
from rewriter.algorithms.types import TensorRange
from rewriter.calibrate.layer_runner import LayerRunner
from rewriter.cli import main
from rewriter.config import NOT_RUN_YET, load_config, merge_cli
from rewriter.errors import UserError
from rewriter.ir.normalize import normalize
from rewriter.ir.tensors import initializer_arrays
from rewriter.ir.view import graph_view
from rewriter.pipeline import QuantizeOptions, quantize

ROOT = Path(__file__).resolve().parents[2]
TINY_CNN, CALIB = ROOT / "examples" / "tiny_cnn.onnx", ROOT / "examples" / "calib"

# --------------------------------------------------------------------------------------------
# Models and data


def _f32(name: str, shape: list[int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def outlier_matmul(seed: int = 0, rows: int = 64) -> onnx.ModelProto:
    """input [1, rows, 32] -> fc (MatMul [32, 6]) -> output (+ bias [6]); row 0 of the weight is +-3."""
    b = GraphBuilder(seed)
    w = b.rng.normal(0.0, 0.1, (32, 6))
    w[0] = 3.0 * b.rng.choice([-1.0, 1.0], 6)
    fc = b.node("MatMul", ["input", b.const("fc.weight", w.astype(np.float32))], "fc")
    b.node("Add", [fc, b.const("fc.bias", b.rng.uniform(-0.5, 0.5, 6).astype(np.float32))], "output")
    return b.model([_f32("input", [1, rows, 32])], [_f32("output", [1, rows, 6])], "outlier_matmul")


def outlier_conv(seed: int = 1) -> onnx.ModelProto:
    """input [1, 8, 6, 6] -> conv (8->4, 3x3, pad 1, no bias); input channel 0 holds the outliers."""
    b = GraphBuilder(seed)
    w = b.rng.normal(0.0, 0.1, (4, 8, 3, 3))
    w[:, 0, 1, 1] = 3.0 * b.rng.choice([-1.0, 1.0], 4)
    b.node("Conv", ["input", b.const("conv.weight", w.astype(np.float32))], "conv", kernel_shape=[3, 3],
           pads=[1, 1, 1, 1])
    return b.model([_f32("input", [1, 8, 6, 6])], [_f32("conv", [1, 4, 6, 6])], "outlier_conv")


def samples(shape, n: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Normal features with a mean (so quantization shifts the output mean), feature/channel 0 nearly zero."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.normal(0.2, 1.0, shape)
        x[(slice(None),) * (len(shape) - 1) + (0,)] *= 0.002  # MatMul: last axis is the feature
        out.append({"input": x.astype(np.float32)})
    return out


def conv_samples(n: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.normal(0.2, 1.0, (1, 8, 6, 6))
        x[:, 0] *= 0.002
        out.append({"input": x.astype(np.float32)})
    return out


def _run(model: onnx.ModelProto, feeds) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, f)[0] for f in feeds])


def fq_ref(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, levels: int) -> np.ndarray:
    """FakeQuantize by its textbook formula, float64 (bounds broadcast against x)."""
    steps = levels - 1
    k = np.round((np.clip(x, lo, hi) - lo) / (hi - lo) * steps)
    return k / steps * (hi - lo) + lo


def _options(**kw) -> QuantizeOptions:
    return QuantizeOptions(target="CPU", subset_size=16, **kw)


# --------------------------------------------------------------------------------------------
# Against a brute-force numpy search


def _direct(model: onnx.ModelProto, calib):
    """The pass called directly, on the plan and MinMax ranges of the pipeline (no tuning)."""
    plain = quantize(model, calib, _options())
    normalized = normalize(model).model
    graph = graph_view(normalized)
    targets = bias_targets(graph, plain.plan)
    weights = initializer_arrays(normalized, [t.weight for t in targets] + bias_constants(targets))
    reference = list(float_layer_values(graph, targets, calib, LayerRunner(normalized).run))
    return plain, graph, targets, weights, reference, LayerRunner(normalized)


def test_matmul_multipliers_match_a_brute_force_search() -> None:
    calib = samples((1, 64, 32), 16, seed=5)
    plain, graph, targets, weights, reference, runner = _direct(outlier_matmul(), calib)
    result = layerwise_tuning(graph, plain.plan, targets, plain.ranges, weights, reference, runner.run)
    (layer,) = result.layers
    assert layer.accepted and result.samples == 16

    # Reference: per output channel c, the plan's symmetric weight grid (7 bits on CPU: the saturation fix)
    # on [-m * max|W[:, c]|, m * max|W[:, c]|].
    w = weights["fc.weight"].astype(np.float64)
    b = weights["fc.bias"].astype(np.float64)
    act = plain.ranges["input"]
    x = np.concatenate([s["input"] for s in calib]).astype(np.float64)
    qx = fq_ref(x, float(act.input_low), float(act.input_high), act.levels)
    f = x @ w + b
    assert plain.ranges["fc.weight"].axis in (1, -1)  # per output channel
    weight_levels = plain.ranges["fc.weight"].levels
    objective, sums, kept_sse = [], [], []
    n = x.size // 32  # output values per channel: 16 samples x 64 rows, enough for a multiplier per channel
    for m in GRID:
        hi = m * np.abs(w).max(axis=0)
        d = (f - (qx @ fq_ref(w, -hi, hi, weight_levels) + b)).reshape(-1, 6)
        sums.append(d.sum(axis=0))
        # SSE with the bias kept, or with the mean shifted out plus its estimation error on new data.
        kept, shifted = np.square(d).sum(axis=0), np.square(d - d.mean(axis=0)).sum(axis=0) * (1 + 1 / n)
        objective.append(np.minimum(kept, shifted))
        kept_sse.append(kept)
    objective = np.array(objective)
    best = np.argmin(objective, axis=0)
    picked = np.array([GRID.index(m) for m in layer.multipliers])
    columns = np.arange(6)
    # Same choice, except where the two candidates tie to float32 rounding of the layer run.
    assert np.allclose(objective[picked, columns], objective[best, columns], rtol=1e-5)
    assert np.all(best < len(GRID)) and np.any(best > 0)  # the outlier makes a narrower range win
    before = float(np.square(f - (qx @ fq_ref(w, -np.abs(w).max(0), np.abs(w).max(0), weight_levels) + b)).mean())
    chosen = objective[best, columns]
    kept_chosen = np.array(kept_sse)[best, columns]
    # A channel whose bias shifts scored its SSE times (1 + 1/n); one that keeps its bias scored the SSE.
    after = float(np.where(chosen < kept_chosen, chosen / (1 + 1 / n), chosen).sum() / (n * 6))
    assert layer.mse_before == pytest.approx(before, rel=1e-4)
    assert layer.mse_after == pytest.approx(after, rel=1e-4)
    assert layer.mse_after < layer.mse_before
    # The bias moves by the mean remaining error of each channel that chose to shift it.
    shifts = np.where(chosen < kept_chosen, np.array(sums)[best, columns] / n, 0.0)
    assert np.any(shifts != 0)
    np.testing.assert_allclose(layer.bias_shift, shifts, atol=1e-5)
    new = result.ranges["fc.weight"]
    np.testing.assert_allclose(new.input_high, np.array(GRID)[best] * np.abs(w).max(axis=0), rtol=1e-6)


def test_few_values_per_channel_share_one_multiplier() -> None:
    calib = samples((1, 4, 32), 16, seed=5)  # 64 output values per channel: too few to fit each channel
    plain, graph, targets, weights, reference, runner = _direct(outlier_matmul(rows=4), calib)
    (layer,) = layerwise_tuning(graph, plain.plan, targets, plain.ranges, weights, reference, runner.run).layers
    assert layer.accepted and len(set(layer.multipliers)) == 1 and layer.multipliers[0] < 1.0


def test_the_pass_reads_only() -> None:
    calib = samples((1, 64, 32), 8, seed=6)
    plain, graph, targets, weights, reference, runner = _direct(outlier_matmul(), calib)
    ranges_before = {k: (r.input_low.copy(), r.input_high.copy()) for k, r in plain.ranges.items()}
    weights_before, reference_before = copy.deepcopy(weights), copy.deepcopy(reference)
    result = layerwise_tuning(graph, plain.plan, targets, plain.ranges, weights, reference, runner.run)
    assert result.ranges and result.updates  # something was tuned, and returned as new values
    for k, (lo, hi) in ranges_before.items():
        np.testing.assert_array_equal(plain.ranges[k].input_low, lo)
        np.testing.assert_array_equal(plain.ranges[k].input_high, hi)
    for k, v in weights_before.items():
        np.testing.assert_array_equal(weights[k], v)
    for got, want in zip(reference, reference_before):
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])


def test_a_grid_without_the_current_range_is_refused() -> None:
    calib = samples((1, 64, 32), 2, seed=6)
    plain, graph, targets, weights, reference, runner = _direct(outlier_matmul(), calib)
    with pytest.raises(ValueError, match="start with 1.0"):
        layerwise_tuning(graph, plain.plan, targets, plain.ranges, weights, reference, runner.run, grid=(0.9, 1.0))


# --------------------------------------------------------------------------------------------
# Through the pipeline, measured on the emitted model


@pytest.mark.parametrize("build, make", [(outlier_matmul, lambda n, s: samples((1, 64, 32), n, s)),
                                         (outlier_conv, conv_samples)])
def test_tuning_lowers_the_output_error_of_the_emitted_model(build, make) -> None:
    model = build()
    calib, held_out = make(16, 7), make(16, 8)
    float_out = _run(model, held_out)
    plain = quantize(model, calib, _options())
    tuned = quantize(model, calib, _options(layerwise_tuning=True))
    error = lambda q: float(np.mean(np.square(_run(q.model, held_out) - float_out)))  # noqa: E731
    assert error(tuned) < 0.7 * error(plain)
    report = tuned.report["passes"]["layerwise_tuning"]
    (layer,) = report["layers"]
    assert layer["accepted"] and layer["mse_after"] < layer["mse_before"]
    assert layer["multiplier"]["changed_channels"] > 0
    assert "layerwise_tuning" not in plain.report["passes"]


def test_a_layer_without_bias_gets_one() -> None:
    tuned = quantize(outlier_conv(), conv_samples(8, 3), _options(layerwise_tuning=True))
    (layer,) = tuned.report["passes"]["layerwise_tuning"]["layers"]
    assert layer["bias_created"] and layer["bias"] == "conv.bias"
    (conv,) = [n for n in tuned.model.graph.node if n.op_type == "Conv"]
    assert len(conv.input) == 3 and conv.input[2].startswith("conv.bias")


def test_tuning_after_bias_correction_starts_from_the_corrected_bias() -> None:
    calib = samples((1, 64, 32), 16, seed=9)
    corrected = quantize(outlier_matmul(), calib, _options(bias_correction="full"))
    both = quantize(outlier_matmul(), calib, _options(bias_correction="full", layerwise_tuning=True))
    (layer,) = both.report["passes"]["layerwise_tuning"]["layers"]
    assert layer["accepted"]
    held_out = samples((1, 64, 32), 16, seed=10)
    float_out = _run(outlier_matmul(), held_out)
    error = lambda q: float(np.mean(np.square(_run(q.model, held_out) - float_out)))  # noqa: E731
    assert error(both) < error(corrected)


def test_same_inputs_give_the_same_bytes() -> None:
    calib = samples((1, 64, 32), 8, seed=11)
    first = quantize(outlier_matmul(), calib, _options(layerwise_tuning=True))
    second = quantize(outlier_matmul(), calib, _options(layerwise_tuning=True))
    assert first.model.SerializeToString() == second.model.SerializeToString()
    assert first.report["passes"] == second.report["passes"]


def test_sample_count_honours_the_option_and_the_subset() -> None:
    assert (layerwise_subset(300), layerwise_subset(300, 50), layerwise_subset(8, 50)) == (16, 50, 8)
    result = quantize(outlier_matmul(), samples((1, 64, 32), 8, seed=12),
                      _options(layerwise_tuning=True, layerwise_samples=3))
    assert result.report["passes"]["layerwise_tuning"]["samples"] == 3
    with pytest.raises(UserError, match="at least 1"):
        QuantizeOptions(layerwise_samples=0)


# --------------------------------------------------------------------------------------------
# Config file and command line


def test_config_turns_it_on_and_names_the_keys_it_ignores(tmp_path: Path) -> None:
    config = tmp_path / "pot.json"
    config.write_text(json.dumps({"compression": {"algorithms": [{"name": "DefaultQuantization", "params": {
        "use_layerwise_tuning": True, "num_samples_for_tuning": 4, "tuning_iterations": 5, "optimizer": "Adam"}}]}}))
    loaded = load_config(config)
    assert "use_layerwise_tuning" not in NOT_RUN_YET
    options = merge_cli(loaded, {})
    assert (options.layerwise_tuning, options.layerwise_samples) == (True, 4)
    said = [n.message for n in loaded.unsupported]
    assert any(m.startswith("tuning_iterations is ignored") for m in said)
    assert any(m.startswith("optimizer is ignored") for m in said)
    assert not any("num_samples_for_tuning" in m or "not run" in m for m in said)


def test_config_without_tuning_says_nothing_about_its_keys(tmp_path: Path) -> None:
    config = tmp_path / "pot.json"
    config.write_text(json.dumps({"compression": {"algorithms": [{"name": "DefaultQuantization", "params": {
        "use_layerwise_tuning": False, "tuning_iterations": 5}}]}}))
    loaded = load_config(config)
    assert merge_cli(loaded, {}).layerwise_tuning is False
    assert not any("tuning" in n.message for n in loaded.unsupported)


def test_cli_flag(capsys, tmp_path: Path) -> None:
    def run(*extra: str) -> dict:
        out, report = tmp_path / "q.onnx", tmp_path / "report.json"
        code = main(["quantize", str(TINY_CNN), "-o", str(out), "--data", str(CALIB), "--subset-size", "4",
                     "--report", str(report), *extra])
        assert code == 0, capsys.readouterr().err
        return json.loads(report.read_text())

    tuned = run("--layerwise-tuning")["passes"]["layerwise_tuning"]
    assert tuned["samples"] == 4 and tuned["layers"]
    assert all(layer["mse_after"] <= layer["mse_before"] for layer in tuned["layers"] if layer["mse_before"])
    assert "layerwise_tuning" not in run()["passes"]


def test_tensor_range_is_replaced_not_edited() -> None:
    calib = samples((1, 64, 32), 8, seed=13)
    plain = quantize(outlier_matmul(), calib, _options())
    tuned = quantize(outlier_matmul(), calib, _options(layerwise_tuning=True))
    before, after = plain.ranges["fc.weight"], tuned.ranges["fc.weight"]
    assert isinstance(after, TensorRange) and after is not before
    assert (after.level_low, after.level_high, after.axis) == (before.level_low, before.level_high, before.axis)
    assert np.all(after.input_high <= before.input_high) and np.any(after.input_high < before.input_high)
    np.testing.assert_array_equal(after.input_low, -after.input_high)  # still symmetric: zero on the grid
