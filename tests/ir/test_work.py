"""node_work: a node's multiply-accumulates from the graph's shapes, checked against products counted one
by one in plain loops over the same shapes (onnx's shape inference gives the output shapes)."""
from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rewriter.ir.graph import GraphView, NodeInfo, TensorInfo
from rewriter.ir.view import graph_view
from rewriter.ir.work import node_work


def _view(node: onnx.NodeProto, inputs: dict[str, list], weights: dict[str, tuple[int, ...]]) -> GraphView:
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.zeros(s, np.float32), n) for n, s in weights.items()])
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    return graph_view(model)


def _conv_products(x: tuple[int, ...], w: tuple[int, ...], group: int, stride: int, pad: int) -> int:
    """Every product a direct 2-D convolution computes, padding included, counted one by one."""
    n, c, h, wd = x
    m, cg, kh, kw = w
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    count = 0
    for _output_element in itertools.product(range(n), range(m), range(oh), range(ow)):
        for _product in itertools.product(range(c // group), range(kh), range(kw)):
            count += 1
    return count


@pytest.mark.parametrize("group,stride,pad", [(1, 1, 0), (2, 2, 1), (4, 1, 1)])
def test_conv_counts_every_product(group: int, stride: int, pad: int) -> None:
    x, w = (1, 4, 7, 6), (8, 4 // group, 3, 2)
    node = helper.make_node("Conv", ["x", "w"], ["y"], "conv", group=group, strides=[stride, stride],
                            pads=[pad] * 4)
    view = _view(node, {"x": list(x)}, {"w": w})
    assert node_work(view, view.nodes[0]) == _conv_products(x, w, group, stride, pad)


def _matmul_products(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """Products of a (batched) matrix product, counted one by one: each output element sums K of them."""
    *batch, rows, k = a
    cols = b[-1]
    count = 0
    for _ in itertools.product(*(range(d) for d in batch), range(rows), range(cols), range(k)):
        count += 1
    return count


def test_matmul_and_gemm_count_every_product() -> None:
    view = _view(helper.make_node("MatMul", ["a", "b"], ["y"], "mm"), {"a": [2, 3, 5]}, {"b": (5, 4)})
    assert node_work(view, view.nodes[0]) == _matmul_products((2, 3, 5), (5, 4))
    gemm = helper.make_node("Gemm", ["a", "b"], ["y"], "gemm", transB=1)
    view = _view(gemm, {"a": [3, 5]}, {"b": (4, 5)})
    assert node_work(view, view.nodes[0]) == _matmul_products((3, 5), (5, 4))
    gemm = helper.make_node("Gemm", ["a", "b"], ["y"], "gemm", transA=1)
    view = _view(gemm, {"a": [5, 3]}, {"b": (5, 4)})
    assert node_work(view, view.nodes[0]) == _matmul_products((3, 5), (5, 4))


def test_conv_transpose_scatters_each_input_element() -> None:
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], "deconv", strides=[2, 2])
    view = _view(node, {"x": [1, 3, 4, 4]}, {"w": (3, 5, 2, 2)})
    # Each of the 48 input elements is multiplied by the 5 x 2 x 2 weights of its input channel.
    assert node_work(view, view.nodes[0]) == 48 * 5 * 2 * 2


def test_a_symbolic_batch_counts_as_one_and_other_ops_count_their_output() -> None:
    view = _view(helper.make_node("MatMul", ["a", "b"], ["y"], "mm"), {"a": ["N", 3, 5]}, {"b": (5, 4)})
    assert node_work(view, view.nodes[0]) == _matmul_products((1, 3, 5), (5, 4))
    view = _view(helper.make_node("Relu", ["a"], ["y"], "relu"), {"a": ["N", 3, 5]}, {})
    assert node_work(view, view.nodes[0]) == 15


def test_without_an_output_shape_the_weights_size_is_the_least_work() -> None:
    node = NodeInfo("mm", "MatMul", ("a", "w"), ("y",))
    view = GraphView([node], {"a": TensorInfo("a"), "w": TensorInfo("w", "float32", (6, 7), is_constant=True),
                              "y": TensorInfo("y")})
    assert node_work(view, node) == 42
