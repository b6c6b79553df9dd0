"""Re-quantization after grid-preserving ops: lossless, only where the values are on one grid."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
import pytest
from emit_helpers import Builder, activation_range, emit_planned, fq, make_plan, op, point, run
from onnx import TensorProto, helper

from rewriter.emit import EmitResult
from rewriter.plan import NodeDecision

RNG = np.random.default_rng(5)
X = RNG.standard_normal((1, 4, 4, 4)).astype(np.float32)


def one_op(op_type: str, extra_inputs: Sequence[np.ndarray] = (), n_out: int = 1, **attrs: object) -> onnx.ModelProto:
    """x[1,4,4,4] -> node ``op`` -> Sigmoid ("sig", reads output 0) -> y; other outputs are graph outputs."""
    b = Builder(0)
    names = [b.const(f"extra{i}", a) for i, a in enumerate(extra_inputs)]
    outs = ["o"] + [f"o{i}" for i in range(1, n_out)]
    b.nodes.append(helper.make_node(op_type, ["x", *names], outs, name="op", **attrs))
    b.node("Sigmoid", ["o"], "y")
    outputs: dict[str, list[int] | None] = {"y": None}
    outputs.update({o: None for o in outs[1:]})
    graph = helper.make_graph(b.nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4, 4])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], b.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def emit_x(m: onnx.ModelProto, nodes: Sequence[NodeDecision] = ()) -> EmitResult:
    plan = make_plan(point("x", [("op", 0)]))
    plan = type(plan)(**{**plan.__dict__, "nodes": tuple(nodes)})
    return emit_planned(m, plan, {"x": activation_range("x", X)})


def requantized(result: EmitResult) -> list[str]:
    return [t.tensor for t in result.tensors if t.role == "requantized"]


@pytest.mark.parametrize("op_type, extra, attrs", [
    ("MaxPool", (), {"kernel_shape": [2, 2]}),
    ("Transpose", (), {"perm": [0, 2, 3, 1]}),
    ("Reshape", (np.array([1, -1], np.int64),), {}),
    ("Flatten", (), {}),
    ("Resize", (np.array([], np.float32), np.array([1, 1, 2, 2], np.float32)), {"mode": "nearest"}),
    ("Pad", (np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),), {}),
    ("Pad", (np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), np.array(0.0, np.float32)), {}),  # zero(2)
    ("Pad", (np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),), {"mode": "reflect"}),
    ("Slice", (np.array([1], np.int64), np.array([3], np.int64), np.array([2], np.int64)), {}),
])
def test_grid_preserving_op_output_is_requantized_losslessly(op_type: str, extra: tuple, attrs: dict) -> None:
    m = one_op(op_type, extra, **attrs)
    result = emit_x(m)
    assert requantized(result) == ["o"]
    entry = result.tensor("o")
    assert entry.scale == result.tensor("x").scale and entry.consumers == ("y:0",)
    got = run(result.model, {"x": X})[0]
    expected = op("Sigmoid", [op(op_type, [fq(X, activation_range("x", X)), *extra], **attrs)])
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("op_type, extra, attrs", [
    ("Resize", (np.array([], np.float32), np.array([1, 1, 2, 2], np.float32)), {"mode": "linear"}),  # interpolates
    ("Pad", (np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), np.array(0.3, np.float32)), {}),  # 0.3 is off the grid
    ("AveragePool", (), {"kernel_shape": [2, 2]}),  # averages leave the grid
])
def test_ops_that_leave_the_grid_are_not_requantized(op_type: str, extra: tuple, attrs: dict) -> None:
    assert requantized(emit_x(one_op(op_type, extra, **attrs))) == []


def test_split_requantizes_every_output_read_by_a_node() -> None:
    m = one_op("Split", (np.array([2, 2], np.int64),), n_out=2, axis=1)
    m.graph.node.append(helper.make_node("Relu", ["o1"], ["r1"], name="relu1"))
    m.graph.output.append(helper.make_tensor_value_info("r1", TensorProto.FLOAT, None))
    result = emit_x(m)
    assert requantized(result) == ["o", "o1"]
    # o1 is also a graph output: that keeps reading the float (equal) value.
    assert [o.name for o in result.model.graph.output] == ["y", "o1", "r1"]


def test_ignored_node_is_not_requantized() -> None:
    ignored = NodeDecision("op", "MaxPool", "ignored", "kept float by cli")
    assert requantized(emit_x(one_op("MaxPool", kernel_shape=[2, 2]), [ignored])) == []


def test_planned_output_wins_over_requantization() -> None:
    m = one_op("MaxPool", kernel_shape=[2, 2])
    o = run(m, {"x": X})[0]
    plan = make_plan(point("x", [("op", 0)]), point("o", [("y", 0)]))
    result = emit_planned(m, plan, {"x": activation_range("x", X), "o": activation_range("o", np.log(o / (1 - o)))})
    assert requantized(result) == []


def test_chain_of_agnostic_ops_is_requantized_all_the_way() -> None:
    b = Builder(0)
    x = b.node("MaxPool", ["x"], "op", kernel_shape=[2, 2], strides=[2, 2])
    x = b.node("Flatten", [x], "flat")
    w = b.weight("fc.weight", (10, 16))
    b.node("Gemm", [x, w], "y", transB=1)
    m = b.model({"x": [1, 4, 4, 4]}, {"y": [1, 10]})
    result = emit_x(m)
    assert requantized(result) == ["op", "flat"]
    assert {t.scale for t in result.tensors if t.role == "requantized"} == {result.tensor("x").scale}


def test_concat_is_requantized_only_when_its_inputs_share_a_grid() -> None:
    """The plan decides from unified groups: one group is one grid; two separate FakeQuantizes are two grids,
    even when their ranges happen to agree."""
    b = Builder(0)
    b.node("Concat", ["x", "x2"], "op", axis=1)
    b.node("Sigmoid", ["op"], "y")
    m = b.model({"x": [1, 4, 4, 4], "x2": [1, 4, 4, 4]}, {"y": [1, 8, 4, 4]})
    same = {"x": activation_range("x", X), "x2": activation_range("x2", X)}
    unified = make_plan(point("x", [("op", 0)], unify_group=0), point("x2", [("op", 1)], unify_group=0))
    result = emit_planned(m, unified, same)
    assert requantized(result) == ["op"]
    assert result.tensor("op").scale == result.tensor("x").scale == result.tensor("x2").scale
    separate = make_plan(point("x", [("op", 0)]), point("x2", [("op", 1)]))
    assert requantized(emit_planned(m, separate, same)) == []


def test_requantization_needs_no_clip_for_narrow_levels() -> None:
    """4-bit levels in uint8 need a Clip after the first QuantizeLinear, not after re-quantizing on-grid values."""
    m = one_op("MaxPool", kernel_shape=[2, 2])
    r = activation_range("x", X, bits=4)
    result = emit_planned(m, make_plan(point("x", [("op", 0)])), {"x": r})
    assert requantized(result) == ["o"] and not result.tensor("o").clipped
    assert [n.op_type for n in result.model.graph.node].count("Clip") == 1
    expected = op("Sigmoid", [op("MaxPool", [fq(X, r)], kernel_shape=[2, 2])])
    np.testing.assert_array_equal(run(result.model, {"x": X})[0], expected)
