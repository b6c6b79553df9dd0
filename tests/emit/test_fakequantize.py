"""emit_fakequantize: org.openvinotoolkit FakeQuantize nodes on activations, same wiring as the QDQ output,
weights compressed (integer constant -> Cast -> Sub zero point -> Mul scale).

onnxruntime has no FakeQuantize kernel, so the numerics are checked with
onnx's reference evaluator given a FakeQuantize implementation (fq_math's
``fake_quantize``) -- that tests the wiring and the bound shapes --, the
compressed weights by running their Cast/Sub/Mul nodes in onnxruntime against
the FakeQuantize of the float weight, and, when OpenVINO is installed, with
OpenVINO's own ONNX frontend and CPU plugin.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from emit_helpers import (activation_range, conv_chain, fq, initializer, intermediates, make_plan, op, point,
                          run, weight_point, weight_range)
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

from rewriter.algorithms.fq_math import fake_quantize
from rewriter.algorithms.types import TensorRange
from rewriter.emit import emit_fakequantize, emit_qdq
from rewriter.emit.fakequantize import FQ_DOMAIN
from rewriter.spec.model import QuantizerConfig

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
    assert len(fqs) == 3 and all(n.domain == FQ_DOMAIN for n in fqs)  # the three activations
    assert {onnx.helper.get_attribute_value(n.attribute[0]) for n in fqs} == {256}
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    # Weights: int8 constants, scales that broadcast along the channel axis, no float copy left.
    assert "conv1.weight" not in inits and "conv2.weight" not in inits
    assert inits["conv1.weight_quantized"].dtype == np.int8 and inits["conv1.weight_quantized"].shape == (8, 3, 3, 3)
    assert inits["conv1.weight_scale"].shape == (8, 1, 1, 1)
    assert inits["conv2.weight_scale"].shape == ()
    assert inits["x_input_high"].shape == ()
    nodes = {n.name: n for n in model.graph.node}
    assert list(nodes["x_FakeQuantize"].input) == ["x", "x_input_low", "x_input_high", "x_input_low", "x_input_high"]
    # Symmetric weights: zero point 0 everywhere, so no Sub.
    assert (nodes["conv1.weight_Cast"].input[0], nodes["conv1.weight_Mul"].input) == (
        "conv1.weight_quantized", ["conv1.weight_converted", "conv1.weight_scale"])
    assert onnx.helper.get_attribute_value(nodes["conv1.weight_Cast"].attribute[0]) == TensorProto.FLOAT
    assert not [n for n in model.graph.node if n.op_type == "Sub"]
    assert list(nodes["conv1"].input[:2]) == ["x_fakequantized", "conv1.weight_dequantized"]
    assert len(model.graph.node) == len(m.graph.node) + 3 + 2 * 2
    assert [t.storage_dtype for t in result.tensors] == ["float32", "int8", "float32", "int8", "float32"]
    weight = result.tensor("conv1.weight")
    assert weight is not None and weight.bytes_before == 8 * 27 * 4 and weight.bytes_after == 8 * 27 + 8 * 4


def decompressed(model: onnx.ModelProto, weight: str) -> np.ndarray:
    """``weight``'s value as its Cast/Sub/Mul nodes give it, run in onnxruntime (no FakeQuantize involved)."""
    chain = [n for n in model.graph.node if n.op_type in ("Cast", "Sub", "Mul") and n.name.startswith(weight)]
    read = {i for n in chain for i in n.input}
    out = f"{weight}_dequantized"
    scale = next(t for t in model.graph.initializer if t.name == f"{weight}_scale")
    graph = helper.make_graph(chain, "decompress", [], [helper.make_tensor_value_info(out, scale.data_type, None)],
                              [t for t in model.graph.initializer if t.name in read])
    return run(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), {})[0]


