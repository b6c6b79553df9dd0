"""Find every occurrence of a pattern in a graph, deterministically and in linear time.

A pattern with optional nodes is compiled into variants, the most complete
first; an absent optional node's neighbours are joined directly. Matching is
anchored on the pattern node with the fewest candidates in this graph (an
index lookup by op type), then grows along pattern edges, so each anchor costs
a bounded amount of work and the whole search is linear in the graph's size
for a fixed rule set. The variants' steps from the anchor are merged into one
tree, so the steps they share are taken once per anchor.

Per anchor node, the first variant that matches wins ("longest match"), and
every embedding of that variant is reported. Matches come out sorted by the
graph positions of their captures, so the same graph gives the same matches in
the same order.

Why a pattern does not match at some node is answered by rewriter.match.explain,
which grows the pattern from that node on its own; the search here keeps no
record of failures, so explaining costs planning nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product
from types import MappingProxyType
from typing import Iterator, Mapping

from rewriter.dsl import ast
from rewriter.dsl.check import MAX_OPTIONAL_NODES
from rewriter.errors import UserError
from rewriter.ir.graph import GraphView, NodeInfo
from rewriter.match.predicates import Evaluator, compile_predicate
from rewriter.records import direct_init
from rewriter.spec.model import HardwareSpec

SPEC_CLASSES = ("@quantizable", "@agnostic", "@unified")

#: What a ``~>`` edge steps over: ops that only move or broadcast the values of their input 0
#: (exporters put them between the steps of one computation: jax2tf's Reshape and Expand that
#: broadcast a per-row mean back to the row). The edge follows at most ``MOVEMENT_DEPTH`` of them.
MOVEMENT_OPS = frozenset({"Identity", "Reshape", "Expand", "Squeeze", "Unsqueeze", "Flatten", "Transpose"})
MOVEMENT_DEPTH = 4


@direct_init
@dataclass(frozen=True, slots=True)
class Match:
    """One occurrence: its captures' names and node indexes, in the order they were bound (absent optional
    captures are missing).

    Two tuples rather than a mapping: a large graph has millions of matches, most of one node, and every
    one-node match of a pattern shares one ``names`` tuple. Two matches are equal when their tuples are,
    order included (``PatternMatcher.find`` reports each set of captures once).
    """

    pattern: str
    names: tuple[str, ...]
    nodes: tuple[int, ...]

    @property
    def captures(self) -> Mapping[str, int]:
        """Capture name -> node index."""
        return MappingProxyType(dict(zip(self.names, self.nodes)))

    def node(self, capture: str) -> int | None:
        names = self.names
        for k in range(len(names)):  # a handful of captures: scanning beats building a dict
            if names[k] == capture:
                return self.nodes[k]
        return None


@dataclass(frozen=True)
class Variant:
    """One way of keeping or dropping a pattern's optional nodes: the nodes kept and the edges joining them."""

    nodes: tuple[ast.PatternNode, ...]
    edges: tuple[ast.PatternEdge, ...]


def compile_variants(pattern: ast.Pattern) -> tuple[Variant, ...]:
    """Every way of keeping or dropping the optional nodes, most complete first."""
    optional = [n.name for n in pattern.nodes if n.optional]
    if len(optional) == len(pattern.nodes):
        raise UserError(f"pattern {pattern.name} has only optional nodes; make one node required",
                        pattern.loc)
    if len(optional) > MAX_OPTIONAL_NODES:  # rule files are checked at load; a hand-built pattern is not
        raise UserError(f"pattern {pattern.name} has {len(optional)} optional nodes, more than "
                        f"{MAX_OPTIONAL_NODES} (2^{len(optional)} variants); split it into several patterns",
                        pattern.loc)
    variants = []
    # product((True, False)) enumerates "all kept" first and "all dropped" last,
    # and earlier-declared optionals stay longest: a stable, documented order.
    for keep in product((True, False), repeat=len(optional)):
        dropped = {name for name, k in zip(optional, keep) if not k}
        variants.append(_drop(pattern, dropped))
    return tuple(variants)


def _drop(pattern: ast.Pattern, dropped: set[str]) -> Variant:
    edges = list(pattern.edges)
    for name in [n.name for n in pattern.nodes if n.name in dropped]:
        incoming = [e for e in edges if e.dst == name]
        outgoing = [e for e in edges if e.src == name]
        rest = [e for e in edges if e.dst != name and e.src != name]
        # An optional node has one edge in and one out (checked by the DSL),
        # so bypassing it is a single joined edge.
        for a, b in product(incoming, outgoing):
            rest.append(ast.PatternEdge(a.src, b.dst, a.src_port, b.dst_port, b.loc, moves=a.moves or b.moves))
        edges = rest
    return Variant(tuple(n for n in pattern.nodes if n.name not in dropped), tuple(edges))


