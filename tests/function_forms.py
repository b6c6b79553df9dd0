"""Normalization, GELU and softmax as the common exporters write them, one small model per form.

Every model is ``input [1, 8, 16] -> pre (MatMul + Add) -> FUNCTION -> post (MatMul + Add) -> output``,
so the function sits between two integer layers the way it does in a transformer. A form is a
``Form``: its builder and the names of the nodes inside the function, whose tensors must stay
float on every target (the function's input is pre's output, its output feeds post).

The forms, by exporter:
  normalization: PyTorch's LayerNorm before opset 17 (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt,
    Div, Mul, Add); paddle2onnx's (the same chain with its constants in Constant nodes); the
    LayerNormalization op (opset 17); jax2tf/flax as in magika's model (ReduceSum and a multiply by
    1/N for each mean, E[x^2] - E[x]^2 clamped by Max at 0, each broadcast back by Reshape and Expand,
    Sqrt and Reciprocal for rsqrt, times gamma, then (x - mean) times that); TF-Keras (the
    batch-normalization identity y = x * inv + (beta - mean * inv), with a squared difference and
    rsqrt as Pow(-0.5)); RMSNorm (Pow, ReduceMean, Add, Sqrt, Reciprocal, Mul, Mul) and the
    RMSNormalization op (opset 23).
  GELU: the erf form (Div, Erf, Add, Mul, Mul), the tanh form as PyTorch writes it (Pow 3) and as
    jax writes it (x * x * x, the half applied before the multiply by x), the Gelu op (opset 20,
    exact and tanh), and x * sigmoid(1.702 x).
  softmax: the Softmax op, written out (ReduceMax, Sub, Exp, ReduceSum, Div), and as jax2tf writes
    it (the max clamped by Max, both statistics broadcast back by Reshape and Expand).

A written-out form names as ``reference`` the op form that computes the same function from the
same weights (same seed, same draws), so tests can hold the two against each other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper

from models import GraphBuilder

HIDDEN = 16
SHAPE = [1, 8, HIDDEN]


@dataclass(frozen=True)
class Form:
    """One export form of a function: how to build it and which nodes are its inside."""

    function: str  # "normalization", "gelu" or "softmax"
    build: Callable[[], onnx.ModelProto]
    inside: tuple[str, ...]
    reference: str | None = None  # the op form computing the same function with the same weights


def _f32(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, SHAPE)


def _scalar(b: GraphBuilder, name: str, value: float) -> str:
    return b.const(name, np.array(value, np.float32))


def _wrap(name: str, body: Callable[[GraphBuilder, str], str], opset: int = 13, seed: int = 0) -> onnx.ModelProto:
    b = GraphBuilder(seed)
    x = b.linear("input", "pre", HIDDEN, HIDDEN)
    y = body(b, x)
    b.linear(y, "post", HIDDEN, HIDDEN)
    b.nodes[-1].output[0] = "output"  # post's bias Add produces the graph output
    return b.model([_f32("input")], [_f32("output")], name, opset=opset)


def _gamma_beta(b: GraphBuilder) -> tuple[str, str]:
    gamma = b.const("ln.gamma", b.rng.uniform(0.8, 1.2, HIDDEN).astype(np.float32))
    beta = b.const("ln.beta", (b.rng.standard_normal(HIDDEN) * 0.1).astype(np.float32))
    return gamma, beta


# --- normalization ------------------------------------------------------------------------------

def layer_norm_pytorch() -> onnx.ModelProto:
    def body(b: GraphBuilder, x: str) -> str:
        mean = b.node("ReduceMean", [x], "ln_mean", axes=[-1], keepdims=1)
        diff = b.node("Sub", [x, mean], "ln_sub")
        sq = b.node("Pow", [diff, _scalar(b, "ln.two", 2.0)], "ln_pow")
        var = b.node("ReduceMean", [sq], "ln_var", axes=[-1], keepdims=1)
        eps = b.node("Add", [var, _scalar(b, "ln.eps", 1e-5)], "ln_add_eps")
        y = b.node("Div", [diff, b.node("Sqrt", [eps], "ln_sqrt")], "ln_div")
        gamma, beta = _gamma_beta(b)
        return b.node("Add", [b.node("Mul", [y, gamma], "ln_mul"), beta], "ln_out")
    return _wrap("layer_norm_pytorch", body)


def layer_norm_paddle() -> onnx.ModelProto:
    """paddle2onnx before opset 17: PyTorch's chain, its scalars held in Constant nodes."""
    def const_node(b: GraphBuilder, name: str, value: np.ndarray) -> str:
        b.nodes.append(helper.make_node("Constant", [], [name], name=name,
                                        value=onnx.numpy_helper.from_array(value, name)))
        return name

    def body(b: GraphBuilder, x: str) -> str:
        mean = b.node("ReduceMean", [x], "ln_mean", axes=[-1], keepdims=1)
        diff = b.node("Sub", [x, mean], "ln_sub")
        sq = b.node("Pow", [diff, const_node(b, "ln_two", np.array(2.0, np.float32))], "ln_pow")
        var = b.node("ReduceMean", [sq], "ln_var", axes=[-1], keepdims=1)
        eps = b.node("Add", [var, const_node(b, "ln_eps", np.array(1e-5, np.float32))], "ln_add_eps")
        y = b.node("Div", [diff, b.node("Sqrt", [eps], "ln_sqrt")], "ln_div")
        gamma = const_node(b, "ln_gamma", b.rng.uniform(0.8, 1.2, HIDDEN).astype(np.float32))
        beta = const_node(b, "ln_beta", (b.rng.standard_normal(HIDDEN) * 0.1).astype(np.float32))
        return b.node("Add", [b.node("Mul", [y, gamma], "ln_mul"), beta], "ln_out")
    return _wrap("layer_norm_paddle", body)


