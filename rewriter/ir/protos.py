"""Small shared pieces of graph rewriting: what a node reads, and in-place edits of repeated proto fields."""
from __future__ import annotations

from typing import Any, Iterable, NamedTuple

import onnx

from rewriter.ir.layers import DEFAULT_DOMAINS
from rewriter.ir.names import bodies_outer_reads, node_outer_reads, node_subgraphs

__all__ = ["DEFAULT_DOMAINS", "NodeRow", "delete_entries", "node_reads", "node_rows", "replace_entries",
           "replace_nodes"]


class NodeRow(NamedTuple):
    """A node's fields as plain Python: reading a protobuf field costs far more than reading a tuple, and a
    stage that walks the graph several times reads each node once."""

    name: str
    op_type: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    reads: tuple[str, ...]  # as node_reads (the inputs tuple itself when none is omitted and there are no bodies)
    attributes: int  # how many attributes it has (most nodes have none, and then nothing else is read)
    bodies: int  # how many subgraphs (If branches, Loop and Scan bodies) its attributes hold


def node_rows(nodes: Iterable[onnx.NodeProto]) -> list[NodeRow]:
    """One ``NodeRow`` per node, in order."""
    rows = []
    for node in nodes:
        inputs = tuple(node.input)
        # Most nodes omit no input: their reads are their inputs, one tuple for both (a list made for each of a
        # million nodes costs a fifth of this loop).
        reads = inputs if "" not in inputs else tuple(t for t in inputs if t)
        attributes = len(node.attribute)
        bodies = node_subgraphs(node) if attributes else []
        if bodies:
            reads = (*reads, *bodies_outer_reads(bodies))
        rows.append(NodeRow(node.name, node.op_type, node.domain, inputs, tuple(node.output), reads, attributes,
                            len(bodies)))
    return rows


def node_reads(node: onnx.NodeProto) -> list[str]:
    """Names the node reads: its inputs and the outer names its subgraphs read."""
    reads = [t for t in node.input if t]
    # Only attributes can hold subgraphs; most nodes have none, and this runs for every node many times.
    return reads + node_outer_reads(node) if len(node.attribute) else reads


def delete_entries(field: Any, indices: Iterable[int]) -> None:
    """Delete entries of a repeated proto field in place (no copies of big tensors)."""
    for i in sorted(indices, reverse=True):
        del field[i]


def replace_entries(field: Any, items: list[Any]) -> None:
    """Set a repeated proto field to ``items``, which may be entries of ``field`` itself.

    Each item is copied once, by ``extend``: an entry taken out of its field stays a valid message while a
    reference to it is held (protobuf's upb and pure-Python implementations both; a test holds it), so the
    items need no copy of their own first (that copy was a third of normalizing a TorchScript export's
    Constant nodes away).
    """
    items = list(items)  # held here: the entries stay alive once the field lets them go
    del field[:]
    field.extend(items)


def replace_nodes(g: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    """Set the graph's nodes to ``nodes``, in that order."""
    replace_entries(g.node, nodes)
