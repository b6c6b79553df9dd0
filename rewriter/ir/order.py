"""Graph order and node names: topological sorting (stable) and unique node names."""
from __future__ import annotations

import heapq
from collections import Counter
from itertools import chain
from typing import Sequence

import onnx

from rewriter.ir.protos import NodeRow, node_rows, replace_nodes

__all__ = ["name_nodes", "sort_graph", "sort_nodes", "topological_order"]


def sort_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with the main graph's nodes in topological order (stable)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    sort_graph(m.graph, [])
    return m


def topological_order(nodes: Sequence[onnx.NodeProto], rows: Sequence[NodeRow] | None = None) -> list[int]:
    """Indices of ``nodes`` in a topological order, as close to the given order as possible.

    Names read inside subgraphs count as inputs of the node holding the subgraph.
    Inputs nobody produces (graph inputs, initializers) impose no order; nodes
    on a cycle keep their relative order at the end rather than raising.
    ``rows``: the nodes' ``node_rows``, when the caller has them already.
    """
    if rows is None:
        rows = node_rows(nodes)
    reads = [r.reads for r in rows]
    outputs = [r.outputs for r in rows]
    if _already_sorted(outputs, reads):
        # The common case (exporters write topological order): one pass instead of a heap walk, with the
        # same answer, since the heap always takes the lowest-indexed ready node.
        return list(range(len(nodes)))
    producer = {out: i for i, outs in enumerate(outputs) for out in outs if out}
    users: list[list[int]] = [[] for _ in nodes]
    pending = [0] * len(nodes)
    for i, names in enumerate(reads):
        deps = {producer[t] for t in names if t in producer} - {i}
        pending[i] = len(deps)
        for d in deps:
            users[d].append(i)
    ready = [i for i, p in enumerate(pending) if p == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            pending[u] -= 1
            if pending[u] == 0:
                heapq.heappush(ready, u)
    if len(order) < len(nodes):
        placed = set(order)
        order.extend(i for i in range(len(nodes)) if i not in placed)
    return order


def _already_sorted(outputs: list[tuple[str, ...]], reads: list[tuple[str, ...]]) -> bool:
    """Every name a node reads that some node produces is produced by an earlier node (or itself)."""
    # One flat list, so that the set and the count are each made in one call rather than a call per node.
    flat = list(chain.from_iterable(outputs))
    produced = set(flat)
    produced.discard("")
    if len(flat) - flat.count("") != len(produced):
        return False  # a name produced twice: leave it to the full sort, which takes the last producer
    seen: set[str] = set()
    for own, names in zip(outputs, reads):
        for t in names:
            if t in produced and t not in seen and t not in own:
                return False
        seen.update(own)
    return True


def sort_graph(g: onnx.GraphProto, log: list[str], rows: Sequence[NodeRow] | None = None) -> bool:
    """Put the graph's nodes in ``topological_order`` in place; say so in ``log`` if they moved (and return True).

    ``rows``: the nodes' ``node_rows``, when the caller has them already.
    """
    order = topological_order(g.node, rows)
    if order == list(range(len(order))):
        return False
    nodes = [g.node[i] for i in order]
    replace_nodes(g, nodes)
    log.append("reordered nodes into topological order")
    return True



def name_nodes(g: onnx.GraphProto, log: list[str], rows: Sequence[NodeRow]) -> list[NodeRow]:
    """Keep unique names; give empty and repeated ones (after the first) ``<op_type>_<n>``.

    ``rows``: the nodes' ``node_rows``; the names are read from them, not from every node's proto. Returns
    the rows with the new names.
    """
    named = list(rows)
    taken = {r.name for r in named}
    taken.discard("")
    seen: set[str] = set()
    next_n: Counter[str] = Counter()
    renamed = 0
    for i, row in enumerate(named):
        if row.name and row.name not in seen:
            seen.add(row.name)
            continue
        n = next_n[row.op_type]
        while f"{row.op_type}_{n}" in taken:
            n += 1
        name = f"{row.op_type}_{n}"
        g.node[i].name = name
        named[i] = row._replace(name=name)
        next_n[row.op_type] = n + 1
        taken.add(name)
        seen.add(name)
        renamed += 1
    if renamed:
        log.append(f"named {renamed} node(s) that had an empty or repeated name")
    return named