class PatternMatcher:
    """Matches one pattern against graphs for one target spec."""

    def __init__(self, pattern: ast.Pattern, spec: HardwareSpec) -> None:
        self.pattern = pattern
        self.spec = spec
        self.variants = compile_variants(pattern)
        self._op_sets: dict[str, frozenset[str] | None] = {}
        # Anchor name -> the variants' steps from it, merged into one tree.
        self._trees: dict[str, _Growth] = {}
        # (direction, ports, moves) -> bound node -> the graph nodes at the edge's far end, whichever pattern
        # node stands there: the edges from one pattern node to several (an optional node's, and those that
        # bypass it) reach the same graph nodes. The lists filtered per pattern node are not kept: grown as one
        # tree, the variants seldom ask for one twice (not once on tools/bench_match.py's graph).
        self._reached: dict[tuple, dict[int, list[int]]] = {}
        self._wheres: dict[str, Evaluator | None] = {}

    def find(self, graph: GraphView) -> list[Match]:
        anchor = self.anchor(graph)
        found: dict[tuple, Match] = {}
        self._reached = {}  # valid for this graph only
        if len(self.variants) == 1 and len(self.variants[0].nodes) == 1 and not self.variants[0].edges:
            # One node, nothing to grow: every candidate is a match, already in graph order.
            names = (anchor.name,)
            return [Match(self.pattern.name, names, (index,)) for index in self._candidates(graph, anchor)]
        tree = self._trees.get(anchor.name)
        if tree is None:
            tree = self._trees[anchor.name] = _growth_tree(self.variants, anchor.name)
        for index in self._candidates(graph, anchor):
            bound = {anchor.name: index}
            hits: dict[int, list[dict[str, int]]] = {}
            if tree.completes is not None:
                hits[tree.completes] = [dict(bound)]
            self._grow(graph, tree, bound, hits)
            if hits:
                for captures in hits[min(hits)]:
                    # Positions and names apart: matches of different sizes can share their first positions.
                    key = (tuple(sorted(captures.values())), tuple(sorted(captures)))
                    if key not in found:
                        found[key] = Match(self.pattern.name, tuple(captures), tuple(captures.values()))
        return [found[k] for k in sorted(found)]

    # -- anchoring --------------------------------------------------------

    def anchor(self, graph: GraphView) -> ast.PatternNode:
        """The required pattern node with the fewest candidates in ``graph``: where every search starts."""
        required = [n for n in self.pattern.nodes if not n.optional]
        return min(required, key=lambda n: (self._candidate_count(graph, n), required.index(n)))

    def allowed_ops(self, pnode: ast.PatternNode) -> frozenset[str] | None:
        """The op types a pattern node accepts on this target (None = any op)."""
        if pnode.name not in self._op_sets:
            if "*" in pnode.ops:
                self._op_sets[pnode.name] = None
            else:
                ops = {op for op in pnode.ops if not op.startswith("@")}
                for cls in (op for op in pnode.ops if op.startswith("@")):
                    ops.update(t for t in self.spec.ops if self._in_class(cls, t))
                self._op_sets[pnode.name] = frozenset(ops)
        return self._op_sets[pnode.name]

    def _candidate_count(self, graph: GraphView, pnode: ast.PatternNode) -> int:
        allowed = self.allowed_ops(pnode)
        if allowed is None:
            return len(graph.nodes)
        return sum(len(graph.by_op.get(op, ())) for op in allowed)

    def _candidates(self, graph: GraphView, pnode: ast.PatternNode) -> Iterator[int]:
        allowed = self.allowed_ops(pnode)
        if allowed is None:
            indexes: list[int] | range = range(len(graph.nodes))
        else:
            indexes = sorted(i for op in allowed for i in graph.by_op.get(op, ()))
        where = self._where(pnode)
        for i in indexes:
            if where is None or where(graph, graph.nodes[i]):
                yield i

    def _where(self, pnode: ast.PatternNode) -> Evaluator | None:
        # Looked up by name: compile_predicate's own cache hashes the whole expression tree on every call.
        if pnode.name not in self._wheres:
            self._wheres[pnode.name] = compile_predicate(pnode.where) if pnode.where is not None else None
        return self._wheres[pnode.name]

    def _accepted_among(self, graph: GraphView, pnode: ast.PatternNode, indexes: list[int]) -> list[int]:
        """The graph nodes of ``indexes`` that ``pnode`` accepts (its op types, then its where clause), in order.

        One call per list of neighbours, the pattern node's tests looked up once for all of them. Verdicts are
        not kept: grown as one tree, the variants seldom ask about a (pattern node, graph node) pair twice (not
        once on tools/bench_match.py's graph).
        """
        allowed, where, nodes = self.allowed_ops(pnode), self._where(pnode), graph.nodes
        accepted = []
        for index in indexes:
            node = nodes[index]
            if (allowed is None or node.op_type in allowed) and (where is None or where(graph, node)):
                accepted.append(index)
        return accepted

    def _in_class(self, cls: str, op_type: str) -> bool:
        entry = self.spec.op(op_type)
        if entry is None:
            return False
        if cls == "@quantizable":
            return entry.quantizable or any(v.activations or v.weights or v.outputs for v in entry.variants)
        if cls == "@agnostic":
            return entry.agnostic
        if cls == "@unified":
            return entry.unified_scales is not None
        return False

    # -- growing an embedding ---------------------------------------------

    def _grow(self, graph: GraphView, tree: _Growth, bound: dict[str, int],
              hits: dict[int, list[dict[str, int]]]) -> None:
        """Every way of binding the steps below ``tree`` from ``bound``; each variant's embeddings go to
        ``hits`` under its position, in the order growing that variant alone finds them.

        A branch whose variants all come after one that has matched already is not grown: the first variant
        that matches wins.
        """
        for branch in tree.branches:
            if hits and branch.first > min(hits):
                continue
            name, via, known_end, pnode, reach_key, checks = branch.step
            fitting = self._fitting_nodes(graph, reach_key, via, bound[known_end], bound, pnode)
            used = bound.values()
            for cand in fitting:
                if cand in used:
                    continue
                bound[name] = cand
                if not checks or all(edge_holds(graph, graph.nodes[bound[e.src]], graph.nodes[bound[e.dst]],
                                                e.src_port, e.dst_port, moves=e.moves) for e in checks):
                    if branch.completes is not None and (not hits or branch.completes <= min(hits)):
                        hits.setdefault(branch.completes, []).append(dict(bound))
                    if branch.branches:
                        self._grow(graph, branch, bound, hits)
                del bound[name]

    def _fitting_nodes(self, graph: GraphView, reach_key: tuple, via: ast.PatternEdge, known: int,
                       bound: dict[str, int], pnode: ast.PatternNode) -> list[int]:
        """The graph nodes ``pnode`` accepts along ``via`` from the bound graph node ``known``, in graph order.

        The nodes at the edge's far end are listed once per ``reach_key`` (direction, ports, moves) and
        ``known``: the branches of the growth tree that leave one bound node alike share them.
        """
        reached = self._reached.get(reach_key)
        if reached is None:
            reached = self._reached[reach_key] = {}
        near = reached.get(known)
        if near is None:
            near = reached[known] = neighbours(graph, via, bound, pnode.name)
        return self._accepted_among(graph, pnode, near)


