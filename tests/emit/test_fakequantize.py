"""emit_fakequantize: org.openvinotoolkit FakeQuantize nodes, same wiring as the QDQ output, float weights.

onnxruntime has no FakeQuantize kernel, so the numerics are checked with
onnx's reference evaluator given a FakeQuantize implementation (fq_math's
``fake_quantize``) -- that tests the wiring and the bound shapes -- and, when
OpenVINO is installed, with OpenVINO's own ONNX frontend and CPU plugin.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from emit_helpers import (activation_range, conv_chain, fq, initializer, intermediates, make_plan, op, point,
                          weight_point, weight_range)
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

from rewriter.algorithms.fq_math import fake_quantize
from rewriter.algorithms.types import TensorRange
from rewriter.emit import emit_fakequantize
from rewriter.emit.fakequantize import FQ_DOMAIN

X = np.random.default_rng(3).standard_normal((1, 3, 8, 8)).astype(np.float32)


class FakeQuantize(OpRun):
    """FakeQuantize for onnx's reference evaluator, by fq_math."""

    op_domain = FQ_DOMAIN

    def _run(self, x, input_low, input_high, output_low, output_high, levels=None, auto_broadcast=None):
        return (fake_quantize(x, input_low, input_high, levels, output_low, output_high),)


def setup(per_channel_activation: bool = False) -> tuple[onnx.ModelProto, object, dict[str, TensorRange]]:
    m = conv_chain()
    v = intermediates(m, {"x": X}, ["relu1", "relu2"])
    v["x"] = X
    ranges = {t: activation_range(t, v[t]) for t in ("x", "relu1", "relu2")}
    if per_channel_activation:
        from rewriter.algorithms.fq_math import symmetric_range
        high = np.abs(v["relu1"]).max(axis=(0, 2, 3))
        lo, hi = symmetric_range(np.zeros_like(high), high, 256, "activation")
        ranges["relu1"] = TensorRange("relu1", lo, hi, 0, 255, axis=1)
    ranges["conv1.weight"] = weight_range(m, "conv1.weight", 0)
    ranges["conv2.weight"] = weight_range(m, "conv2.weight", None)
    plan = make_plan(point("x", [("conv1", 0)]), weight_point("conv1.weight", ("conv1", 1), 0),
                     point("relu1", [("conv2", 0)], channel_axis=1 if per_channel_activation else None),
                     weight_point("conv2.weight", ("conv2", 1), None), point("relu2", [("y", 0)]))
    return m, plan, ranges


def simulate(m: onnx.ModelProto, ranges: dict[str, TensorRange]) -> np.ndarray:
    h = op("Conv", [fq(X, ranges["x"]), fq(initializer(m, "conv1.weight"), ranges["conv1.weight"]),
                    initializer(m, "conv1.bias")], pads=[1] * 4)
    h = op("Conv", [fq(np.maximum(h, 0), ranges["relu1"]), fq(initializer(m, "conv2.weight"), ranges["conv2.weight"]),
                    initializer(m, "conv2.bias")], pads=[1] * 4)
    return op("Conv", [fq(np.maximum(h, 0), ranges["relu2"]), initializer(m, "y.weight"), initializer(m, "y.bias")],
              pads=[1] * 4)


def test_structure() -> None:
    m, plan, ranges = setup()
    result = emit_fakequantize(m, plan, ranges)
    onnx.checker.check_model(result.model)
    model = result.model
    assert {(o.domain, o.version) for o in model.opset_import} == {("", 17), (FQ_DOMAIN, 1)}
    fqs = [n for n in model.graph.node if n.op_type == "FakeQuantize"]
    assert len(fqs) == 5 and all(n.domain == FQ_DOMAIN for n in fqs)
    assert {onnx.helper.get_attribute_value(n.attribute[0]) for n in fqs} == {255, 256}
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    # Weights stay float (OpenVINO compresses them itself).
    assert inits["conv1.weight"].dtype == np.float32
    assert inits["conv1.weight_input_low"].shape == (8, 1, 1, 1)  # per channel, broadcast along axis 0
    assert inits["conv2.weight_input_low"].shape == ()
    assert inits["x_input_high"].shape == ()
    node = next(n for n in model.graph.node if n.name == "x_FakeQuantize")
    assert list(node.input) == ["x", "x_input_low", "x_input_high", "x_input_low", "x_input_high"]
    conv1 = next(n for n in model.graph.node if n.name == "conv1")
    assert list(conv1.input[:2]) == ["x_fakequantized", "conv1.weight_fakequantized"]
    assert [t.storage_dtype for t in result.tensors] == ["float32"] * 5


