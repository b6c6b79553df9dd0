"""emit_qdq: the emitted model computes what the plan says, in the storage types it should.

Numeric checks run onnxruntime with its optimizations off, so the Q/DQ nodes
themselves are executed, and compare with a numpy simulation: the float ops
(run one at a time in onnxruntime, the same kernels) with ``fake_quantize``
applied to the planned tensors. fq_math makes ``fake_quantize`` agree with a
QDQ pair bit for bit (its docstring), and int32 biases are simulated as the
emitter rounds them, so the comparison is exact up to float summation order;
``EXACT`` allows a few ulps of the outputs' size for that.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from emit_helpers import (W8_TENSOR, activation_range, conv_chain, fq, initializer, int32_bias, intermediates,
                          emit_planned, make_plan, matmul_linear, op, point, run, session, weight_point,
                          weight_range)
from onnx import TensorProto, helper, numpy_helper

from rewriter.algorithms.fq_math import qdq_params
from rewriter.algorithms.types import TensorRange
from rewriter.emit import EmitResult
from rewriter.emit.qdq import default_opset

EXACT = dict(rtol=0, atol=1e-5)
RNG = np.random.default_rng(7)
X = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)


def scale_of(r: TensorRange) -> np.ndarray:
    return qdq_params(r.input_low, r.input_high, r.levels, r.level_low < 0)[0]


def chain_setup(model: onnx.ModelProto | None = None, weight_axis: int | None = 0, weight_bits: int = 8,
                **act: object) -> tuple[onnx.ModelProto, object, dict[str, TensorRange]]:
    """conv_chain with every Conv input quantized (as a CPU plan would), and ranges from a float run."""
    m = model or conv_chain()
    v = intermediates(m, {"x": X}, ["relu1", "relu2"])
    v["x"] = X
    ranges = {t: activation_range(t, v[t], **act) for t in ("x", "relu1", "relu2")}
    weights = (("conv1", "conv1.weight"), ("conv2", "conv2.weight"), ("y", "y.weight"))
    for _, w in weights:
        ranges[w] = weight_range(m, w, weight_axis, bits=weight_bits)
    config = None if weight_axis is not None else W8_TENSOR
    points = []
    for (node, w), a in zip(weights, ("x", "relu1", "relu2")):
        points.append(point(a, [(node, 0)]))
        points.append(weight_point(w, (node, 1), weight_axis, **({"config": config} if config else {})))
    return m, make_plan(*points), ranges


def simulate_chain(m: onnx.ModelProto, ranges: dict[str, TensorRange], x: np.ndarray) -> np.ndarray:
    """conv_chain in numpy terms: FakeQuantize on each Conv's input and weight, int32 biases."""
    h = x
    for node, act, after in (("conv1", "x", "relu"), ("conv2", "relu1", "relu"), ("y", "relu2", None)):
        w = fq(initializer(m, f"{node}.weight"), ranges[f"{node}.weight"])
        b = int32_bias(initializer(m, f"{node}.bias"), scale_of(ranges[act]), scale_of(ranges[f"{node}.weight"]))
        h = op("Conv", [fq(h, ranges[act]), w, b], pads=[1, 1, 1, 1])
        if after:
            h = np.maximum(h, 0)
    return h


def emitted(m: onnx.ModelProto, plan: object, ranges: dict[str, TensorRange]) -> EmitResult:
    result = emit_planned(m, plan, ranges)  # type: ignore[arg-type]
    onnx.checker.check_model(result.model, full_check=True)
    return result


def inits(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in model.graph.initializer}


# --------------------------------------------------------------------------------------
# Numerics


@pytest.mark.parametrize("weight_axis", [0, None], ids=["per-channel", "per-tensor"])
def test_conv_chain_equals_fake_quantize_simulation(weight_axis: int | None) -> None:
    m, plan, ranges = chain_setup(weight_axis=weight_axis)
    result = emitted(m, plan, ranges)
    got = run(result.model, {"x": X})[0]
    np.testing.assert_allclose(got, simulate_chain(m, ranges, X), **EXACT)
    # And quantization did something: the float model differs.
    assert np.abs(got - run(m, {"x": X})[0]).max() > 1e-3


