"""onnxruntime turns the emitted QDQ model into integer kernels (the point of the tool).

Each test emits a hand-made CPU-style plan (FakeQuantize on every input of
Conv/Gemm/MatMul/Add, moved above MaxPool and Concat as the planner's
propagation would) and counts node types in onnxruntime's optimized graph.
The optimized model must also still compute what the unoptimized one does
(the fused kernels requantize with their own float arithmetic: equal up to
an ulp of the output, in practice exactly). Weights use the 7-bit grid the
CPU, ANY and ORT targets emit (their saturation fix); full-range 8-bit weights
are exact only where onnxruntime's uint8 x int8 kernel does not saturate.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
import pytest
from emit_helpers import (W8, Builder, activation_range, concat_branches, conv_chain, emit_planned, gemm_classifier,
                          intermediates, make_plan, matmul_linear, maxpool_between_convs, point, residual_block, run,
                          weight_point,
                          weight_range)
from ort_kernels import u8s8_saturates

from rewriter.algorithms.types import TensorRange
from rewriter.emit import EmitResult
from rewriter.emit.ort_check import INTEGER_OPS, fused_counts, optimized_model
from rewriter.spec.model import QuantizerConfig

RNG = np.random.default_rng(11)
# The weight grid of the CPU, ANY and ORT targets (their saturation fix): 7 bits kept in int8.
W7 = QuantizerConfig("q8_w_sym", 8, "symmetric", "perchannel", level_low=-63, level_high=63)


def emit_plan(m: onnx.ModelProto, feeds: dict[str, np.ndarray], acts: dict[str, Sequence[tuple[str, int]]],
              weights: Sequence[tuple[str, str, int | None]], shared: Sequence[Sequence[str]] = (),
              weight_bits: int = 7, **act_options: object) -> EmitResult:
    """Emit a plan quantizing ``acts`` (tensor -> consumers) and ``weights`` ((tensor, node, axis)).

    ``shared`` lists groups of activations that get one range (a unified group); ``weight_bits`` 8 gives
    full-range weights, whose fused result must equal the unfused one only where the kernel cannot saturate.
    """
    values = intermediates(m, feeds, [a for a in acts if a not in feeds])
    values.update(feeds)
    ranges: dict[str, TensorRange] = {a: activation_range(a, values[a], **act_options) for a in acts}
    groups = {}
    for k, group in enumerate(shared):
        joined = np.concatenate([values[a].ravel() for a in group])
        for a in group:
            ranges[a] = activation_range(a, joined, **act_options)
            groups[a] = k
    points = [point(a, cons, unify_group=groups.get(a)) for a, cons in acts.items()]
    for w, node, axis in weights:
        ranges[w] = weight_range(m, w, axis, bits=weight_bits)
        points.append(weight_point(w, (node, 1), axis, config=W7 if weight_bits == 7 else W8))
    result = emit_planned(m, make_plan(*points), ranges)
    onnx.checker.check_model(result.model, full_check=True)
    got, want = run(result.model, feeds, optimize=True)[0], run(result.model, feeds)[0]
    tolerance = 1e-5 * max(1.0, float(np.abs(want).max()))
    if weight_bits == 8 and u8s8_saturates():
        assert np.abs(got - want).max() > tolerance, "full-range weights fused exactly on a saturating kernel"
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=tolerance)
    return result


def integer_ops(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if k in INTEGER_OPS}


def conv_chain_result(**act_options: object) -> EmitResult:
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    return emit_plan(conv_chain(), {"x": x}, {"x": [("conv1", 0)], "relu1": [("conv2", 0)], "relu2": [("y", 0)]},
                     [("conv1.weight", "conv1", 0), ("conv2.weight", "conv2", 0), ("y.weight", "y", 0)],
                     **act_options)


def test_conv_relu_conv_chain() -> None:
    result = conv_chain_result()
    assert (result.tensor("conv1.weight").qmin, result.tensor("conv1.weight").qmax) == (-63, 63)
    counts = fused_counts(result.model)
    # conv1 and conv2 (Relu absorbed: its output's zero point is uint8's 0); the last Conv has no
    # QuantizeLinear after it (its output is the float graph output), so onnxruntime keeps it float.
    assert integer_ops(counts) == {"QLinearConv": 2}
    assert counts["Conv"] == 1 and counts["QuantizeLinear"] == 1 and counts["DequantizeLinear"] == 3
    assert "Relu" not in counts


def test_full_range_8bit_weights_fuse_exactly_only_where_the_kernel_cannot_saturate() -> None:
    """What a user asking for saturation_fix "no" gets: exact on VNNI CPUs, different on AVX2-only ones."""
    result = conv_chain_result(weight_bits=8)
    assert (result.tensor("conv1.weight").qmin, result.tensor("conv1.weight").qmax) == (-127, 127)
    assert integer_ops(fused_counts(result.model)) == {"QLinearConv": 2}


def test_4bit_activations_with_integer_clip_still_fuse() -> None:
    result = conv_chain_result(bits=4)
    assert result.tensor("relu1").clipped and result.tensor("relu1").storage_dtype == "uint8"
    assert integer_ops(fused_counts(result.model)) == {"QLinearConv": 2}


def test_residual_block() -> None:
    x = RNG.standard_normal((1, 8, 8, 8)).astype(np.float32)
    result = emit_plan(residual_block(), {"x": x},
                       {"x": [("conv1", 0), ("add", 1)], "relu1": [("conv2", 0)], "conv2": [("add", 0)],
                        "relu_out": [("y", 0)]},
                       [("conv1.weight", "conv1", 0), ("conv2.weight", "conv2", 0), ("y.weight", "y", 0)])
    counts = fused_counts(result.model)
    assert integer_ops(counts) == {"QLinearConv": 2, "QLinearAdd": 1}
    assert counts["Conv"] == 1  # the last 1x1 conv, float output


def test_gemm_classifier() -> None:
    x = RNG.standard_normal((1, 16)).astype(np.float32)
    result = emit_plan(gemm_classifier(), {"x": x}, {"x": [("fc1", 0)], "relu": [("y", 0)]},
                       [("fc1.weight", "fc1", 0), ("fc2.weight", "y", 0)])
    counts = fused_counts(result.model)
    # QGemm takes a float output too, so the last layer fuses as well.
    assert integer_ops(counts) == {"QGemm": 2}
    assert "DequantizeLinear" not in counts and "Gemm" not in counts


@pytest.mark.parametrize("shape", [[1, 8, 16], [8, 16]], ids=["3d", "2d"])
def test_matmul_with_bias_add_static_shapes(shape: list[int]) -> None:
    """onnxruntime fuses MatMul + Add into Gemm before it looks at QDQ; an int32 bias makes that Gemm a QGemm."""
    m = matmul_linear()
    if len(shape) == 2:
        m.graph.input[0].type.tensor_type.shape.ClearField("dim")
        for d in shape:
            m.graph.input[0].type.tensor_type.shape.dim.add().dim_value = d
        m.graph.output[0].type.tensor_type.shape.dim.pop(0)
    x = RNG.standard_normal(shape).astype(np.float32)
    result = emit_plan(m, {"x": x}, {"x": [("mm", 0)]}, [("fc.weight", "mm", 1)])
    assert result.tensor("fc.bias", "bias") is not None
    assert integer_ops(fused_counts(result.model)) == {"QGemm": 1}


def test_matmul_with_bias_add_dynamic_shapes() -> None:
    m = matmul_linear()
    for vi in (m.graph.input[0], m.graph.output[0]):
        vi.type.tensor_type.shape.dim[0].dim_param = "batch"
        vi.type.tensor_type.shape.dim[1].dim_param = "seq"
    x = RNG.standard_normal((2, 5, 16)).astype(np.float32)
    result = emit_plan(m, {"x": x}, {"x": [("mm", 0)]}, [("fc.weight", "mm", 1)])
    # No MatMul + Add -> Gemm here (dynamic shapes), so the bias stays float: a DequantizeLinear
    # of it would run on every inference for nothing.
    assert result.tensor("fc.bias", "bias") is None
    counts = fused_counts(result.model)
    assert integer_ops(counts) == {"MatMulIntegerToFloat": 1}
    assert "DequantizeLinear" not in counts


def test_matmul_without_bias() -> None:
    b = Builder(0)
    w = b.const("w", (b.rng.standard_normal((16, 8)) * 0.3).astype(np.float32))
    b.node("Relu", [b.node("MatMul", ["x", w], "mm")], "y")
    m = b.model({"x": [4, 16]}, {"y": [4, 8]})
    x = RNG.standard_normal((4, 16)).astype(np.float32)
    result = emit_plan(m, {"x": x}, {"x": [("mm", 0)]}, [("w", "mm", 1)])
    assert integer_ops(fused_counts(result.model)) == {"MatMulIntegerToFloat": 1}


def test_maxpool_between_convs() -> None:
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    # The planner moved conv2's input FakeQuantize above the MaxPool: relu1 is read by the pool.
    result = emit_plan(maxpool_between_convs(), {"x": x},
                       {"x": [("conv1", 0)], "relu1": [("pool", 0)], "relu2": [("y", 0)]},
                       [("conv1.weight", "conv1", 0), ("conv2.weight", "conv2", 0), ("y.weight", "y", 0)])
    requantized = result.tensor("pool", "requantized")
    assert requantized is not None and requantized.scale == result.tensor("relu1").scale
    assert requantized.consumers == ("conv2:0",)
    optimized = optimized_model(result.model)
    counts = fused_counts(result.model)
    assert integer_ops(counts) == {"QLinearConv": 2}
    # The pool runs on uint8 between the two integer convs: no Q/DQ left around it.
    producers = {o: n for n in optimized.graph.node for o in n.output}
    pool = next(n for n in optimized.graph.node if n.op_type == "MaxPool")
    assert producers[pool.input[0]].op_type == "QLinearConv"
    assert counts["DequantizeLinear"] == 3  # all three feed the last, float-output Conv


def test_concat_of_unified_branches() -> None:
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    result = emit_plan(concat_branches(), {"x": x},
                       {"x": [("conv_a", 0), ("conv_b", 0)], "relu_a": [("concat", 0)], "relu_b": [("concat", 1)],
                        "relu_c": [("y", 0)]},
                       [("conv_a.weight", "conv_a", 0), ("conv_b.weight", "conv_b", 0),
                        ("conv_c.weight", "conv_c", 0), ("y.weight", "y", 0)],
                       shared=[("relu_a", "relu_b")])
    assert result.tensor("concat", "requantized").scale == result.tensor("relu_a").scale
    assert integer_ops(fused_counts(result.model)) == {"QLinearConv": 3, "QLinearConcat": 1}
