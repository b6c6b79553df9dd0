"""ort_check: onnxruntime's optimized graph and node counts, from a model, bytes or a path."""
from __future__ import annotations

import numpy as np
import onnx
from emit_helpers import activation_range, conv_chain, emit_planned, make_plan, point, weight_point, weight_range

from rewriter.emit.ort_check import fused_counts, op_counts, optimized_model


def quantized_conv(output_quantized: bool = False) -> onnx.ModelProto:
    """conv_chain with conv1's inputs quantized (and relu1, conv1's output through the Relu)."""
    m = conv_chain()
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    points = [point("x", [("conv1", 0)]), weight_point("conv1.weight", ("conv1", 1))]
    ranges = {"x": activation_range("x", x), "conv1.weight": weight_range(m, "conv1.weight")}
    if output_quantized:
        points.append(point("relu1", [("conv2", 0)]))
        ranges["relu1"] = activation_range("relu1", np.array([0.0, 4.0], np.float32))
    return emit_planned(m, make_plan(*points), ranges).model


def test_counts_from_model_bytes_and_path(tmp_path) -> None:  # noqa: ANN001
    m = quantized_conv()
    path = tmp_path / "m.onnx"
    onnx.save(m, path)
    counts = [fused_counts(m), fused_counts(m.SerializeToString()), fused_counts(path), fused_counts(str(path))]
    assert all(c == counts[0] for c in counts)
    assert op_counts(m)["QuantizeLinear"] == 1 and op_counts(m)["Conv"] == 3


def test_optimized_graph_without_weights() -> None:
    optimized = optimized_model(quantized_conv(), level="basic")
    assert optimized.graph.node
    # The weights went to a side file that is not loaded back (large models stay cheap).
    assert all(not t.raw_data or len(t.raw_data) < 1024 for t in optimized.graph.initializer)


def test_levels() -> None:
    m = quantized_conv(output_quantized=True)
    assert "QLinearConv" not in fused_counts(m, level="basic")  # QDQ fusion is an "extended" optimization
    assert fused_counts(m, level="extended")["QLinearConv"] == 1
    assert fused_counts(m, level="all")["QLinearConv"] == 1


def test_no_quantize_after_the_conv_means_no_fusion() -> None:
    # The onnxruntime fact the emitter's design rests on: without a QuantizeLinear on its
    # output, a Conv with dequantized inputs stays a float Conv.
    assert "QLinearConv" not in fused_counts(quantized_conv(output_quantized=False))
