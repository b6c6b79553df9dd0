"""Models with control flow, built with onnx.helper in the style exporters write them.

``torch.jit.script`` exports a branch on an input (a sample rate) or on a shape as a top-level ``If``
whose branches hold their own weights and read tensors of the outer graph by name; TF ``cond`` does the
same; a recurrence becomes a ``Loop`` whose body holds a weight. Opset 17, float32, weights from
``numpy.random.default_rng(seed)``.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models import IR_VERSION, OPSET

#: The sample rate the ``then`` branch of ``if_on_sample_rate`` serves.
RATE_HIGH = 16000


def _weight(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
    fan_in = int(np.prod(shape[1:])) or 1
    return numpy_helper.from_array((rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32), name)


def _branch(rng: np.random.Generator, tag: str, source: str, channels: int, kernel: int,
            as_constant_nodes: bool) -> onnx.GraphProto:
    """Conv -> Relu -> Conv -> Relu -> ReduceMean -> Gemm on the outer tensor ``source`` ([1, channels, T]).

    With ``as_constant_nodes`` the weights are Constant nodes inside the branch (as torch.jit exports
    write them), else initializers of the branch graph.
    """
    weights = [_weight(rng, f"{tag}.conv1.weight", (8, channels, kernel)), _weight(rng, f"{tag}.conv1.bias", (8,)),
               _weight(rng, f"{tag}.conv2.weight", (8, 8, 3)), _weight(rng, f"{tag}.conv2.bias", (8,)),
               _weight(rng, f"{tag}.fc.weight", (4, 8)), _weight(rng, f"{tag}.fc.bias", (4,))]
    w = [t.name for t in weights]
    nodes = [
        helper.make_node("Conv", [source, w[0], w[1]], [f"{tag}_c1"], name=f"{tag}_conv1",
                         pads=[kernel // 2, kernel // 2]),
        helper.make_node("Relu", [f"{tag}_c1"], [f"{tag}_r1"], name=f"{tag}_relu1"),
        helper.make_node("Conv", [f"{tag}_r1", w[2], w[3]], [f"{tag}_c2"], name=f"{tag}_conv2", pads=[1, 1]),
        helper.make_node("Relu", [f"{tag}_c2"], [f"{tag}_r2"], name=f"{tag}_relu2"),
        helper.make_node("ReduceMean", [f"{tag}_r2"], [f"{tag}_mean"], name=f"{tag}_mean", axes=[2], keepdims=0),
        helper.make_node("Gemm", [f"{tag}_mean", w[4], w[5]], [f"{tag}_y"], name=f"{tag}_fc", transB=1),
    ]
    inits = weights
    if as_constant_nodes:
        nodes = [helper.make_node("Constant", [], [t.name], name=f"{t.name}_const", value=t)
                 for t in weights] + nodes
        inits = []
    out = helper.make_tensor_value_info(f"{tag}_y", TensorProto.FLOAT, [1, 4])
    return helper.make_graph(nodes, tag, [], [out], inits)


def if_on_sample_rate(seed: int = 0, stem: bool = False, as_constant_nodes: bool = False) -> onnx.ModelProto:
    """``y = sr == 16000 ? high(x) : low(x)``: all weights inside the two branches (a VAD's export).

    Inputs ``x`` [1, 1, 64] float and ``sr`` (int64 scalar). With ``stem``, a Conv in the main graph
    makes the tensor both branches read (an outer-scope reference to a computed value), so part of the
    compute is outside the bodies.
    """
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(np.array(RATE_HIGH, np.int64), "rate_high")]
    nodes = [helper.make_node("Equal", ["sr", "rate_high"], ["is_high"], name="is_high")]
    source, channels = "x", 1
    if stem:
        inits += [_weight(rng, "stem.weight", (4, 1, 3)), _weight(rng, "stem.bias", (4,))]
        nodes.append(helper.make_node("Conv", ["x", "stem.weight", "stem.bias"], ["stem"], name="stem", pads=[1, 1]))
        source, channels = "stem", 4
    nodes.append(helper.make_node("If", ["is_high"], ["y"], name="rate_switch",
                                  then_branch=_branch(rng, "high", source, channels, 5, as_constant_nodes),
                                  else_branch=_branch(rng, "low", source, channels, 3, as_constant_nodes)))
    graph = helper.make_graph(nodes, "if_on_sample_rate",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 64]),
                               helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)
    return _model(graph)


def loop_recurrence(seed: int = 0, steps: int = 3) -> onnx.ModelProto:
    """``h = tanh(h @ W + x)`` repeated ``steps`` times in a Loop whose body holds ``W`` (a recurrence's export)."""
    rng = np.random.default_rng(seed)
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep_going"),
         helper.make_node("MatMul", ["h_in", "cell.weight"], ["hw"], name="cell_matmul"),
         helper.make_node("Add", ["hw", "x"], ["pre"], name="cell_add"),  # x: read from the outer graph
         helper.make_node("Tanh", ["pre"], ["h_out"], name="cell_tanh")],
        "cell",
        [helper.make_tensor_value_info("step", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_in", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_out", TensorProto.FLOAT, [1, 8])],
        [_weight(rng, "cell.weight", (8, 8))])
    inits = [numpy_helper.from_array(np.array(steps, np.int64), "steps"),
             numpy_helper.from_array(np.array(True), "always"),
             _weight(rng, "proj.weight", (8, 8))]
    nodes = [helper.make_node("MatMul", ["x", "proj.weight"], ["h0"], name="proj"),
             helper.make_node("Loop", ["steps", "always", "h0"], ["h"], name="recurrence", body=body)]
    graph = helper.make_graph(nodes, "loop_recurrence", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, 8])], inits)
    return _model(graph)


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="rewriter-tests",
                          ir_version=IR_VERSION)
    onnx.checker.check_model(m, full_check=True)
    return m


def rate_samples(n: int, rate: int = RATE_HIGH, seed: int = 0, channels: int = 1) -> list[dict[str, np.ndarray]]:
    """Calibration feeds for ``if_on_sample_rate``: noise at the given sample rate."""
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((1, channels, 64)).astype(np.float32), "sr": np.array(rate, np.int64)}
            for _ in range(n)]
