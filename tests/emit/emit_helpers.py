"""Small models, hand-made plans and ranges, and numpy simulation helpers for the emitter tests.

The plans are built by hand (no planner): a FakeQuantizePoint per tensor with
its consumers, as the planner would place them for a CPU target. Ranges come
from fq_math's range formulas applied to statistics of a float run, so zero is
on the grid as the emitter expects.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from models import GraphBuilder
from rewriter.algorithms.fq_math import asymmetric_range, fake_quantize, symmetric_range
from rewriter.algorithms.types import TensorRange
from dataclasses import replace
from pathlib import Path

from rewriter.dsl import ast, load_rules
from rewriter.emit import EmitResult, emit_qdq
from rewriter.ir.view import graph_view
from rewriter.match.integer_chain import BiasRequest, RequantizeRequest, plan_integer_chain
from rewriter.match.matcher import PatternMatcher
from rewriter.plan import Consumer, Decision, FakeQuantizePoint, QuantPlan
from rewriter.spec import load_spec, resolve_target
from rewriter.spec.model import QuantizerConfig

INTEGER_KERNELS = Path(__file__).resolve().parents[2] / "rules" / "integer_kernels.rules"

W8 = QuantizerConfig("q8_w", 8, "symmetric", "perchannel", level_low=-127, level_high=127)
W8_TENSOR = QuantizerConfig("q8_w_t", 8, "symmetric", "pertensor", level_low=-127, level_high=127)
A8 = QuantizerConfig("q8_a", 8, "symmetric", "pertensor")
A8_ASYM = QuantizerConfig("q8_a_asym", 8, "asymmetric", "pertensor")


# --------------------------------------------------------------------------------------
# Models


class Builder(GraphBuilder):
    """tests/models.py's GraphBuilder, whose model() here takes {name: shape} dicts."""

    def model(self, inputs: dict[str, list[int]], outputs: dict[str, list[int] | None], opset: int = 17,
              ir_version: int = 8) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, "test", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs.items()], self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)
        onnx.checker.check_model(m, full_check=True)
        return m


def conv_chain(seed: int = 0, opset: int = 17) -> onnx.ModelProto:
    """x[1,3,8,8] -> conv1 -> relu1 -> conv2 -> relu2 -> conv3 -> y[1,4,8,8]."""
    b = Builder(seed)
    x = b.node("Relu", [b.conv("x", "conv1", 3, 8)], "relu1")
    x = b.node("Relu", [b.conv(x, "conv2", 8, 8)], "relu2")
    b.conv(x, "y", 8, 4)
    return b.model({"x": [1, 3, 8, 8]}, {"y": [1, 4, 8, 8]}, opset=opset, ir_version=8 if opset >= 13 else 6)


def residual_block(seed: int = 0) -> onnx.ModelProto:
    """x[1,8,8,8] -> conv1 -> relu1 -> conv2 -> add(+x) -> relu_out -> conv3 -> y."""
    b = Builder(seed)
    r = b.node("Relu", [b.conv("x", "conv1", 8, 8)], "relu1")
    r = b.conv(r, "conv2", 8, 8)
    x = b.node("Relu", [b.node("Add", [r, "x"], "add")], "relu_out")
    b.conv(x, "y", 8, 8, k=1)
    return b.model({"x": [1, 8, 8, 8]}, {"y": [1, 8, 8, 8]})


def maxpool_between_convs(seed: int = 0) -> onnx.ModelProto:
    """x[1,3,8,8] -> conv1 -> relu1 -> pool (MaxPool 2x2) -> conv2 -> relu2 -> conv3 -> y[1,4,4,4]."""
    b = Builder(seed)
    x = b.node("Relu", [b.conv("x", "conv1", 3, 8)], "relu1")
    x = b.node("MaxPool", [x], "pool", kernel_shape=[2, 2], strides=[2, 2])
    x = b.node("Relu", [b.conv(x, "conv2", 8, 8)], "relu2")
    b.conv(x, "y", 8, 4)
    return b.model({"x": [1, 3, 8, 8]}, {"y": [1, 4, 4, 4]})