def openvino_fakequantize(w: np.ndarray, low: np.ndarray, high: np.ndarray, levels: int,
                          axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """OpenVINO's FakeQuantize, written out from its definition in float64 (output range = input range):
    the level index of each value and the value it gives."""
    if axis is not None:
        shape = [1] * w.ndim
        shape[axis] = -1
        low, high = low.reshape(shape), high.reshape(shape)
    low, high, x = low.astype(np.float64), high.astype(np.float64), w.astype(np.float64)
    index = np.where(x <= low, 0, np.where(x > high, levels - 1, np.rint((x - low) / (high - low) * (levels - 1))))
    return index, index / (levels - 1) * (high - low) + low


@pytest.mark.parametrize("weight, axis", [("conv1.weight", 0), ("conv2.weight", None)])
def test_compressed_weight_is_the_fakequantize_of_the_float_weight(weight: str, axis: int | None) -> None:
    """The decompressed weight equals, bit for bit, what the FakeQuantize the weight used to carry gave (fq_math's
    fake_quantize, which the reference evaluator runs for it), and OpenVINO's FakeQuantize formula written out:
    the same level everywhere, the same value to float32 rounding."""
    m, plan, ranges = setup()
    got = decompressed(emit_fakequantize(m, plan, ranges).model, weight)
    w, r = initializer(m, weight), ranges[weight]
    assert got.dtype == np.float32 and got.shape == w.shape
    np.testing.assert_array_equal(got, fq(w, r))
    index, value = openvino_fakequantize(w, np.asarray(r.input_low), np.asarray(r.input_high), r.levels, axis)
    step = (np.asarray(r.input_high, np.float64) - np.asarray(r.input_low, np.float64)) / (r.levels - 1)
    if axis is not None:
        step = step.reshape(-1, 1, 1, 1)
    np.testing.assert_array_equal(np.rint(got / step) + (r.levels - 1) // 2, index)
    np.testing.assert_allclose(got, value, rtol=1e-6, atol=1e-7 * float(np.abs(w).max()))
    assert len(np.unique(index)) > 100  # the test exercises most of the grid


def test_asymmetric_weight_subtracts_its_zero_point_in_uint8() -> None:
    m, _, ranges = setup()
    w = initializer(m, "conv1.weight")
    from rewriter.algorithms.fq_math import asymmetric_range
    lo, hi = asymmetric_range(np.minimum(w.min(axis=(1, 2, 3)), 0) + 0.01, w.max(axis=(1, 2, 3)), 256)
    ranges["conv1.weight"] = TensorRange("conv1.weight", lo, hi, 0, 255, axis=0)
    asym = QuantizerConfig("q8_w_asym", 8, "asymmetric", "perchannel", level_low=0, level_high=255)
    plan = make_plan(weight_point("conv1.weight", ("conv1", 1), 0, config=asym))
    result = emit_fakequantize(m, plan, ranges)
    inits = {t.name: numpy_helper.to_array(t) for t in result.model.graph.initializer}
    assert inits["conv1.weight_quantized"].dtype == np.uint8
    zero_point = inits["conv1.weight_zero_point"]
    assert zero_point.shape == (8, 1, 1, 1) and zero_point.dtype == np.float32 and np.any(zero_point != 0)
    assert [n.op_type for n in result.model.graph.node][:3] == ["Cast", "Sub", "Mul"]
    np.testing.assert_array_equal(decompressed(result.model, "conv1.weight"), fq(w, ranges["conv1.weight"]))
    assert result.tensor("conv1.weight").zero_point == tuple(int(z) for z in zero_point.ravel())


def test_four_bit_weights_are_stored_in_int8() -> None:
    m, _, ranges = setup()
    ranges["conv1.weight"] = weight_range(m, "conv1.weight", 0, bits=4)
    w4 = QuantizerConfig("q4_w", 4, "symmetric", "perchannel", level_low=-7, level_high=7)
    result = emit_fakequantize(m, make_plan(weight_point("conv1.weight", ("conv1", 1), 0, config=w4)), ranges)
    stored = next(t for t in result.model.graph.initializer if t.name == "conv1.weight_quantized")
    assert stored.data_type == TensorProto.INT8 and set(np.unique(numpy_helper.to_array(stored))) <= set(range(-7, 8))
    np.testing.assert_array_equal(decompressed(result.model, "conv1.weight"),
                                  fq(initializer(m, "conv1.weight"), ranges["conv1.weight"]))


def test_float16_weight_decompresses_to_what_the_qdq_output_gives() -> None:
    """A float16 weight: int8, Cast to float16, a float16 scale -- the values of the QDQ output's DequantizeLinear."""
    m = conv_chain()
    w = initializer(m, "conv1.weight").astype(np.float16)
    m.graph.initializer.remove(next(t for t in m.graph.initializer if t.name == "conv1.weight"))
    m.graph.initializer.append(numpy_helper.from_array(w, "conv1.weight"))
    ranges = {"conv1.weight": weight_range(m, "conv1.weight", 0)}
    plan = make_plan(weight_point("conv1.weight", ("conv1", 1), 0))
    got = decompressed(emit_fakequantize(m, plan, ranges).model, "conv1.weight")
    qdq = emit_qdq(m, plan, ranges).model
    dq = next(n for n in qdq.graph.node if n.op_type == "DequantizeLinear")
    graph = helper.make_graph([dq], "dq", [], [helper.make_tensor_value_info(dq.output[0], TensorProto.FLOAT16, None)],
                              [t for t in qdq.graph.initializer if t.name in dq.input])
    want = run(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9), {})[0]
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, want)


