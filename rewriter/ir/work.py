"""How much arithmetic a node does, estimated from the graph's shapes: the multiply-accumulates of a
convolution or a matrix product, the output elements of anything else.

A search that must return some quantized nodes to float uses it to tell a cheap revert from a costly one:
an integer kernel saves time roughly in proportion to the multiply-accumulates it runs in int8. It is an
estimate made from the model alone, so the choices it guides are the same on every run and every machine
(a measured time would differ between runs).

Unknown dimensions (symbolic, such as a batch named ``N``) count as 1: the estimate compares nodes of one
model at one batch size. A node whose output shape is not known at all gets the size of its constant
inputs (its weights), the least work it can do.
"""
from __future__ import annotations

import math
from typing import Sequence

from rewriter.ir.graph import GraphView, NodeInfo

__all__ = ["node_work"]

_CONVOLUTIONS = frozenset({"Conv", "ConvInteger", "QLinearConv"})
_MATRIX_PRODUCTS = frozenset({"MatMul", "MatMulInteger", "Gemm", "FusedMatMul"})


def node_work(graph: GraphView, node: NodeInfo) -> int:
    """The node's multiply-accumulates (Conv, ConvTranspose, MatMul, Gemm), else its output elements; from
    the graph's shapes, unknown dimensions counted as 1 (module docstring)."""
    out = _shape(graph, node.outputs[0] if node.outputs else "")
    if node.op_type in _CONVOLUTIONS and out is not None and len(out) >= 2:
        weight = _shape(graph, _input(node, 1))
        if weight is not None and len(weight) >= 2:
            # Each output element sums (input channels / group) x kernel products: the weight's elements
            # per output channel.
            return _elements(out) * _elements(weight[1:])
    if node.op_type == "ConvTranspose":
        source, weight = _shape(graph, _input(node, 0)), _shape(graph, _input(node, 1))
        if source is not None and weight is not None and len(weight) >= 2:
            # Each input element is scattered into (output channels / group) x kernel products.
            return _elements(source) * _elements(weight[1:])
    if node.op_type in _MATRIX_PRODUCTS and out is not None:
        reduced = _reduced_length(graph, node)
        if reduced is not None:
            return _elements(out) * reduced
    if out is not None:
        return _elements(out)
    return sum(_elements(shape) for shape in (_shape(graph, t) for t in node.inputs if graph.is_constant(t))
               if shape is not None)


def _reduced_length(graph: GraphView, node: NodeInfo) -> int | None:
    """The length of a matrix product's summed dimension: A's last (its first when Gemm transposes A), else
    B's first (its last when Gemm transposes B)."""
    attrs = node.attrs or {}
    a, b = _shape(graph, _input(node, 0)), _shape(graph, _input(node, 1))
    if a:
        return _dim(a[-2] if node.op_type == "Gemm" and attrs.get("transA") and len(a) >= 2 else a[-1])
    if b:
        if node.op_type == "Gemm" and attrs.get("transB"):
            return _dim(b[-1])
        return _dim(b[-2] if len(b) >= 2 else b[0])
    return None


def _input(node: NodeInfo, port: int) -> str:
    return node.inputs[port] if len(node.inputs) > port else ""


def _shape(graph: GraphView, tensor: str) -> tuple[int | str | None, ...] | None:
    return graph.tensor(tensor).shape if tensor else None


def _dim(d: int | str | None) -> int:
    return d if isinstance(d, int) and d > 0 else 1


def _elements(shape: Sequence[int | str | None]) -> int:
    return math.prod(_dim(d) for d in shape)