def concat_branches(seed: int = 0) -> onnx.ModelProto:
    """x -> conv_a -> relu_a, x -> conv_b -> relu_b; concat -> conv_c -> relu_c -> conv_d -> y."""
    b = Builder(seed)
    a = b.node("Relu", [b.conv("x", "conv_a", 3, 4, k=1)], "relu_a")
    c = b.node("Relu", [b.conv("x", "conv_b", 3, 4)], "relu_b")
    x = b.node("Concat", [a, c], "concat", axis=1)
    x = b.node("Relu", [b.conv(x, "conv_c", 8, 8, k=1)], "relu_c")
    b.conv(x, "y", 8, 4, k=1)
    return b.model({"x": [1, 3, 8, 8]}, {"y": [1, 4, 8, 8]})


def gemm_classifier(seed: int = 0) -> onnx.ModelProto:
    """x[1,16] -> fc1 (Gemm 16->32, transB) -> relu -> fc2 (Gemm 32->10, transB) -> y[1,10]."""
    b = Builder(seed)
    w1, w2 = b.weight("fc1.weight", (32, 16)), b.weight("fc2.weight", (10, 32))
    b1 = b.const("fc1.bias", (b.rng.standard_normal(32) * 0.1).astype(np.float32))
    b2 = b.const("fc2.bias", (b.rng.standard_normal(10) * 0.1).astype(np.float32))
    h = b.node("Relu", [b.node("Gemm", ["x", w1, b1], "fc1", transB=1)], "relu")
    b.node("Gemm", [h, w2, b2], "y", transB=1)
    return b.model({"x": [1, 16]}, {"y": [1, 10]})


def matmul_linear(seed: int = 0, n_in: int = 16, n_out: int = 32) -> onnx.ModelProto:
    """x[1,8,n_in] -> mm (MatMul by W[n_in,n_out]) -> add (bias) -> y (Relu)."""
    b = Builder(seed)
    w = b.const("fc.weight", (b.rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(np.float32))
    bias = b.const("fc.bias", (b.rng.standard_normal(n_out) * 0.1).astype(np.float32))
    x = b.node("Add", [b.node("MatMul", ["x", w], "mm"), bias], "add")
    b.node("Relu", [x], "y")
    return b.model({"x": [1, 8, n_in]}, {"y": [1, 8, n_out]})


# --------------------------------------------------------------------------------------
# Plans and ranges


def point(tensor: str, consumers: Sequence[tuple[str, int]] = (), role: str = "activation",
          config: QuantizerConfig = A8, at_output: bool = False, channel_axis: int | None = None,
          unify_group: int | None = None) -> FakeQuantizePoint:
    return FakeQuantizePoint(tensor=tensor, role=role, config=config, candidates=(config,),  # type: ignore[arg-type]
                             consumers=tuple(Consumer(n, p) for n, p in consumers), at_output=at_output,
                             channel_axis=channel_axis, unify_group=unify_group)


def weight_point(tensor: str, consumer: tuple[str, int], channel_axis: int | None = 0,
                 config: QuantizerConfig = W8) -> FakeQuantizePoint:
    return point(tensor, [consumer], role="weight", config=config, channel_axis=channel_axis)


def make_plan(*points: FakeQuantizePoint) -> QuantPlan:
    return QuantPlan(model="test", target="CPU", spec_path="", preset="performance", rule_files=(),
                     points=tuple(points), nodes=())


def with_integer_chain(model: onnx.ModelProto, plan: QuantPlan) -> QuantPlan:
    """A hand-made plan plus what the built-in rules/integer_kernels.rules declare for its FakeQuantizes
    (requantized outputs, int32 biases), decided by the planner's own integer-chain phase."""
    graph = graph_view(model)
    rules = load_rules(INTEGER_KERNELS)
    spec = load_spec(resolve_target("CPU"))
    requantize, biases = [], []
    for rule in rules.rules:
        pattern = rules.pattern(rule.pattern)
        assert pattern is not None
        for match in PatternMatcher(pattern, spec).find(graph):
            for action in rule.actions:
                if isinstance(action, ast.Requantize):
                    index = match.node(action.outputs.capture)
                    requantize.append(RequantizeRequest(index, action, Decision("requantize", rule.name, rule.loc)))
                elif isinstance(action, ast.Int32Bias):
                    biases += [BiasRequest(match.node(c), Decision("int32_bias", rule.name, rule.loc))
                               for c in action.captures]
    ignored = {graph.by_name[n.node] for n in plan.nodes if n.status == "ignored"}
    requantized, int32_biases = plan_integer_chain(graph, plan.points, requantize, biases, ignored)
    return replace(plan, requantized=requantized, int32_biases=int32_biases)


def emit_planned(model: onnx.ModelProto, plan: QuantPlan, ranges: dict[str, TensorRange]) -> EmitResult:
    """emit_qdq of a hand-made plan completed by ``with_integer_chain``, as the planner would complete it."""
    return emit_qdq(model, with_integer_chain(model, plan), ranges)


def weight_range(model: onnx.ModelProto, tensor: str, axis: int | None = 0, bits: int = 8,
                 narrow: bool = True) -> TensorRange:
    """Symmetric range from the weight's abs max (per channel along ``axis``, or per tensor)."""
    w = initializer(model, tensor)
    if axis is None:
        m = np.abs(w).max()
    else:
        m = np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)).max(axis=1)
    half = 2 ** (bits - 1)
    lo_level, hi_level = (-(half - 1), half - 1) if narrow else (-half, half - 1)
    levels = hi_level - lo_level + 1
    low, high = symmetric_range(None, m, levels, "weight")
    if not narrow:
        low, high = symmetric_range(-m, m, levels, "activation", signed=True)
    return TensorRange(tensor, low, high, lo_level, hi_level, axis)


