"""Both output formats in OpenVINO, against onnxruntime and each other; the self-check's OpenVINO path.

OpenVINO is the ``openvino`` extra (part of the test extra, so CI runs these); each test that needs it skips
without it. OpenVINO runs on its CPU plugin with float32 inference precision (its default is bf16 on CPUs
that have it), the precision the self-check uses too.

Tolerance, for the QDQ output in OpenVINO against the same file in onnxruntime, and for the FakeQuantize
output against the QDQ output, both in OpenVINO: the same grids, but each runtime rounds its requantizations
(and OpenVINO each FakeQuantize) its own way, so a value near a rounding tie may take the neighbouring level
and carry that step on through the later layers. So: their difference under a quarter of the quantization
error itself (norms over all samples' output values) and their SQNR against the float model within 0.5 dB.
(A flip before a classifier's last layer moves every logit of that sample, so no share of exactly equal
values is promised.)
"""
from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from functools import cache
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import models
import rewriter
from rewriter.cli import main
from rewriter.emit import runtime_check

MODELS = ["tiny_cnn", "depthwise_after_conv", "matmul_const_weights", "attention_block"]


def openvino_runner(model: onnx.ModelProto) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    ov = pytest.importorskip("openvino", reason="OpenVINO is optional (the openvino extra)")
    core = ov.Core()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        onnx.save(model, path)
        compiled = core.compile_model(core.read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return lambda feeds: [np.asarray(compiled(feeds)[o]) for o in compiled.outputs]


def onnxruntime_runner(model: onnx.ModelProto) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return lambda feeds: session.run(None, feeds)


@cache
def outputs_of(builder: str) -> tuple[onnx.ModelProto, onnx.ModelProto, onnx.ModelProto, list[dict[str, Any]]]:
    """The float model, its QDQ and FakeQuantize outputs for the CPU target (one plan), and held-out samples."""
    model = getattr(models, builder)()
    data = models.random_inputs(model, 16, seed=2)
    common = {"target": "CPU", "subset_size": 8, "self_check": False}
    qdq = rewriter.quantize(model, data=data[:8], output_format="qdq", **common).model
    fq = rewriter.quantize(model, data=data[:8], output_format="fakequantize", **common).model
    return model, qdq, fq, data[8:]


def stacked(run: Callable[[dict[str, np.ndarray]], list[np.ndarray]], samples: list[dict[str, Any]]) -> np.ndarray:
    return np.stack([run(s)[0] for s in samples])


def sqnr_db(reference: np.ndarray, value: np.ndarray) -> float:
    return float(20 * np.log10(np.linalg.norm(reference) / np.linalg.norm(reference - value)))


def assert_same_quantization(got: np.ndarray, quantized: np.ndarray, reference: np.ndarray) -> None:
    """``got`` is ``quantized`` up to level flips at rounding ties (module docstring)."""
    error = np.linalg.norm(reference - quantized)
    assert error > 0  # quantized: not the float model
    assert np.linalg.norm(got - quantized) <= 0.25 * error
    assert abs(sqnr_db(reference, got) - sqnr_db(reference, quantized)) <= 0.5


@pytest.mark.parametrize("builder", MODELS)
def test_qdq_output_runs_in_openvino_as_in_onnxruntime(builder: str) -> None:
    model, qdq, _, samples = outputs_of(builder)
    in_openvino = stacked(openvino_runner(qdq), samples)
    in_onnxruntime = stacked(onnxruntime_runner(qdq), samples)
    reference = stacked(onnxruntime_runner(model), samples)
    assert_same_quantization(in_openvino, in_onnxruntime, reference)


@pytest.mark.parametrize("builder", MODELS)
def test_fakequantize_output_runs_in_openvino_close_to_the_qdq_output(builder: str) -> None:
    model, qdq, fq, samples = outputs_of(builder)
    fakequantized = stacked(openvino_runner(fq), samples)
    quantized = stacked(openvino_runner(qdq), samples)
    assert_same_quantization(fakequantized, quantized, stacked(onnxruntime_runner(model), samples))


def test_onnxruntime_refuses_the_fakequantize_output() -> None:
    """What the README says: the FakeQuantize file is for OpenVINO only."""
    _, _, fq, _ = outputs_of("tiny_cnn")
    with pytest.raises(Exception, match="FakeQuantize"):
        onnxruntime_runner(fq)


@pytest.mark.parametrize("builder", MODELS)
def test_fakequantize_file_is_within_1_1x_of_the_qdq_file(builder: str) -> None:
    _, qdq, fq, _ = outputs_of(builder)
    assert len(fq.SerializeToString()) <= 1.1 * len(qdq.SerializeToString())


def test_self_check_runs_the_fakequantize_output_in_openvino() -> None:
    """The report's figures are those of the output run in OpenVINO against the float model in onnxruntime."""
    pytest.importorskip("openvino", reason="OpenVINO is optional (the openvino extra)")
    model = models.tiny_cnn()
    data = models.random_inputs(model, 16, seed=2)
    result = rewriter.quantize(model, data=data, output_format="fakequantize", subset_size=8, check_samples=4)
    fidelity = result.report["fidelity"]
    assert fidelity["runtime"] == "openvino" and fidelity["inference_precision"] == "f32"
    assert fidelity["held_out"] and "skipped" not in fidelity
    samples = [data[i] for i in fidelity["sample_ids"]]
    want = sqnr_db(stacked(onnxruntime_runner(model), samples), stacked(openvino_runner(result.model), samples))
    (output,) = fidelity["outputs"]
    assert output["sqnr_db"] == pytest.approx(want, abs=1e-3)
    assert 20 < want < 80


def test_fidelity_guard_reverts_through_openvino() -> None:
    """Below the threshold, the guard's every attempt is emitted as FakeQuantize and measured in OpenVINO."""
    pytest.importorskip("openvino", reason="OpenVINO is optional (the openvino extra)")
    model = models.tiny_cnn()
    data = models.random_inputs(model, 16, seed=2)
    result = rewriter.quantize(model, data=data, output_format="fakequantize", subset_size=8, check_samples=4,
                               guard_threshold=200, guard_budget=2, guard_batch=1)
    fidelity = result.report["fidelity"]
    assert fidelity["runtime"] == "openvino"
    guard = fidelity["guard"]
    assert guard["measurements"] and all(m["worst_sqnr_db"] is not None for m in guard["measurements"]), guard
    assert guard["reverts"], guard
    reverted = {r["node"] for r in guard["reverts"]}
    assert all(result.plan.node(n).status == "reverted" for n in reverted)
    # Its tensors are not exposed under their ONNX names in OpenVINO: the candidates keep the per-tensor order.
    assert guard["ranking"]["by"] == "per-tensor SQNR" and "OpenVINO" in guard["ranking"]["skipped"]
    # The output written is the guarded one and still loads and runs in OpenVINO.
    assert np.all(np.isfinite(openvino_runner(result.model)(data[-1])[0]))


def test_without_openvino_the_self_check_says_plainly_it_was_skipped(tmp_path: Path, capsys: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(runtime_check.importlib.util, "find_spec",
                        lambda name, *a: None if name == "openvino" else real_find_spec(name, *a))
    model_path, data = tmp_path / "m.onnx", tmp_path / "data"
    model = models.tiny_cnn()
    onnx.save(model, model_path)
    data.mkdir()
    for i, sample in enumerate(models.random_inputs(model, 12, seed=2)):
        np.savez(data / f"{i:03d}.npz", **sample)
    report = tmp_path / "r.json"
    code = main(["quantize", str(model_path), "-o", str(tmp_path / "q.onnx"), "--data", str(data), "--format",
                 "fakequantize", "--subset-size", "8", "--report", str(report), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "self-check skipped: FakeQuantize output runs in OpenVINO, which is not installed" in out
    fidelity = json.loads(report.read_text())["fidelity"]
    assert fidelity["skipped"].startswith("self-check skipped") and fidelity["guard"] is None


def test_openvino_simulated_computes_every_fakequantize_in_float() -> None:
    """With its low-precision transformations off, OpenVINO gives numpy's FakeQuantize, element by element."""
    pytest.importorskip("openvino", reason="OpenVINO is optional (the openvino extra)")
    from onnx import TensorProto, helper, numpy_helper

    low, high, levels = -1.0, 1.5, 256
    bounds = [numpy_helper.from_array(np.array(v, np.float32), n) for v, n in ((low, "lo"), (high, "hi"))]
    fq = helper.make_node("FakeQuantize", ["x", "lo", "hi", "lo", "hi"], ["q"], domain="org.openvinotoolkit",
                          levels=levels)
    graph = helper.make_graph([fq, helper.make_node("Relu", ["q"], ["y"])], "fq",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], bounds)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                    helper.make_opsetid("org.openvinotoolkit", 1)])
    x = np.random.default_rng(3).uniform(-2, 2, (1, 64)).astype(np.float32)
    step = (high - low) / (levels - 1)
    want = np.maximum(np.round((np.clip(x.astype(np.float64), low, high) - low) / step) * step + low, 0.0)
    got = runtime_check.ModelRunner(model, runtime_check.SIMULATED, "the model").run([{"x": x}])[0]["y"]
    np.testing.assert_allclose(got, want, atol=1e-5 * step)


def test_a_fakequantize_output_failing_only_in_openvinos_integer_execution_says_so(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The check fails in OpenVINO; simulated in float the output clears the threshold: the warning tells the
    two apart, and the report keeps the simulated figures."""
    pytest.importorskip("openvino", reason="OpenVINO is optional (the openvino extra)")
    import rewriter.tuning.self_check as self_check

    class IntegerFault(runtime_check.ModelRunner):
        """OpenVINO's integer execution, as if it lost the output: noise as large as the signal."""
        def run(self, samples):  # type: ignore[no-untyped-def]
            runs = super().run(samples)
            if self.runtime != "openvino" or self.what != "the quantized model":
                return runs
            rng = np.random.default_rng(0)
            return [{k: v + rng.standard_normal(v.shape).astype(v.dtype) * float(np.std(v) + 1) for k, v in r.items()}
                    for r in runs]
    monkeypatch.setattr(self_check, "ModelRunner", IntegerFault)
    model = models.tiny_cnn()
    data = models.random_inputs(model, 16, seed=2)
    result = rewriter.quantize(model, data=data, output_format="fakequantize", subset_size=8, check_samples=4,
                               guard=False)
    fidelity = result.report["fidelity"]
    assert fidelity["below_threshold"]
    simulated = fidelity["openvino_simulated"]
    assert simulated["worst_sqnr_db"] >= fidelity["threshold_db"] > fidelity["worst_sqnr_db"]
    assert "low-precision transformations off" in fidelity["warning"]
    assert "the quantization is sound" in fidelity["warning"]
