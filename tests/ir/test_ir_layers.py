"""rewriter.ir.layers: one description of Conv/ConvTranspose/Gemm/MatMul for every pass."""
from __future__ import annotations

import numpy as np
import pytest

from rewriter.ir.graph import GraphView, NodeInfo, TensorInfo
from rewriter.ir.layers import (DEFAULT_DOMAINS, is_default_domain, linear_layer, linear_layers, matmul_bias_names,
                                weight_axes)
from rewriter.ir.view import graph_view
from tests.models import GraphBuilder, _f32, matmul_const_weights


def _view(nodes: list[NodeInfo], tensors: dict[str, TensorInfo]) -> GraphView:
    return GraphView([NodeInfo(n.name, n.op_type, n.inputs, n.outputs, n.attrs, n.domain, i)
                      for i, n in enumerate(nodes)], tensors)


def _const(name: str, shape: tuple[int, ...]) -> TensorInfo:
    return TensorInfo(name, "float32", shape, is_constant=True)


@pytest.mark.parametrize("op, attrs, rank, axes", [
    ("Conv", {}, 4, (0, 1)),
    ("ConvTranspose", {"group": 2}, 4, (1, 0)),
    ("Gemm", {}, 2, (1, 0)),
    ("Gemm", {"transB": 1}, 2, (0, 1)),
    ("MatMul", {}, 2, (1, 0)),
    ("MatMul", {}, 3, (2, 1)),
    ("MatMul", {}, 1, (0, None)),
    ("MatMul", {}, None, (None, None)),
])
def test_weight_axes_follow_the_op_semantics(op, attrs, rank, axes) -> None:
    assert weight_axes(op, attrs, rank) == axes


def test_weight_axes_refuse_other_ops() -> None:
    with pytest.raises(ValueError, match="not a linear op"):
        weight_axes("Add", {}, 2)


def test_default_domain_has_both_spellings() -> None:
    assert DEFAULT_DOMAINS == ("", "ai.onnx")
    assert is_default_domain("") and is_default_domain("ai.onnx") and not is_default_domain("com.microsoft")


def test_gemm_with_transb_beta_and_input_bias() -> None:
    g = _view([NodeInfo("fc", "Gemm", ("x", "w", "c"), ("y",), {"transB": 1, "alpha": 0.5, "beta": 2.0})],
              {"x": TensorInfo("x", "float32", (1, 4)), "w": _const("w", (3, 4)), "c": _const("c", (3,))})
    layer = linear_layer(g, g.nodes[0])
    assert layer is not None
    assert (layer.activation, layer.weight, layer.out_axis, layer.in_axis) == ("x", "w", 0, 1)
    assert (layer.trans_a, layer.trans_b, layer.alpha, layer.beta) == (False, True, 0.5, 2.0)
    assert layer.out_channels == 3 and layer.activation_axis == -1
    assert (layer.bias_source, layer.bias, layer.bias_port, layer.biased_output) == ("input", "c", 2, "y")


def test_conv_transpose_channels_count_every_group() -> None:
    g = _view([NodeInfo("up", "ConvTranspose", ("x", "w"), ("y",), {"group": 3})],
              {"w": _const("w", (6, 2, 3, 3))})
    layer = linear_layer(g, g.nodes[0])
    assert layer is not None and layer.group == 3 and layer.out_channels == 6 and layer.activation_axis == 1
    assert layer.bias_source == "none" and layer.bias is None and layer.bias_port is None


def test_matmul_bias_is_the_following_add_of_a_constant() -> None:
    g = graph_view(matmul_const_weights())
    (layer,) = linear_layers(g)
    add = layer.bias_add
    assert layer.name == "fc_matmul" and add is not None
    assert (add.node.name, add.constant, add.output) == ("fc_add", "fc.bias", "fc_add")
    assert add.node.inputs[add.port] == "fc.bias"
    assert (layer.bias_source, layer.bias, layer.bias_port, layer.biased_output) == ("add", "fc.bias", None, "fc_add")
    assert (layer.out_axis, layer.in_axis, layer.out_channels) == (1, 0, 32)


def test_no_bias_add_when_the_output_has_other_readers_or_the_other_input_is_computed() -> None:
    b = GraphBuilder()
    w = b.weight("w", (4, 4))
    mm = b.node("MatMul", ["x", w], "mm")
    b.node("Add", [mm, "x"], "add_x")  # the other input is computed
    mm2 = b.node("MatMul", ["x", w], "mm2")
    bias = b.const("bias", np.zeros(4, np.float32))
    b.node("Add", [mm2, bias], "add_bias")
    b.node("Relu", [mm2], "relu")  # a second reader of mm2
    model = b.model([_f32("x", (2, 4))], [_f32("add_x", (2, 4)), _f32("add_bias", (2, 4)), _f32("relu", (2, 4))],
                    "no_bias_add")
    g = graph_view(model)
    by_name = {layer.name: layer for layer in linear_layers(g)}
    assert by_name["mm"].bias_add is None and by_name["mm2"].bias_add is None
    assert by_name["mm"].bias_source == "none"


def test_non_default_domain_and_missing_weight_are_not_layers() -> None:
    g = _view([NodeInfo("custom", "Conv", ("x", "w"), ("y",), domain="com.example"),
               NodeInfo("lonely", "MatMul", ("x",), ("z",))], {"w": _const("w", (2, 2, 1, 1))})
    assert linear_layer(g, g.nodes[0]) is None and linear_layer(g, g.nodes[1]) is None
    assert linear_layers(g) == ()


def test_matmul_bias_names_are_the_ones_the_edit_uses() -> None:
    assert matmul_bias_names("proj", "proj_out") == ("proj_bias", "proj_out_before_bias")
