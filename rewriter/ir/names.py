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


def subgraph_reads(graph: onnx.GraphProto) -> set[str]:
    """Every name a node inside a subgraph (If/Loop/Scan bodies) reads, at any depth."""
    found: set[str] = set()
    for node in graph.node:
        for attr in node.attribute:
            for sub in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
                for inner in sub.node:
                    found.update(inner.input)
                found |= subgraph_reads(sub)
    return found


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