# One step of growing a variant: the pattern node bound, the edge it is reached by, the pattern node at that
# edge's bound end, the pattern node itself, how the edge leaves that end (for the cache of neighbours) and
# the variant's other edges whose both ends are bound once this node is (each must hold; the edge it is
# reached by holds already: the candidates are the nodes at its far end).
_Step = tuple[str, ast.PatternEdge, str, ast.PatternNode, tuple, tuple[ast.PatternEdge, ...]]


@dataclass
class _Growth:
    """A node of the growth tree: the variants' steps from the anchor, a step shared by the variants that
    take it after the same steps.

    The root's step binds the anchor (its candidates come from the op index, not from its edge); ``first``
    is the position of the first variant that takes a step, ``completes`` that of the variant whose last step
    it is, if one is.
    """

    step: _Step
    first: int
    completes: int | None = None
    branches: list[_Growth] = field(default_factory=list)


def _growth_tree(variants: tuple[Variant, ...], anchor: str) -> _Growth:
    """The steps of growing each variant from ``anchor`` (``grow_order``), merged where they start alike.

    Variants share their first steps (those that keep the same leading optional nodes), so an anchor's
    neighbours are bound once for all of them rather than once per variant. Branches stay in variant order.
    """
    root = _Growth(_steps(variants[0], anchor)[0], 0)
    by_key: dict[tuple[int, tuple], _Growth] = {}
    for position, variant in enumerate(variants):
        node = root
        for step in _steps(variant, anchor)[1:]:
            name, via, known_end, _, _, checks = step
            key = (id(node), (name, _edge_key(via), known_end, tuple(_edge_key(e) for e in checks)))
            branch = by_key.get(key)
            if branch is None:
                branch = by_key[key] = _Growth(step, position)
                node.branches.append(branch)
            node = branch
        if node.completes is None:
            node.completes = position
    return root


def _edge_key(edge: ast.PatternEdge) -> tuple:
    return edge.src, edge.dst, edge.src_port, edge.dst_port, edge.moves