def test_weight_without_integer_form_keeps_a_fakequantize_on_its_float_values() -> None:
    m, _, ranges = setup()
    ranges["conv2.weight"] = TensorRange("conv2.weight", np.float32(0.1), np.float32(0.9), -127, 127)
    result = emit_fakequantize(m, make_plan(weight_point("conv2.weight", ("conv2", 1), None)), ranges)
    node = next(n for n in result.model.graph.node if n.name == "conv2.weight_FakeQuantize")
    assert node.input[0] == "conv2.weight"
    entry = result.tensor("conv2.weight")
    assert entry is not None and entry.storage_dtype == "float32"
    assert entry.note.startswith("float weight with a FakeQuantize: no integer form")


def test_unlisted_reader_keeps_the_float_weight() -> None:
    """A weight two layers read, one of them kept float: that one still reads the float initializer."""
    m = conv_chain()
    y = next(n for n in m.graph.node if n.name == "y")
    conv2 = next(n for n in m.graph.node if n.name == "conv2")
    y.input[1] = conv2.input[1]  # y shares conv2's 8x8x3x3 weight
    next(t for t in m.graph.initializer if t.name == "y.bias").CopyFrom(
        numpy_helper.from_array(np.zeros(8, np.float32), "y.bias"))
    del m.graph.output[:]
    m.graph.output.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8]))
    ranges = {"conv2.weight": weight_range(m, "conv2.weight", None)}
    result = emit_fakequantize(m, make_plan(weight_point("conv2.weight", ("conv2", 1), None)), ranges)
    nodes = {n.name: n for n in result.model.graph.node}
    assert nodes["conv2"].input[1] == "conv2.weight_dequantized" and nodes["y"].input[1] == "conv2.weight"
    assert "float initializer kept" in result.tensor("conv2.weight").note


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


@pytest.mark.parametrize("per_channel_activation", [False, True])
def test_openvino_runs_the_emitted_model(tmp_path, per_channel_activation: bool) -> None:  # noqa: ANN001
    ov = pytest.importorskip("openvino", reason="OpenVINO is optional; install it to check its ONNX frontend")
    m, plan, ranges = setup(per_channel_activation=per_channel_activation)
    # 7-bit weights: x86 CPUs without VNNI add pairs of uint8 x int8 products in a saturating int16, which full
    # 8-bit weights overflow (the saturation fix of the CPU targets); 7-bit ones are computed exactly.
    ranges["conv1.weight"] = weight_range(m, "conv1.weight", 0, bits=7)
    ranges["conv2.weight"] = weight_range(m, "conv2.weight", None, bits=7)
    path = tmp_path / "fq.onnx"
    onnx.save(emit_fakequantize(m, plan, ranges).model, path)
    core = ov.Core()
    # f32: on CPUs with bf16 support OpenVINO would otherwise compute in bf16 and differ by far more.
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled({"x": X})[compiled.output(0)]
    expected = simulate(m, ranges)
    # Integer kernels: the int32 sums are exact, the float rescaling rounds differently from the simulation.
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * float(np.abs(expected).max()))
    # OpenVINO took the compressed weights for quantized ones: conv1 (and conv2 when its input is per tensor,
    # the only activation form its integer convolution takes) runs on 8-bit activations x int8, the int8
    # constant as is. Each convolution is known by the ONNX node among the layers it was fused from.
    convolutions: list[tuple[set[str], str]] = []
    int8_constants = set()
    for layer in compiled.get_runtime_model().get_ordered_ops():
        info = layer.get_rt_info()
        kind, precision = info["layerType"].astype(str), info["runtimePrecision"].astype(str)
        if kind == "Convolution":
            convolutions.append((set(info["originalLayersNames"].astype(str).split(",")), precision))
        elif kind == "Const" and precision == "i8":
            int8_constants.add(layer.get_friendly_name())
    by_node = {node: precision for fused, precision in convolutions
               for node in ("conv1", "conv2", "y") if node in fused}
    assert len(convolutions) == 3 and set(by_node) == {"conv1", "conv2", "y"}
    # conv1 reads x, whose range is signed: where OpenVINO's CPU plugin lets a convolution take signed
    # activations (on AMX, and AVX2-VNNI-INT8 in recent releases) it runs on int8; elsewhere its low-precision
    # pass shifts x to uint8. conv2 reads relu1, unsigned: uint8 everywhere.
    assert by_node["conv1"] in ("i8", "u8")
    assert by_node["conv2"] == ("f32" if per_channel_activation else "u8")
    assert by_node["y"] == "f32"
    # The emitted int8 weights are the integer convolutions' constants, as emitted.
    assert int8_constants == {f"{node}.weight_quantized" for node in ("conv1", "conv2") if by_node[node] != "f32"}


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
