"""`rewriter quantize` end to end on the bundled example and on built models."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import models
from ort_kernels import u8s8_saturates
from rewriter.cli import main
from rewriter.emit.ort_check import fused_counts
from rewriter.errors import UserError
from rewriter.pipeline import QuantizeOptions, quantize, quantize_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "tiny_cnn.onnx"
CALIB = ROOT / "examples" / "calib"


def _run(model: onnx.ModelProto | str, feeds: dict) -> list[np.ndarray]:
    data = model if isinstance(model, str) else model.SerializeToString()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"]).run(None, feeds)


def _samples() -> list[dict[str, np.ndarray]]:
    return [{"input": np.load(p)[None] if np.load(p).ndim == 3 else np.load(p)}
            for p in sorted(CALIB.glob("*.npy"))]


def test_cli_quantize_writes_a_model_that_runs_close_to_float(tmp_path, capsys) -> None:
    out, report = tmp_path / "q.onnx", tmp_path / "report.json"
    code = main(["quantize", str(EXAMPLE), "-o", str(out), "--data", str(CALIB), "--report", str(report)])
    assert code == 0, capsys.readouterr().err
    samples = _samples()
    float_out = np.concatenate([_run(str(EXAMPLE), s)[0] for s in samples])
    quant_out = np.concatenate([_run(str(out), s)[0] for s in samples])
    sqnr = 10 * np.log10(np.sum(float_out ** 2) / np.sum((float_out - quant_out) ** 2))
    assert sqnr > 20, f"output SQNR {sqnr:.1f} dB"
    assert np.mean(float_out.argmax(1) == quant_out.argmax(1)) >= 0.9
    doc = json.loads(report.read_text())
    assert doc["schema"] == "rewriter.pipeline/1"
    for entry in doc["fakequantize"]:
        assert {"range", "scale", "zero_point", "sqnr_db", "storage_dtype"} <= set(entry)
    weights = [e for e in doc["fakequantize"] if e["role"] == "weight"]
    assert weights and all(e["storage_dtype"] == "int8" and e["sqnr_db"] > 30 for e in weights)


def test_onnxruntime_runs_the_convolutions_as_integer_kernels(tmp_path) -> None:
    out = tmp_path / "q.onnx"
    quantize_file(EXAMPLE, out, str(CALIB))
    counts = fused_counts(str(out))
    graph = onnx.load(str(EXAMPLE)).graph
    convs = sum(1 for n in graph.node if n.op_type == "Conv")
    assert counts.get("QLinearConv", 0) >= convs - 1, counts


def test_same_inputs_same_bytes(tmp_path) -> None:
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    quantize_file(EXAMPLE, a, str(CALIB), QuantizeOptions(subset_size=16, seed=3))
    quantize_file(EXAMPLE, b, str(CALIB), QuantizeOptions(subset_size=16, seed=3))
    assert a.read_bytes() == b.read_bytes()


def test_refuses_to_overwrite_the_input(tmp_path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(EXAMPLE.read_bytes())
    with pytest.raises(UserError, match="refusing to overwrite"):
        quantize_file(model, model, str(CALIB))
    assert model.read_bytes() == EXAMPLE.read_bytes()


def test_bad_data_is_a_user_error_and_leaves_no_output(tmp_path, capsys) -> None:
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "x.npy", np.zeros((1, 3, 7, 7), np.float32))
    out = tmp_path / "q.onnx"
    code = main(["quantize", str(EXAMPLE), "-o", str(out), "--data", str(data)])
    err = capsys.readouterr().err
    assert code == 2 and "x.npy" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".q.onnx*"))


@pytest.mark.parametrize("preset", ["performance", "mixed", "accuracy"])
def test_presets_quantize_a_residual_block(preset) -> None:
    model = models.residual_block()
    samples = models.random_inputs(model, n=8, seed=1)
    result = quantize(model, samples, QuantizeOptions(preset=preset))
    for sample in samples[:2]:
        ref = _run(model, sample)[0]
        got = _run(result.model, sample)[0]
        rel = np.linalg.norm(ref - got) / np.linalg.norm(ref)
        assert rel < 0.1, f"{preset}: relative error {rel:.3f}"


def test_attention_block_keeps_float_subgraphs_and_stays_accurate() -> None:
    model = models.attention_block()
    samples = models.random_inputs(model, n=8, seed=2)
    result = quantize(model, samples, QuantizeOptions(preset="mixed"))
    for sample in samples[:2]:
        ref = _run(model, sample)[0]
        got = _run(result.model, sample)[0]
        assert np.all(np.isfinite(got))
        assert np.linalg.norm(ref - got) / np.linalg.norm(ref) < 0.1


def test_ort_target_requantizes_a_conv_whose_bias_comes_after_data_movement() -> None:
    # Without a QuantizeLinear after the Conv, onnxruntime would dequantize the weights on every run and
    # convolve in float: slower than the float model (Google's magika model, exported from JAX).
    model = models.conv_sliced_bias()
    samples = models.random_inputs(model, n=8, seed=1)
    result = quantize(model, samples, QuantizeOptions(target="ORT"))
    conv_out = result.plan.point("conv")
    assert conv_out is not None and conv_out.trail[0].source == "requantize_conv_before_bias"
    assert fused_counts(result.model).get("QLinearConv") == 1
    for sample in samples[:2]:
        ref, got = _run(model, sample)[0], _run(result.model, sample)[0]
        assert np.linalg.norm(ref - got) / np.linalg.norm(ref) < 0.05


def _fused_and_unfused(model: onnx.ModelProto, feeds: dict) -> tuple[np.ndarray, np.ndarray]:
    runs = []
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        options.log_severity_level = 3
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        runs.append(session.run(None, feeds)[0])
    return runs[0], runs[1]


def test_a_dense_layer_exported_with_a_1_by_n_bias_runs_as_an_integer_gemm() -> None:
    # TensorFlow/JAX exports add a [1, N] bias after the MatMul. onnxruntime fuses MatMul + Add into a Gemm
    # before it looks at Q/DQ pairs, and that Gemm runs as QGemm only with a 1-D int32 bias: normalize stores
    # the bias as [N], so the plan gives it one (before, the layer ran as a float Gemm behind Q/DQ work).
    rng = np.random.default_rng(5)
    w = onnx.numpy_helper.from_array(rng.standard_normal((32, 16)).astype(np.float32) * 0.2, "w")
    b = onnx.numpy_helper.from_array(rng.standard_normal((1, 16)).astype(np.float32), "b")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["x", "w"], ["mm"], name="dense"),
         onnx.helper.make_node("Add", ["mm", "b"], ["y"], name="dense_bias")], "dense",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 32])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 16])], [w, b])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    samples = [{"x": rng.standard_normal((1, 32)).astype(np.float32)} for _ in range(16)]
    result = quantize(model, samples, QuantizeOptions(target="ORT", speed_guard=False, check_samples=4))
    assert any(b.node == "dense" for b in result.plan.int32_biases)
    counts = fused_counts(result.model)
    assert counts.get("QGemm") == 1 and "Gemm" not in counts

@pytest.mark.parametrize("preset", ["performance", "accuracy"])
@pytest.mark.parametrize("target", ["CPU", "ANY", "ORT"])
def test_integer_kernels_compute_the_qdq_graph_exactly_on_every_x86_cpu(target, preset) -> None:
    # The example's images fill the whole uint8 range; full-range int8 weights would overflow the int16 pair
    # sums of onnxruntime's uint8 x int8 kernels on CPUs without VNNI. The targets' saturation fix prevents it.
    result = quantize(str(EXAMPLE), str(CALIB), QuantizeOptions(target=target, preset=preset, subset_size=8))
    assert fused_counts(result.model).get("QLinearConv", 0) >= 3
    for sample in _samples()[:4]:
        fused, unfused = _fused_and_unfused(result.model, sample)
        np.testing.assert_allclose(fused, unfused, rtol=0, atol=1e-5 * float(np.abs(unfused).max()))


def test_without_the_saturation_fix_the_integer_kernels_are_exact_only_with_vnni() -> None:
    result = quantize(str(EXAMPLE), str(CALIB), QuantizeOptions(target="CPU", subset_size=8, saturation_fix="no"))
    assert all(p.config.level_high == 127 for p in result.plan.points if p.role == "weight")
    worst = max(float(np.abs(np.subtract(*_fused_and_unfused(result.model, s))).max()) for s in _samples()[:4])
    if u8s8_saturates():
        assert worst > 1e-3  # the case the fix exists for: this test fails if the example stops showing it
    else:
        assert worst < 1e-5


def test_fakequantize_format_emits_openvino_nodes(tmp_path) -> None:
    result = quantize(str(EXAMPLE), str(CALIB), QuantizeOptions(output_format="fakequantize", subset_size=8))
    ops = {n.op_type for n in result.model.graph.node}
    assert "FakeQuantize" in ops and "QuantizeLinear" not in ops


@pytest.mark.parametrize("target", ["GNA", "VPU", "GPU", "ANY", "ORT"])
def test_every_builtin_target_quantizes_the_example_into_a_runnable_model(target) -> None:
    result = quantize(str(EXAMPLE), str(CALIB), QuantizeOptions(target=target, subset_size=8))
    sample = _samples()[0]
    ref, got = _run(str(EXAMPLE), sample)[0], _run(result.model, sample)[0]
    assert np.linalg.norm(ref - got) / np.linalg.norm(ref) < 0.2
    if target == "GNA":
        # 16-bit activations are stored as 16-bit types; the 32-bit accumulator grid stays float, and says why.
        notes = [e for e in result.report["emitted_extra"] if e.get("storage_dtype") == "float32"]
        dtypes = {e.get("storage_dtype") for e in result.report["fakequantize"] if e["role"] == "activation"}
        assert "uint16" in dtypes
        wide = [e for e in result.report["fakequantize"] if e["range"]["levels"] > 65536]
        assert wide and all(e.get("storage_dtype") == "float32" for e in wide)
        del notes


def test_default_quantization_runs_alignment_and_bias_correction_and_reports_them(tmp_path, capsys) -> None:
    seed = ROOT / "tests" / "config" / "data" / "seed_example.json"
    out, report = tmp_path / "q.onnx", tmp_path / "r.json"
    code = main(["quantize", str(EXAMPLE), "-o", str(out), "--config", str(seed), "--data", str(CALIB),
                 "--report", str(report)])
    assert code == 0, capsys.readouterr().err
    doc = json.loads(report.read_text())
    assert set(doc["passes"]) == {"smoothing", "channel_alignment", "bias_correction"}
    assert doc["passes"]["smoothing"]["smoothed"] == []  # a CNN: no MatMul input with outlier channels
    layers = doc["passes"]["bias_correction"]["layers"]
    assert layers and doc["passes"]["bias_correction"]["method"] == "FastBiasCorrection"
    assert any(layer["accepted"] for layer in layers)
    sample = _samples()[0]
    ref, got = _run(str(EXAMPLE), sample)[0], _run(str(out), sample)[0]
    assert np.linalg.norm(ref - got) / np.linalg.norm(ref) < 0.2


def test_bias_correction_none_on_the_command_line_overrides_the_config(tmp_path, capsys) -> None:
    seed = ROOT / "tests" / "config" / "data" / "seed_example.json"
    report = tmp_path / "r.json"
    code = main(["quantize", str(EXAMPLE), "-o", str(tmp_path / "q.onnx"), "--config", str(seed), "--data",
                 str(CALIB), "--report", str(report), "--bias-correction", "none"])
    assert code == 0, capsys.readouterr().err
    assert "bias_correction" not in json.loads(report.read_text())["passes"]


def test_full_bias_correction_through_the_api() -> None:
    result = quantize(str(EXAMPLE), str(CALIB), QuantizeOptions(bias_correction="full", subset_size=16))
    assert result.report["passes"]["bias_correction"]["method"] == "BiasCorrection"
    assert result.report["passes"]["bias_correction"]["samples"] == 3   # max(int(0.2 * 16), 1)


def test_a_negative_declared_dim_is_dynamic_end_to_end() -> None:
    """paddle2onnx declares a dynamic batch (and image size) as dim_value -1; onnxruntime reads it as dynamic.

    (dim_value 0 is not dynamic for onnxruntime: it refuses any other size there, so it stays a fixed size.)
    """
    from onnx import TensorProto, helper

    b = models.GraphBuilder(0)
    x = b.node("Relu", [b.conv("x", "conv1", 3, 8)], "relu1")
    x = b.node("Flatten", [b.node("GlobalAveragePool", [x], "gap")], "flat", axis=1)
    b.node("Gemm", [x, b.weight("fc.weight", (4, 8))], "output", transB=1)
    graph = helper.make_graph(b.nodes, "classifier", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                       [-1, 3, -1, -1])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [-1, 4])], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    rng = np.random.default_rng(0)
    samples = [{"x": rng.standard_normal((1, 3, 48, 192)).astype(np.float32)} for _ in range(3)]
    for target in ("ORT", "CPU"):
        result = quantize(model, samples, QuantizeOptions(target=target))
        for feeds in (samples[0], {"x": rng.standard_normal((2, 3, 16, 24)).astype(np.float32)}):
            quant_out, float_out = _run(result.model, feeds)[0], _run(model, feeds)[0]
            assert quant_out.shape == float_out.shape == (feeds["x"].shape[0], 4)
            assert np.allclose(quant_out, float_out, atol=0.1 * np.abs(float_out).max() + 1e-3)