def test_per_channel_activation_bounds_broadcast_along_axis_1() -> None:
    m, plan, ranges = setup(per_channel_activation=True)
    result = emit_fakequantize(m, plan, ranges)
    inits = {t.name: numpy_helper.to_array(t) for t in result.model.graph.initializer}
    assert inits["relu1_input_high"].shape == (1, 8, 1, 1)
    got = ReferenceEvaluator(result.model, new_ops=[FakeQuantize]).run(None, {"x": X})[0]
    np.testing.assert_allclose(got, simulate(m, ranges), rtol=1e-5, atol=1e-5)


def test_reference_evaluation_equals_simulation() -> None:
    m, plan, ranges = setup()
    result = emit_fakequantize(m, plan, ranges)
    got = ReferenceEvaluator(result.model, new_ops=[FakeQuantize]).run(None, {"x": X})[0]
    # The reference evaluator's Conv sums in another order than onnxruntime's: float tolerance.
    np.testing.assert_allclose(got, simulate(m, ranges), rtol=1e-5, atol=1e-5)


def test_deterministic_and_input_untouched() -> None:
    m, plan, ranges = setup()
    before = m.SerializeToString()
    assert (emit_fakequantize(m, plan, ranges).model.SerializeToString()
            == emit_fakequantize(m, plan, ranges).model.SerializeToString())
    assert m.SerializeToString() == before


def test_unlisted_consumers_and_graph_outputs_keep_float() -> None:
    m, _, ranges = setup()
    plan = make_plan(point("relu2", at_output=True))
    m.graph.output.append(onnx.helper.make_tensor_value_info("relu2", onnx.TensorProto.FLOAT, [1, 8, 8, 8]))
    result = emit_fakequantize(m, plan, ranges)
    assert result.model.graph.output[-1].name == "relu2"
    y = next(n for n in result.model.graph.node if n.name == "y")
    assert y.input[0] == "relu2_fakequantized"


def test_openvino_runs_the_emitted_model(tmp_path) -> None:  # noqa: ANN001
    ov = pytest.importorskip("openvino", reason="OpenVINO is optional; install it to check its ONNX frontend")
    m, plan, ranges = setup(per_channel_activation=True)
    path = tmp_path / "fq.onnx"
    onnx.save(emit_fakequantize(m, plan, ranges).model, path)
    core = ov.Core()
    # f32: on CPUs with bf16 support OpenVINO would otherwise compute in bf16 and differ by far more.
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled({"x": X})[compiled.output(0)]
    expected = simulate(m, ranges)
    # OpenVINO runs the FakeQuantizes as integer kernels with its own requantization arithmetic.
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * float(np.abs(expected).max()))


def test_range_with_zero_off_the_grid_is_still_emitted() -> None:
    """FakeQuantize takes any range (QDQ could not: zero must be a level there)."""
    m, _, ranges = setup()
    ranges["relu2"] = TensorRange("relu2", np.float32(0.5), np.float32(3.0), 0, 255)
    result = emit_fakequantize(m, make_plan(point("relu2", [("y", 0)])), ranges)
    assert "no integer form" in result.tensor("relu2").note
    got = ReferenceEvaluator(result.model, new_ops=[FakeQuantize]).run(None, {"x": X})[0]
    h = op("Conv", [X, initializer(m, "conv1.weight"), initializer(m, "conv1.bias")], pads=[1] * 4)
    h = op("Conv", [np.maximum(h, 0), initializer(m, "conv2.weight"), initializer(m, "conv2.bias")], pads=[1] * 4)
    expected = op("Conv", [fq(np.maximum(h, 0), ranges["relu2"]), initializer(m, "y.weight"), initializer(m, "y.bias")],
                  pads=[1] * 4)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