def activation_range(tensor: str, values: np.ndarray, bits: int = 8, mode: str = "symmetric",
                     level_low: int | None = None, level_high: int | None = None) -> TensorRange:
    """A per-tensor activation range from observed values (unsigned when they are all >= 0)."""
    lo, hi = float(values.min()), float(values.max())
    if level_low is None:
        unsigned = lo >= 0 or mode == "asymmetric"
        level_low, level_high = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    levels = level_high - level_low + 1
    if mode == "symmetric":
        low, high = symmetric_range(lo, max(abs(lo), abs(hi)), levels, "activation", signed=level_low < 0)
    else:
        low, high = asymmetric_range(lo, hi, levels)
    return TensorRange(tensor, low, high, level_low, level_high)


def initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


# --------------------------------------------------------------------------------------
# Running


def session(model: onnx.ModelProto, optimize: bool = False) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray], optimize: bool = False) -> list[np.ndarray]:
    return session(model, optimize).run(None, feeds)


def intermediates(model: onnx.ModelProto, feeds: dict[str, np.ndarray], names: Sequence[str]) -> dict[str, np.ndarray]:
    """Values of inner tensors of a float model (exposed as extra outputs)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for name in names:
        m.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    values = run(m, feeds)
    return dict(zip([o.name for o in m.graph.output], values))


def op(op_type: str, inputs: Sequence[np.ndarray], **attrs: object) -> np.ndarray:
    """Run one float op in onnxruntime (the simulations' building block: same kernels as the model)."""
    names = [f"in{i}" for i in range(len(inputs))]
    node = helper.make_node(op_type, names, ["out"], **attrs)
    graph = helper.make_graph([node], "op", [
        helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
        for n, a in zip(names, inputs)], [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return run(m, dict(zip(names, inputs)))[0]


def fq(x: np.ndarray, r: TensorRange) -> np.ndarray:
    """The reference FakeQuantize of a tensor with its range."""
    return fake_quantize(x, r.input_low, r.input_high, r.levels, axis=r.axis)


def int32_bias(bias: np.ndarray, x_scale: float, w_scale: np.ndarray) -> np.ndarray:
    """What an int32 bias with scale x_scale * w_scale dequantizes to."""
    scale = (np.float32(x_scale) * np.asarray(w_scale, np.float32)).astype(np.float32)
    return (np.rint(bias.astype(np.float64) / scale) * scale).astype(np.float32)


def step(r: TensorRange) -> float:
    """The largest quantization step of a range."""
    return float(np.max((np.asarray(r.input_high) - np.asarray(r.input_low)) / (r.levels - 1)))