def layer_norm_op() -> onnx.ModelProto:
    def body(b: GraphBuilder, x: str) -> str:
        gamma, beta = _gamma_beta(b)
        return b.node("LayerNormalization", [x, gamma, beta], "ln", axis=-1, epsilon=1e-5)
    return _wrap("layer_norm_op", body, opset=17)


def _broadcast_back(b: GraphBuilder, stat: str, name: str) -> str:
    """jax2tf's broadcast of a per-row statistic back to the row: Reshape, then Expand (magika's export)."""
    shape = b.const(f"{name}.shape", np.array([1, SHAPE[1], 1], np.int64))
    full = b.const(f"{name}.full", np.array(SHAPE, np.int64))
    return b.node("Expand", [b.node("Reshape", [stat, shape], f"{name}_reshape"), full], f"{name}_broadcast")


def layer_norm_jax2tf() -> onnx.ModelProto:
    """flax.linen.LayerNorm through jax2tf and tf2onnx, as in magika's model.

    mean = sum * 1/N; var = max(E[x^2] - E[x]^2, 0); both broadcast back with Reshape and Expand;
    rsqrt as Sqrt and Reciprocal, times gamma; (x - mean) times that, plus beta.
    """
    def body(b: GraphBuilder, x: str) -> str:
        axes = b.const("ln.axes", np.array([-1], np.int64))
        inv_n = _scalar(b, "ln.inv_n", 1.0 / HIDDEN)
        mean = b.node("Mul", [b.node("ReduceSum", [x, axes], "ln_sum", keepdims=0), inv_n], "ln_mean")
        sq = b.node("Mul", [x, x], "ln_square")
        mean2 = b.node("Mul", [b.node("ReduceSum", [sq, axes], "ln_sum_sq", keepdims=0), inv_n], "ln_mean_sq")
        mean_sq = b.node("Mul", [mean, mean], "ln_square_mean")
        var = b.node("Max", [_scalar(b, "ln.zero", 0.0), b.node("Sub", [mean2, mean_sq], "ln_sub_var")],
                     "ln_maximum")
        eps = b.node("Add", [_broadcast_back(b, var, "ln_var"), _scalar(b, "ln.eps", 1e-5)], "ln_add_eps")
        rsqrt = b.node("Reciprocal", [b.node("Sqrt", [eps], "ln_sqrt")], "ln_rsqrt")
        gamma, beta = _gamma_beta(b)
        scale = b.node("Mul", [rsqrt, gamma], "ln_mul_gamma")
        centred = b.node("Sub", [x, _broadcast_back(b, mean, "ln_mean")], "ln_sub")
        y = b.node("Mul", [centred, scale], "ln_mul")
        return b.node("Add", [y, beta], "ln_out")
    return _wrap("layer_norm_jax2tf", body)


