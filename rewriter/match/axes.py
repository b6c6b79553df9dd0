"""Which axis of a quantized tensor holds the channels, by ONNX operator semantics.

This is knowledge about ONNX ops, not about hardware, so it lives in code;
the spec decides *whether* a tensor is quantized per channel.
"""
from __future__ import annotations

from rewriter.ir.graph import GraphView, NodeInfo
from rewriter.ir.layers import LINEAR_OPS, WEIGHT_PORT, weight_axes


def weight_channel_axis(graph: GraphView, node: NodeInfo, port: int) -> int | None:
    """The output-channel axis of a constant input, or None when per-tensor is the only sense.

    Conv: W is [C_out, C_in/g, k...] -> 0. ConvTranspose: W is [C_in, C_out/g, k...] -> 1.
    Gemm: B is [K, N] -> 1, or [N, K] with transB -> 0; a constant A -> None.
    MatMul: x @ W with W [..., K, N] -> last axis. Gather's table -> last axis
    (unless it gathers along it). Elementwise ops: the one
    non-unit axis of the constant, if exactly one.
    """
    shape = graph.tensor(node.inputs[port]).shape
    rank = len(shape) if shape is not None else None
    op = node.op_type
    if op in LINEAR_OPS and port == WEIGHT_PORT:
        return weight_axes(op, node.attrs, rank)[0]
    if op == "Gemm" and port == 0:
        return None  # a constant A: per tensor, whatever transA says
    if op == "Gather" and port == 0 and rank and rank > 1:
        # An embedding table [rows, ..., width]: per column, which stays the last axis after the Gather.
        gathered = node.attrs.get("axis", 0) % rank
        return rank - 1 if gathered != rank - 1 else None
    if shape is not None and rank:
        wide = [i for i, d in enumerate(shape) if d != 1]
        if len(wide) == 1 and isinstance(shape[wide[0]], int):
            return wide[0]
    return None


def activation_channel_axis(graph: GraphView, tensor: str) -> int | None:
    """Channels of an activation: axis 1 of a rank >= 3 tensor (NC...), else none."""
    shape = graph.tensor(tensor).shape
    return 1 if shape is not None and len(shape) >= 3 else None