def _steps(variant: Variant, anchor: str) -> list[_Step]:
    """``grow_order`` with what each step needs worked out once per variant and anchor."""
    pnodes = {n.name: n for n in variant.nodes}
    steps: list[_Step] = []
    bound: set[str] = set()
    for name, via in grow_order(variant, anchor):
        bound.add(name)
        checks = tuple(e for e in variant.edges if e is not via and name in (e.src, e.dst)
                       and e.src in bound and e.dst in bound)
        steps.append((name, via, via.src if via.dst == name else via.dst, pnodes[name],
                      (via.dst == name, via.src_port, via.dst_port, via.moves), checks))
    return steps


def grow_order(variant: Variant, anchor: str) -> list[tuple[str, ast.PatternEdge]]:
    """Breadth-first order from the anchor; each later node is reached through one edge."""
    order: list[tuple[str, ast.PatternEdge]] = [(anchor, variant.edges[0] if variant.edges else
                                                 ast.PatternEdge(anchor, anchor))]
    seen = {anchor}
    frontier = [anchor]
    while frontier:
        current = frontier.pop(0)
        for edge in variant.edges:
            for near, far in ((edge.src, edge.dst), (edge.dst, edge.src)):
                if near == current and far not in seen:
                    seen.add(far)
                    frontier.append(far)
                    order.append((far, edge))
    if len(seen) != len(variant.nodes):
        missing = sorted({n.name for n in variant.nodes} - seen)
        raise UserError(f"pattern nodes {missing} are not connected to {anchor}")
    return order


def moved_forward(graph: GraphView, tensors: list[str]) -> list[str]:
    """``tensors`` and what data-movement nodes make of them, up to ``MOVEMENT_DEPTH`` nodes on."""
    found, frontier = list(tensors), list(tensors)
    for _ in range(MOVEMENT_DEPTH):
        step = []
        for t in frontier:
            for i, port in graph.consumers.get(t, ()):
                node = graph.nodes[i]
                if port == 0 and node.op_type in MOVEMENT_OPS and node.outputs and node.outputs[0]:
                    step.append(node.outputs[0])
        step = [t for t in dict.fromkeys(step) if t not in found]
        if not step:
            break
        found.extend(step)
        frontier = step
    return found


def moved_from(graph: GraphView, tensor: str) -> list[str]:
    """``tensor`` and the tensors data-movement nodes made it from, up to ``MOVEMENT_DEPTH`` nodes back."""
    found = [tensor]
    for _ in range(MOVEMENT_DEPTH):
        prod = graph.producer.get(found[-1])
        if prod is None or prod[1] != 0:
            break
        node = graph.nodes[prod[0]]
        if node.op_type not in MOVEMENT_OPS or not node.inputs or not node.inputs[0]:
            break
        found.append(node.inputs[0])
    return found


def neighbours(graph: GraphView, edge: ast.PatternEdge, bound: dict[str, int], name: str) -> list[int]:
    """Graph nodes that can stand for ``name`` given the bound end of ``edge``."""
    if edge.dst == name:  # bound producer -> candidate consumer
        src = graph.nodes[bound[edge.src]]
        ports = src.outputs if edge.src_port is None else src.outputs[edge.src_port:edge.src_port + 1]
        outs = [t for t in ports if t]
        if edge.moves:
            outs = moved_forward(graph, outs)
        if len(outs) == 1:
            # The common case, without a set: one tensor's consumers are listed in graph order already.
            found: list[int] = []
            for i, port in graph.consumers.get(outs[0], ()):
                if (edge.dst_port is None or port == edge.dst_port) and (not found or found[-1] != i):
                    found.append(i)
            return found
        hits = {i for t in outs for i, port in graph.consumers.get(t, ())
                if edge.dst_port is None or port == edge.dst_port}
        return sorted(hits)
    dst = graph.nodes[bound[edge.dst]]  # bound consumer -> candidate producer
    ins = dst.inputs if edge.dst_port is None else dst.inputs[edge.dst_port:edge.dst_port + 1]
    hits = set()
    for t in ins:
        for origin in (moved_from(graph, t) if edge.moves and t else [t]):
            prod = graph.producer.get(origin) if origin else None
            if prod and (edge.src_port is None or prod[1] == edge.src_port):
                hits.add(prod[0])
    return sorted(hits)


def edge_holds(graph: GraphView, src: NodeInfo, dst: NodeInfo, src_port: int | None,
               dst_port: int | None, moves: bool = False) -> bool:
    """Does an output of ``src`` (port src_port, or any) feed ``dst`` (at dst_port, or any)?

    With ``moves``, also through a chain of data-movement nodes (a ``~>`` edge).
    """
    outs = src.outputs if src_port is None else src.outputs[src_port:src_port + 1]
    ins = dst.inputs if dst_port is None else dst.inputs[dst_port:dst_port + 1]
    if moves:
        reached = set(moved_forward(graph, [t for t in outs if t]))
        return any(t and t in reached for t in ins)
    return any(t and t in outs for t in ins)
