"""Names in an ONNX graph, and fresh ones for the nodes and tensors a stage adds."""
from __future__ import annotations

from typing import Iterable

import onnx


def graph_names(graph: onnx.GraphProto) -> set[str]:
    """Every name the graph uses: nodes, tensors, initializers, value infos, and subgraph reads."""
    names = {n.name for n in graph.node} | {t.name for t in graph.initializer}
    names |= {v.name for v in (*graph.input, *graph.output, *graph.value_info)}
    for n in graph.node:
        names.update(n.input)
        names.update(n.output)
    names |= subgraph_reads(graph)
    names.discard("")
    return names


def node_subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    """The graphs held in a node's attributes (If branches, Loop and Scan bodies)."""
    graphs: list[onnx.GraphProto] = []
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            graphs.append(attr.g)
        elif attr.type == onnx.AttributeProto.GRAPHS:
            graphs.extend(attr.graphs)
    return graphs


def subgraphs(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    """The subgraphs of the graph's own nodes (one level down)."""
    # Most nodes have no attributes at all: they are passed over without a call.
    return [sub for node in graph.node if len(node.attribute) for sub in node_subgraphs(node)]


def body_node_count(node: onnx.NodeProto) -> int:
    """How many nodes the node's subgraphs (If branches, Loop and Scan bodies) hold, at any depth."""
    return sum(len(sub.node) + sum(body_node_count(inner) for inner in sub.node) for sub in node_subgraphs(node))


def subgraph_reads(graph: onnx.GraphProto) -> set[str]:
    """Every name a node inside a subgraph (If/Loop/Scan bodies) reads, at any depth."""
    found: set[str] = set()
    for sub in subgraphs(graph):
        for inner in sub.node:
            found.update(inner.input)
        found |= subgraph_reads(sub)
    return found


def outer_reads(graph: onnx.GraphProto) -> list[str]:
    """Names a subgraph reads from enclosing scopes, at any depth, in the order first read.

    Its inputs, initializers and node outputs are its own; anything else a node
    or a graph output names comes from outside.
    """
    local = {vi.name for vi in graph.input} | {t.name for t in graph.initializer}
    local |= {t.values.name for t in graph.sparse_initializer}
    reads: dict[str, None] = {}
    for node in graph.node:
        for name in (*node.input, *node_outer_reads(node)):
            if name and name not in local:
                reads.setdefault(name)
        local.update(node.output)
    for out in graph.output:
        if out.name not in local:
            reads.setdefault(out.name)
    return list(reads)


def node_outer_reads(node: onnx.NodeProto) -> list[str]:
    """Names the node's subgraphs read from the node's scope (besides its own inputs)."""
    return bodies_outer_reads(node_subgraphs(node))


def bodies_outer_reads(bodies: list[onnx.GraphProto]) -> list[str]:
    """Names a node's subgraphs (``node_subgraphs``) read from the node's scope, in the order first read."""
    return list(dict.fromkeys(name for sub in bodies for name in outer_reads(sub)))


class FreshNames:
    """Gives out names not in ``taken`` (nor given out before): ``stem``, else ``stem_1``, ``stem_2``, ..."""

    def __init__(self, taken: Iterable[str]) -> None:
        self.taken = set(taken)

    def __call__(self, stem: str) -> str:
        candidate, k = stem, 0
        while candidate in self.taken:
            k += 1
            candidate = f"{stem}_{k}"
        self.taken.add(candidate)
        return candidate