def layer_norm_keras() -> onnx.ModelProto:
    """tf.keras LayerNormalization through tf2onnx: y = x * inv + (beta - mean * inv)."""
    def body(b: GraphBuilder, x: str) -> str:
        mean = b.node("ReduceMean", [x], "ln_mean", axes=[-1], keepdims=1)
        d = b.node("Sub", [x, mean], "ln_sub")
        var = b.node("ReduceMean", [b.node("Mul", [d, d], "ln_squared_difference")], "ln_var", axes=[-1], keepdims=1)
        eps = b.node("Add", [var, _scalar(b, "ln.eps", 1e-5)], "ln_add_eps")
        rsqrt = b.node("Pow", [eps, _scalar(b, "ln.minus_half", -0.5)], "ln_rsqrt")
        gamma, beta = _gamma_beta(b)
        inv = b.node("Mul", [rsqrt, gamma], "ln_inv")
        x_inv = b.node("Mul", [x, inv], "ln_x_inv")
        shift = b.node("Sub", [beta, b.node("Mul", [mean, inv], "ln_mean_inv")], "ln_shift")
        return b.node("Add", [x_inv, shift], "ln_out")
    return _wrap("layer_norm_keras", body)


def rms_norm_op() -> onnx.ModelProto:
    def body(b: GraphBuilder, x: str) -> str:
        gamma = b.const("rms.gamma", b.rng.uniform(0.8, 1.2, HIDDEN).astype(np.float32))
        return b.node("RMSNormalization", [x, gamma], "rms", axis=-1, epsilon=1e-6)
    return _wrap("rms_norm_op", body, opset=23)


def rms_norm() -> onnx.ModelProto:
    def body(b: GraphBuilder, x: str) -> str:
        sq = b.node("Pow", [x, _scalar(b, "rms.two", 2.0)], "rms_pow")
        ms = b.node("ReduceMean", [sq], "rms_mean", axes=[-1], keepdims=1)
        eps = b.node("Add", [ms, _scalar(b, "rms.eps", 1e-6)], "rms_add_eps")
        inv = b.node("Reciprocal", [b.node("Sqrt", [eps], "rms_sqrt")], "rms_rsqrt")
        gamma = b.const("rms.gamma", b.rng.uniform(0.8, 1.2, HIDDEN).astype(np.float32))
        return b.node("Mul", [b.node("Mul", [x, inv], "rms_mul"), gamma], "rms_out")
    return _wrap("rms_norm", body)


# --- GELU ---------------------------------------------------------------------------------------

def gelu_erf() -> onnx.ModelProto:
    def body(b: GraphBuilder, x: str) -> str:
        e = b.node("Erf", [b.node("Div", [x, _scalar(b, "gelu.sqrt2", np.sqrt(2.0))], "gelu_div")], "gelu_erf")
        e = b.node("Add", [e, _scalar(b, "gelu.one", 1.0)], "gelu_add")
        return b.node("Mul", [b.node("Mul", [x, e], "gelu_mul"), _scalar(b, "gelu.half", 0.5)], "gelu_out")
    return _wrap("gelu_erf", body)


_SQRT_2_OVER_PI = float(np.sqrt(2.0 / np.pi))