def test_asymmetric_activations_equal_simulation() -> None:
    m, plan, ranges = chain_setup(mode="asymmetric")
    result = emitted(m, plan, ranges)
    assert result.tensor("x").zero_point != (0,)  # x straddles zero: a real zero point
    np.testing.assert_allclose(run(result.model, {"x": X})[0], simulate_chain(m, ranges, X), **EXACT)


def test_weights_are_integer_initializers_that_dequantize_to_fake_quantize() -> None:
    m, plan, ranges = chain_setup()
    result = emitted(m, plan, ranges)
    stored = inits(result.model)
    for w in ("conv1.weight", "conv2.weight", "y.weight"):
        assert w not in stored, "the float weight should be gone"
        q = numpy_helper.to_array(stored[f"{w}_quantized"])
        assert q.dtype == np.int8 and q.min() >= -127 and q.max() <= 127
        scale = numpy_helper.to_array(stored[f"{w}_scale"])
        zero_point = numpy_helper.to_array(stored[f"{w}_zero_point"])
        assert scale.shape == (q.shape[0],) and not zero_point.any()
        dequantized = (q.astype(np.float32) - zero_point[:, None, None, None]) * scale[:, None, None, None]
        np.testing.assert_array_equal(dequantized, fq(initializer(m, w), ranges[w]))
        dq = next(n for n in result.model.graph.node if n.output[0] == f"{w}_dequantized")
        assert dq.op_type == "DequantizeLinear" and helper.get_attribute_value(dq.attribute[0]) == 0


def test_activations_are_stored_unsigned_so_fused_kernels_see_one_type() -> None:
    m, plan, ranges = chain_setup()
    result = emitted(m, plan, ranges)
    x, relu1 = result.tensor("x"), result.tensor("relu1")
    # x is signed data on a signed grid: the same grid in uint8 with zero point 128.
    assert ranges["x"].level_low == -128
    assert (x.storage_dtype, x.zero_point, x.qmin, x.qmax) == ("uint8", (128,), 0, 255)
    assert (relu1.storage_dtype, relu1.zero_point) == ("uint8", (0,))


def test_int32_biases() -> None:
    m, plan, ranges = chain_setup()
    result = emitted(m, plan, ranges)
    stored = inits(result.model)
    bias = result.tensor("conv2.bias", "bias")
    assert bias is not None and bias.storage_dtype == "int32" and bias.axis == 0
    assert stored["conv2.bias_quantized"].data_type == TensorProto.INT32
    expected = (np.float32(scale_of(ranges["relu1"])) * scale_of(ranges["conv2.weight"])).astype(np.float32)
    np.testing.assert_array_equal(numpy_helper.to_array(stored["conv2.bias_scale"]), expected)
    assert "conv2.bias" not in stored


# --------------------------------------------------------------------------------------
# Narrow level ranges and other storage types