def gelu_tanh_pytorch() -> onnx.ModelProto:
    """torch.nn.GELU(approximate="tanh"): x * 0.5 first, then times (1 + tanh(...))."""
    def body(b: GraphBuilder, x: str) -> str:
        half = b.node("Mul", [x, _scalar(b, "gelu.half", 0.5)], "gelu_half")
        cube = b.node("Pow", [x, _scalar(b, "gelu.three", 3.0)], "gelu_cube")
        inner = b.node("Add", [x, b.node("Mul", [cube, _scalar(b, "gelu.coef", 0.044715)], "gelu_coef")], "gelu_inner")
        t = b.node("Tanh", [b.node("Mul", [inner, _scalar(b, "gelu.k", _SQRT_2_OVER_PI)], "gelu_scale")], "gelu_tanh")
        one = b.node("Add", [t, _scalar(b, "gelu.one", 1.0)], "gelu_one")
        return b.node("Mul", [half, one], "gelu_out")
    return _wrap("gelu_tanh_pytorch", body)


def gelu_tanh_jax() -> onnx.ModelProto:
    """jax.nn.gelu(approximate=True): x ** 3 as x * x * x, cdf = 0.5 * (1 + tanh(...)), then x * cdf."""
    def body(b: GraphBuilder, x: str) -> str:
        cube = b.node("Mul", [b.node("Mul", [x, x], "gelu_square"), x], "gelu_cube")
        inner = b.node("Add", [x, b.node("Mul", [cube, _scalar(b, "gelu.coef", 0.044715)], "gelu_coef")], "gelu_inner")
        t = b.node("Tanh", [b.node("Mul", [inner, _scalar(b, "gelu.k", _SQRT_2_OVER_PI)], "gelu_scale")], "gelu_tanh")
        one = b.node("Add", [t, _scalar(b, "gelu.one", 1.0)], "gelu_one")
        cdf = b.node("Mul", [one, _scalar(b, "gelu.half", 0.5)], "gelu_cdf")
        return b.node("Mul", [x, cdf], "gelu_out")
    return _wrap("gelu_tanh_jax", body)


def gelu_op() -> onnx.ModelProto:
    return _wrap("gelu_op", lambda b, x: b.node("Gelu", [x], "gelu"), opset=20)


def gelu_op_tanh() -> onnx.ModelProto:
    return _wrap("gelu_op_tanh", lambda b, x: b.node("Gelu", [x], "gelu", approximate="tanh"), opset=20)


def gelu_sigmoid() -> onnx.ModelProto:
    """The sigmoid approximation (CLIP's QuickGELU): x * sigmoid(1.702 x)."""
    def body(b: GraphBuilder, x: str) -> str:
        s = b.node("Sigmoid", [b.node("Mul", [x, _scalar(b, "gelu.k", 1.702)], "gelu_scale")], "gelu_sigmoid")
        return b.node("Mul", [x, s], "gelu_out")
    return _wrap("gelu_sigmoid", body)


# --- softmax ------------------------------------------------------------------------------------

def softmax_op() -> onnx.ModelProto:
    return _wrap("softmax_op", lambda b, x: b.node("Softmax", [x], "softmax", axis=-1))


def softmax_decomposed() -> onnx.ModelProto:
    """exp(x - max(x)) / sum(exp(x - max(x))) written out, as hand-written exports do."""
    def body(b: GraphBuilder, x: str) -> str:
        axes = b.const("softmax.axes", np.array([-1], np.int64))
        m = b.node("ReduceMax", [x], "softmax_max", axes=[-1], keepdims=1)
        e = b.node("Exp", [b.node("Sub", [x, m], "softmax_sub")], "softmax_exp")
        s = b.node("ReduceSum", [e, axes], "softmax_sum", keepdims=1)
        return b.node("Div", [e, s], "softmax_div")
    return _wrap("softmax_decomposed", body)


def softmax_jax2tf() -> onnx.ModelProto:
    """jax.nn.softmax through jax2tf (magika's output): the max clamped, each statistic broadcast back."""
    def body(b: GraphBuilder, x: str) -> str:
        axes = b.const("softmax.axes", np.array([-1], np.int64))
        m = b.node("ReduceMax", [x], "softmax_max", axes=[-1], keepdims=0)
        m = b.node("Max", [_scalar(b, "softmax.lowest", float(np.finfo(np.float32).min)), m], "softmax_maximum")
        e = b.node("Exp", [b.node("Sub", [x, _broadcast_back(b, m, "softmax_max")], "softmax_sub")], "softmax_exp")
        s = b.node("ReduceSum", [e, axes], "softmax_sum", keepdims=0)
        return b.node("Div", [e, _broadcast_back(b, s, "softmax_sum")], "softmax_div")
    return _wrap("softmax_jax2tf", body)


FORMS: dict[str, Form] = {
    "layer_norm_pytorch": Form("normalization", layer_norm_pytorch,
                               ("ln_mean", "ln_sub", "ln_pow", "ln_var", "ln_add_eps", "ln_sqrt", "ln_div",
                                "ln_mul", "ln_out"), "layer_norm_op"),
    "layer_norm_paddle": Form("normalization", layer_norm_paddle,
                              ("ln_mean", "ln_sub", "ln_pow", "ln_var", "ln_add_eps", "ln_sqrt", "ln_div",
                               "ln_mul", "ln_out"), "layer_norm_op"),
    "layer_norm_op": Form("normalization", layer_norm_op, ("ln",)),
    "layer_norm_jax2tf": Form("normalization", layer_norm_jax2tf,
                              ("ln_sum", "ln_mean", "ln_square", "ln_sum_sq", "ln_mean_sq", "ln_square_mean",
                               "ln_sub_var", "ln_maximum", "ln_var_reshape", "ln_var_broadcast", "ln_add_eps",
                               "ln_sqrt", "ln_rsqrt", "ln_mul_gamma", "ln_mean_reshape", "ln_mean_broadcast",
                               "ln_sub", "ln_mul", "ln_out"), "layer_norm_op"),
    "layer_norm_keras": Form("normalization", layer_norm_keras,
                             ("ln_mean", "ln_sub", "ln_squared_difference", "ln_var", "ln_add_eps", "ln_rsqrt",
                              "ln_inv", "ln_x_inv", "ln_mean_inv", "ln_shift", "ln_out"), "layer_norm_op"),
    "rms_norm": Form("normalization", rms_norm,
                     ("rms_pow", "rms_mean", "rms_add_eps", "rms_sqrt", "rms_rsqrt", "rms_mul", "rms_out"),
                     "rms_norm_op"),
    "rms_norm_op": Form("normalization", rms_norm_op, ("rms",)),
    "gelu_erf": Form("gelu", gelu_erf, ("gelu_div", "gelu_erf", "gelu_add", "gelu_mul", "gelu_out"), "gelu_op"),
    "gelu_tanh_pytorch": Form("gelu", gelu_tanh_pytorch,
                              ("gelu_half", "gelu_cube", "gelu_coef", "gelu_inner", "gelu_scale", "gelu_tanh",
                               "gelu_one", "gelu_out"), "gelu_op_tanh"),
    "gelu_tanh_jax": Form("gelu", gelu_tanh_jax,
                          ("gelu_square", "gelu_cube", "gelu_coef", "gelu_inner", "gelu_scale", "gelu_tanh",
                           "gelu_one", "gelu_cdf", "gelu_out"), "gelu_op_tanh"),
    "gelu_op": Form("gelu", gelu_op, ("gelu",)),
    "gelu_op_tanh": Form("gelu", gelu_op_tanh, ("gelu",)),
    "gelu_sigmoid": Form("gelu", gelu_sigmoid, ("gelu_scale", "gelu_sigmoid", "gelu_out")),
    "softmax_op": Form("softmax", softmax_op, ("softmax",)),
    "softmax_decomposed": Form("softmax", softmax_decomposed,
                               ("softmax_max", "softmax_sub", "softmax_exp", "softmax_sum", "softmax_div"),
                               "softmax_op"),
    "softmax_jax2tf": Form("softmax", softmax_jax2tf,
                           ("softmax_max", "softmax_maximum", "softmax_max_reshape", "softmax_max_broadcast",
                            "softmax_sub", "softmax_exp", "softmax_sum", "softmax_sum_reshape",
                            "softmax_sum_broadcast", "softmax_div"), "softmax_op"),
}