def single_q(levels_low: int, levels_high: int, low: float, high: float, tensor_range: TensorRange | None = None
             ) -> tuple[onnx.ModelProto, EmitResult, TensorRange]:
    """x -> Identity(x) -> y with x quantized for the Identity: the QDQ pair in isolation."""
    m = helper.make_model(helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"], name="id")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64])]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    levels = levels_high - levels_low + 1
    if tensor_range is None:
        from rewriter.algorithms.fq_math import symmetric_range
        lo, hi = symmetric_range(low, max(abs(low), high), levels, "activation", signed=levels_low < 0)
        tensor_range = TensorRange("x", lo, hi, levels_low, levels_high)
    result = emitted(m, make_plan(point("x", [("id", 0)])), {"x": tensor_range})
    return m, result, tensor_range


# Values well outside the range, near its ends, and at random inside.
SWEEP = np.concatenate([np.linspace(-3, 3, 40), RNG.uniform(-1, 1, 24)]).astype(np.float32)


@pytest.mark.parametrize("low, high, dtype, clip", [
    (-128, 127, "uint8", False),   # 8-bit signed grid: the storage range, no clip
    (-127, 127, "uint8", True),    # 255-level narrow range: one level short of uint8
    (-8, 7, "uint8", True),        # 4-bit activations live in uint8 with an integer Clip
    (0, 15, "uint8", True),
    (-32768, 32767, "uint16", False),
    (-32767, 32767, "uint16", True),  # 16-bit narrow: float Clip before QuantizeLinear
])
def test_activation_levels_are_exact(low: int, high: int, dtype: str, clip: bool) -> None:
    _, result, r = single_q(low, high, -1.0, 1.0)
    entry = result.tensor("x")
    assert (entry.storage_dtype, entry.clipped) == (dtype, clip)
    ops = [n.op_type for n in result.model.graph.node]
    assert ("Clip" in ops) == clip
    got = run(result.model, {"x": SWEEP})[0]
    np.testing.assert_array_equal(got, fq(SWEEP, r))
    # Saturation happens at the levels, not at the storage limits.
    assert got.min() == pytest.approx(float(r.input_low), rel=1e-6)
    assert got.max() == pytest.approx(float(r.input_high), rel=1e-6)
    if dtype == "uint16":
        assert default_opset(result.model) >= 21


def test_16bit_and_4bit_upgrade_to_opset_21_and_load() -> None:
    m, plan, ranges = chain_setup(weight_bits=4)
    result = emitted(m, plan, ranges)
    assert default_opset(result.model) == 21 and result.model.ir_version >= 10
    assert result.tensor("conv1.weight").storage_dtype == "int4"
    assert inits(result.model)["conv1.weight_quantized"].data_type == TensorProto.INT4
    np.testing.assert_allclose(run(result.model, {"x": X})[0], simulate_chain(m, ranges, X), **EXACT)

    m, plan, ranges = chain_setup(bits=16)
    result = emitted(m, plan, ranges)
    assert default_opset(result.model) == 21
    assert result.tensor("relu1").storage_dtype == "uint16"
    np.testing.assert_allclose(run(result.model, {"x": X})[0], simulate_chain(m, ranges, X), **EXACT)


def test_opset_17_model_stays_at_17_for_8_bits() -> None:
    m, plan, ranges = chain_setup()
    assert default_opset(emitted(m, plan, ranges).model) == 17


def test_per_tensor_weights_in_unsigned_storage() -> None:
    """Asymmetric weights on an unsigned grid (0..255) are stored as uint8 with their zero point."""
    m, plan, _ = chain_setup()
    w = initializer(m, "conv1.weight")
    lo, hi = np.float32(w.min()), np.float32(w.max())
    from rewriter.algorithms.fq_math import asymmetric_range
    lo, hi = asymmetric_range(lo, hi, 256)
    _, _, ranges = chain_setup()
    ranges["conv1.weight"] = TensorRange("conv1.weight", lo, hi, 0, 255)
    plan = make_plan(*[p if p.tensor != "conv1.weight" else weight_point("conv1.weight", ("conv1", 1), None)
                       for p in plan.points])
    result = emitted(m, plan, ranges)
    entry = result.tensor("conv1.weight")
    assert entry.storage_dtype == "uint8" and entry.axis is None and entry.zero_point[0] > 0
    np.testing.assert_allclose(run(result.model, {"x": X})[0], simulate_chain(m, ranges, X), **EXACT)


def test_per_channel_activation() -> None:
    m, plan, ranges = chain_setup()
    v = intermediates(m, {"x": X}, ["relu1"])["relu1"]
    m_chan = np.abs(v).max(axis=(0, 2, 3))
    from rewriter.algorithms.fq_math import symmetric_range
    lo, hi = symmetric_range(np.zeros_like(m_chan), m_chan, 256, "activation")
    ranges["relu1"] = TensorRange("relu1", lo, hi, 0, 255, axis=1)
    plan = make_plan(*[p if p.tensor != "relu1" else point("relu1", [("conv2", 0)], channel_axis=1)
                       for p in plan.points])
    result = emitted(m, plan, ranges)
    assert result.tensor("relu1").axis == 1 and len(result.tensor("relu1").scale) == 8
    # No int32 bias for conv2: a per-channel input has no single scale to multiply.
    assert result.tensor("conv2.bias", "bias") is None
    h = op("Conv", [fq(X, ranges["x"]), fq(initializer(m, "conv1.weight"), ranges["conv1.weight"]),
                    int32_bias(initializer(m, "conv1.bias"), scale_of(ranges["x"]), scale_of(ranges["conv1.weight"]))],
           pads=[1] * 4)
    h = op("Conv", [fq(np.maximum(h, 0), ranges["relu1"]), fq(initializer(m, "conv2.weight"), ranges["conv2.weight"]),
                    initializer(m, "conv2.bias")], pads=[1] * 4)
    bias = int32_bias(initializer(m, "y.bias"), scale_of(ranges["relu2"]), scale_of(ranges["y.weight"]))
    expected = op("Conv", [fq(np.maximum(h, 0), ranges["relu2"]), fq(initializer(m, "y.weight"), ranges["y.weight"]),
                           bias], pads=[1] * 4)
    np.testing.assert_allclose(run(result.model, {"x": X})[0], expected, **EXACT)


# --------------------------------------------------------------------------------------
# Size


def test_weight_dominated_model_shrinks_about_4x() -> None:
    m = matmul_linear(n_in=256, n_out=256)
    x = RNG.standard_normal((1, 8, 256)).astype(np.float32)
    ranges = {"x": activation_range("x", x), "fc.weight": weight_range(m, "fc.weight", 1)}
    result = emitted(m, make_plan(point("x", [("mm", 0)]), weight_point("fc.weight", ("mm", 1), 1)), ranges)
    before, after = len(m.SerializeToString()), len(result.model.SerializeToString())
    assert 3.5 < before / after < 4.1
    entry = result.tensor("fc.weight")
    assert entry.bytes_before == 256 * 256 * 4
    assert entry.bytes_after == 256 * 256 + 256 * 4 + 256  # int8 values, float32 scales, int8 zero points


def test_4bit_weights_shrink_about_8x() -> None:
    m = matmul_linear(n_in=256, n_out=256)
    x = RNG.standard_normal((1, 8, 256)).astype(np.float32)
    ranges = {"x": activation_range("x", x), "fc.weight": weight_range(m, "fc.weight", 1, bits=4)}
    result = emitted(m, make_plan(point("x", [("mm", 0)]), weight_point("fc.weight", ("mm", 1), 1)), ranges)
    # int4 packs two values a byte: 32 KiB for 64 Ki weights (the bias and scales add ~4 KiB).
    assert len(inits(result.model)["fc.weight_quantized"].raw_data) == 256 * 256 // 2
    assert len(m.SerializeToString()) / len(result.model.SerializeToString()) > 6.5
    session(result.model)  # onnxruntime loads int4 weights at opset 21


# --------------------------------------------------------------------------------------
# Consumers and outputs


def two_readers() -> onnx.ModelProto:
    """x -> conv (1x1) -> y1; x -> sig (Sigmoid) -> y2; conv's output also a graph output."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.standard_normal((3, 3, 1, 1)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["y1"], name="relu"),
             helper.make_node("Sigmoid", ["x"], ["y2"], name="sig")]
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 4, 4]) for n in ("x", "y1", "y2", "c")]
    m = helper.make_model(helper.make_graph(nodes, "g", vi[:1], vi[1:], [w]),
                          opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m, full_check=True)
    return m


def test_unlisted_consumers_keep_reading_float() -> None:
    m = two_readers()
    x = RNG.standard_normal((1, 3, 4, 4)).astype(np.float32)
    r = activation_range("x", x)
    result = emitted(m, make_plan(point("x", [("conv", 0)])), {"x": r})
    nodes = {n.name: n for n in result.model.graph.node}
    assert nodes["conv"].input[0] == "x_dequantized" and nodes["sig"].input[0] == "x"
    _, y2, c = run(result.model, {"x": x})  # outputs: y1, y2, c
    np.testing.assert_array_equal(y2, run(m, {"x": x})[1])
    np.testing.assert_allclose(c, op("Conv", [fq(x, r), initializer(m, "w")]), **EXACT)


def test_output_point_serves_every_consumer_but_graph_output_stays_float() -> None:
    m = two_readers()
    x = RNG.standard_normal((1, 3, 4, 4)).astype(np.float32)
    c_float = dict(zip(["y1", "y2", "c"], run(m, {"x": x})))["c"]
    rc = activation_range("c", c_float)
    result = emitted(m, make_plan(point("c", at_output=True)), {"c": rc})
    assert [o.name for o in result.model.graph.output] == ["y1", "y2", "c"]
    y1, _, c = run(result.model, {"x": x})
    np.testing.assert_array_equal(c, c_float)  # the graph output reads the float value
    np.testing.assert_array_equal(y1, np.maximum(fq(c_float, rc), 0))  # the Relu reads the quantized one
    assert result.tensor("c").consumers == ("relu:0",)


def test_graph_output_only_point_emits_nothing() -> None:
    m = two_readers()
    result = emitted(m, make_plan(point("y2", at_output=True)), {"y2": TensorRange("y2", np.float32(0), np.float32(1),
                                                                                    0, 255)})
    assert len(result.model.graph.node) == len(m.graph.node)
    assert "left float" in result.tensor("y2").note


def test_weight_shared_with_an_unlisted_reader_keeps_its_float_copy() -> None:
    m = two_readers()
    # A second reader of w that the plan does not list.
    m.graph.node.append(helper.make_node("Conv", ["x", "w"], ["c2"], name="conv_b"))
    m.graph.output.append(helper.make_tensor_value_info("c2", TensorProto.FLOAT, [1, 3, 4, 4]))
    result = emitted(m, make_plan(weight_point("w", ("conv", 1))), {"w": weight_range(m, "w")})
    stored = inits(result.model)
    assert "w" in stored and "w_quantized" in stored
    assert "kept" in result.tensor("w").note


# --------------------------------------------------------------------------------------
# Determinism, purity, opset, errors


def test_two_emissions_are_byte_identical_and_the_input_is_untouched() -> None:
    m, plan, ranges = chain_setup()
    before = m.SerializeToString()
    first = emit_planned(m, plan, ranges).model.SerializeToString()
    second = emit_planned(m, plan, ranges).model.SerializeToString()
    assert first == second
    assert m.SerializeToString() == before


def test_names_derive_from_tensor_names() -> None:
    m, plan, ranges = chain_setup()
    names = {n.name for n in emit_planned(m, plan, ranges).model.graph.node}
    assert {"x_QuantizeLinear", "x_DequantizeLinear", "conv1.weight_DequantizeLinear",
            "conv1.bias_DequantizeLinear"} <= names


def test_name_clash_gets_a_suffix() -> None:
    m, plan, ranges = chain_setup()
    m.graph.node[0].output[0] = "x_quantized"  # a model tensor already named like our Q output...
    for n in m.graph.node:
        for i, t in enumerate(n.input):
            if t == "conv1":
                n.input[i] = "x_quantized"
    result = emitted(m, plan, ranges)
    assert any(n.output[0] == "x_quantized_1" for n in result.model.graph.node if n.op_type == "QuantizeLinear")


def test_opset_11_with_per_channel_weights_is_upgraded_and_loads() -> None:
    m11, plan, ranges = chain_setup(conv_chain(opset=11))
    result = emitted(m11, plan, ranges)
    assert default_opset(result.model) == 13
    got = run(result.model, {"x": X})[0]
    np.testing.assert_allclose(got, simulate_chain(m11, ranges, X), **EXACT)


def test_opset_11_per_tensor_is_left_at_11() -> None:
    m11, plan, ranges = chain_setup(conv_chain(opset=11), weight_axis=None)
    result = emitted(m11, plan, ranges)
    assert default_opset(result.model) == 11
    session(result.model)


def test_missing_range_is_an_error() -> None:
    m, plan, ranges = chain_setup()
    del ranges["relu1"]
    with pytest.raises(ValueError, match="no range for planned tensor 'relu1'"):
        emit_planned(m, plan, ranges)


def test_consumer_that_does_not_read_the_tensor_is_an_error() -> None:
    m, _, ranges = chain_setup()
    with pytest.raises(ValueError, match="conv2 input 0"):
        emit_planned(m, make_plan(point("x", [("conv2", 0)])), ranges)
    with pytest.raises(ValueError, match="does not have"):
        emit_planned(m, make_plan(point("x", [("nope", 0)])), ranges)


def test_report_lists_every_tensor() -> None:
    m, plan, ranges = chain_setup()
    result = emit_planned(m, plan, ranges)
    roles = [(t.tensor, t.role) for t in result.tensors]
    assert roles[:6] == [("x", "activation"), ("conv1.weight", "weight"), ("relu1", "activation"),
                         ("conv2.weight", "weight"), ("relu2", "activation"), ("y.weight", "weight")]
    assert {t for t, role in roles if role == "bias"} == {"conv1.bias", "conv2.bias", "y.bias"}
    w = result.tensor("conv1.weight")
    assert w.bytes_before == 8 * 3 * 3 * 3 * 4 and w.bytes_after < w.bytes_before / 2
    assert len(w.scale) == 8 and w.axis == 0
    assert result.tensor("x").to_dict()["consumers"] == ["conv1:0"]


@pytest.mark.parametrize("op_type, w_shape, axis, attrs", [
    ("ConvTranspose", (3, 5, 3, 3), 1, {"pads": [1, 1, 1, 1]}),  # W [C_in, C_out, k, k]: channels on axis 1
    ("Gemm", (12, 5), 1, {}),                                     # B [K, N] without transB: axis 1
    ("Gemm", (5, 12), 0, {"transB": 1}),                          # B [N, K] with transB: axis 0
])
def test_int32_bias_follows_the_output_channel_axis(op_type: str, w_shape: tuple, axis: int, attrs: dict) -> None:
    rng = np.random.default_rng(2)
    x_shape = [1, 3, 6, 6] if op_type == "ConvTranspose" else [2, 12]
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    node = helper.make_node(op_type, ["x", "w", "b"], ["y"], name="op", **attrs)
    m = helper.make_model(helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = rng.standard_normal(x_shape).astype(np.float32)
    ranges = {"x": activation_range("x", x), "w": weight_range(m, "w", axis)}
    result = emit_planned(m, make_plan(point("x", [("op", 0)]), weight_point("w", ("op", 1), axis)), ranges)
    entry = result.tensor("b", "bias")
    assert entry is not None and len(entry.scale) == 5
    bias = int32_bias(b, scale_of(ranges["x"]), scale_of(ranges["w"]))
    expected = op(op_type, [fq(x, ranges["x"]), fq(w, ranges["w"]), bias], **attrs)
    np.testing.assert_allclose(run(result.model, {"x": x})[0], expected, **EXACT)


def test_bias_of_gemm_with_alpha_stays_float() -> None:
    m = gemm_with(alpha=0.5)
    x = np.random.default_rng(2).standard_normal((2, 12)).astype(np.float32)
    ranges = {"x": activation_range("x", x), "w": weight_range(m, "w", 0)}
    result = emit_planned(m, make_plan(point("x", [("op", 0)]), weight_point("w", ("op", 1), 0)), ranges)
    assert result.tensor("b", "bias") is None and "b" in inits(result.model)


def gemm_with(**attrs: object) -> onnx.ModelProto:
    rng = np.random.default_rng(2)
    node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="op", transB=1, **attrs)
    return helper.make_model(helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(rng.standard_normal((5, 12)).astype(np.float32), "w"),
         numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "b")]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
