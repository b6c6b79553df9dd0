"""Parse tree -> AST: the Lark Transformer that builds ``rewriter.dsl.ast`` dataclasses, checking nothing."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from lark import Token, Transformer, v_args

from rewriter.dsl import ast
from rewriter.dsl.grammar import Locator, excerpt_at
from rewriter.errors import SourceLoc, UserError

__all__ = ["AstBuilder", "Endpoint", "Include", "Item", "chain_edges", "number_value", "unquote"]


@dataclass(frozen=True)
class Include:
    """An ``include "path"`` declaration: the path as written, relative to its file."""

    path: str
    loc: SourceLoc


@dataclass(frozen=True)
class _Body:
    nodes: tuple[ast.PatternNode, ...]
    edges: tuple[ast.PatternEdge, ...]
    loc: SourceLoc


@dataclass(frozen=True)
class Endpoint:
    """One end of an edge in a chain: ``name`` or ``name.in[i]`` / ``name.out[i]``."""

    name: str
    direction: str | None  # "in", "out" or None
    index: int | None
    loc: SourceLoc
    port_loc: SourceLoc


@dataclass(frozen=True)
class _Match:
    target: str | _Body
    loc: SourceLoc


# What a file declares, in order: the builder's output for one file.
Item = Include | ast.Pattern | ast.Rule

_INTEGER = re.compile(r"-?[0-9]+")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def unquote(token: str) -> str:
    """A STRING token's value: the quotes taken off and the escapes resolved."""
    if "\\" not in token:
        return token[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), token[1:-1])


def number_value(token: str) -> int | float:
    """A NUMBER token's value: an int when written without a point or an exponent."""
    return int(token) if _INTEGER.fullmatch(token) else float(token)


def chain_edges(
    endpoints: list[Endpoint], links: list[bool], report: Callable[[str, SourceLoc], None]
) -> list[ast.PatternEdge]:
    """The edges of a chain ``e0 -> e1 ~> e2 ...``; ``links[i]`` is True for '~>' (through data movement).

    A port on the wrong end of the chain has no place in an edge: it is passed to ``report`` with its
    location, and the edge is built without it.
    """
    first, last = endpoints[0], endpoints[-1]
    if first.direction == "in":
        report(
            f"'{first.name}.in[{first.index}]' is on the left of '->': an input port belongs on the "
            f"right (write 'x -> {first.name}.in[{first.index}]'), an output port on the left "
            f"('{first.name}.out[i] -> x')",
            first.port_loc,
        )
    if last.direction == "out":
        report(
            f"'{last.name}.out[{last.index}]' is on the right of '->': an output port belongs on the "
            f"left (write '{last.name}.out[{last.index}] -> x'), an input port on the right "
            f"('x -> {last.name}.in[j]')",
            last.port_loc,
        )
    # Each arrow is one edge: the left endpoint's .out[i] is its source port,
    # the right endpoint's .in[j] its destination port.
    return [
        ast.PatternEdge(
            left.name,
            right.name,
            src_port=left.index if left.direction == "out" else None,
            dst_port=right.index if right.direction == "in" else None,
            loc=left.loc,
            moves=moves,
        )
        for left, right, moves in zip(endpoints, endpoints[1:], links)
    ]


@v_args(meta=True)
class AstBuilder(Transformer):
    """Builds AST dataclasses from the parse tree; no semantic checks here.

    A port on the wrong end of an edge chain (``a.in[0] -> b``) has no place in
    the AST, so it is recorded in ``self.errors`` instead of raised: raising
    inside a Transformer comes out wrapped in a VisitError.
    """

    def __init__(self, locator: Locator, source: str) -> None:
        super().__init__()
        self._locator = locator
        self._source = source
        self.errors: list[UserError] = []

    def _loc(self, meta) -> SourceLoc:
        if getattr(meta, "empty", True):
            return self._locator.at(None, None)
        return self._locator.at(meta.line, meta.column)

    def _tok(self, tok: Token) -> SourceLoc:
        return self._locator.at(tok.line, tok.column)

    # -- file level

    def start(self, meta, items) -> list[Item]:
        out: list[Item] = []
        for item in items:
            out.extend(item if isinstance(item, list) else [item])
        return out

    def predicate(self, meta, children) -> ast.Expr:
        return children[0]

    def include(self, meta, children) -> Include:
        return Include(unquote(children[0]), self._loc(meta))

    # -- patterns

    def pattern(self, meta, children) -> ast.Pattern:
        name, body = children
        return ast.Pattern(str(name), body.nodes, body.edges, loc=self._tok(name))

    def pattern_body(self, meta, stmts) -> _Body:
        nodes = tuple(s for s in stmts if isinstance(s, ast.PatternNode))
        edges = tuple(e for s in stmts if isinstance(s, list) for e in s)
        return _Body(nodes, edges, self._loc(meta))

    def node(self, meta, children) -> ast.PatternNode:
        name, ops, where, optional = children
        return ast.PatternNode(str(name), ops, where, optional is not None, loc=self._tok(name))

    def alts(self, meta, children) -> tuple[str, ...]:
        return tuple(str(c) for c in children)

    def port(self, meta, children) -> tuple[str, int, SourceLoc]:
        direction, index = children
        return str(direction), int(index), self._loc(meta)

    def endpoint(self, meta, children) -> Endpoint:
        name, port = children
        loc = self._tok(name)
        if port is None:
            return Endpoint(str(name), None, None, loc, loc)
        return Endpoint(str(name), port[0], port[1], loc, port[2])

    def arrow(self, meta, children) -> bool:
        return False

    def moves(self, meta, children) -> bool:
        return True

    def chain(self, meta, children: list) -> list[ast.PatternEdge]:
        # endpoint, link, endpoint, link, ...: a link is True for '~>' (through data movement), False for '->'
        return chain_edges(children[::2], children[1::2], self._error)

    def _error(self, message: str, loc: SourceLoc) -> None:
        self.errors.append(UserError(message, loc, excerpt_at(self._source, loc, self._locator)))

    # -- rules

    def rule(self, meta, children) -> list[Item]:
        name, match, *actions = children
        rule_name = str(name)
        loc = self._tok(name)
        if isinstance(match.target, _Body):
            # An inline pattern is named after its rule.
            body = match.target
            inline = ast.Pattern(rule_name, body.nodes, body.edges, loc=body.loc)
            return [inline, ast.Rule(rule_name, rule_name, tuple(actions), loc=loc)]
        return [ast.Rule(rule_name, match.target, tuple(actions), loc=loc)]

    def match(self, meta, children) -> _Match:
        (target,) = children
        return _Match(target if isinstance(target, _Body) else str(target), self._loc(meta))

    def ignore(self, meta, names) -> ast.Ignore:
        return ast.Ignore(tuple(str(n) for n in names), loc=self._loc(meta))

    def insert(self, meta, refs) -> ast.Insert:
        return ast.Insert(tuple(refs), loc=self._loc(meta))

    def remove(self, meta, targets) -> ast.Remove:
        return ast.Remove(tuple(targets), loc=self._loc(meta))

    def edgeref(self, meta, children) -> ast.EdgeRef:
        src, dst = children
        return ast.EdgeRef(str(src), str(dst), loc=self._tok(src))

    def propagate(self, meta, names) -> ast.Propagate:
        return ast.Propagate(tuple(str(n) for n in names), loc=self._loc(meta))

    def unify(self, meta, refs) -> ast.Unify:
        return ast.Unify(tuple(refs), loc=self._loc(meta))

    def symmetric(self, meta, refs) -> ast.Symmetric:
        return ast.Symmetric(tuple(refs), loc=self._loc(meta))

    def asymmetric(self, meta, refs) -> ast.Asymmetric:
        return ast.Asymmetric(tuple(refs), loc=self._loc(meta))

    def per_tensor(self, meta, refs) -> ast.PerTensor:
        return ast.PerTensor(tuple(refs), loc=self._loc(meta))

    def requantize(self, meta, refs) -> ast.Requantize:
        outputs, inputs = refs
        return ast.Requantize(outputs, inputs, loc=self._loc(meta))

    def int32_bias(self, meta, names) -> ast.Int32Bias:
        return ast.Int32Bias(tuple(str(n) for n in names), loc=self._loc(meta))

    def portref(self, meta, children) -> ast.PortRef:
        name, direction, ports = children
        return ast.PortRef(str(name), str(direction), ports, loc=self._tok(name))  # type: ignore[arg-type]

    def ports(self, meta, ints) -> tuple[int, ...]:
        return tuple(int(i) for i in ints)

    # -- predicates

    def or_expr(self, meta, items) -> ast.Or:
        return ast.Or(tuple(items), loc=self._loc(meta))

    def and_expr(self, meta, items) -> ast.And:
        return ast.And(tuple(items), loc=self._loc(meta))

    def not_(self, meta, children) -> ast.Not:
        return ast.Not(children[0], loc=self._loc(meta))

    def compare(self, meta, children) -> ast.Compare:
        left, op, right = children
        return ast.Compare(op, left, right, loc=self._loc(meta))

    def compare_op(self, meta, children) -> str:
        return str(children[0])

    def not_in(self, meta, children) -> str:
        return "not in"

    def const(self, meta, children) -> ast.ConstInput:
        return ast.ConstInput(int(children[0]), loc=self._loc(meta))

    def attr(self, meta, children) -> ast.AttrRef:
        return ast.AttrRef(str(children[0]), loc=self._loc(meta))

    def shape(self, meta, children) -> ast.ShapeRef:
        return ast.ShapeRef(int(children[0]), int(children[1]), loc=self._loc(meta))

    def out_shape(self, meta, children) -> ast.ShapeRef:
        return ast.ShapeRef(int(children[0]), int(children[1]), output=True, loc=self._loc(meta))

    def rank(self, meta, children) -> ast.RankRef:
        return ast.RankRef(int(children[0]), loc=self._loc(meta))

    def dtype(self, meta, children) -> ast.DtypeRef:
        return ast.DtypeRef(int(children[0]), loc=self._loc(meta))

    def fanout(self, meta, children) -> ast.NodeProp:
        return ast.NodeProp("fanout", loc=self._loc(meta))

    def num_inputs(self, meta, children) -> ast.NodeProp:
        return ast.NodeProp("num_inputs", loc=self._loc(meta))

    def graph_input(self, meta, children) -> ast.GraphInput:
        return ast.GraphInput(int(children[0]), loc=self._loc(meta))

    def zero(self, meta, children) -> ast.InputTest:
        return ast.InputTest("zero", int(children[0]), loc=self._loc(meta))

    def present(self, meta, children) -> ast.InputTest:
        return ast.InputTest("present", int(children[0]), loc=self._loc(meta))

    def static(self, meta, children) -> ast.InputTest:
        return ast.InputTest("static", int(children[0]), loc=self._loc(meta))

    def number(self, meta, children) -> ast.Lit:
        return ast.Lit(number_value(str(children[0])), loc=self._loc(meta))

    def string(self, meta, children) -> ast.Lit:
        return ast.Lit(unquote(children[0]), loc=self._loc(meta))

    def true(self, meta, children) -> ast.Lit:
        return ast.Lit(True, loc=self._loc(meta))

    def false(self, meta, children) -> ast.Lit:
        return ast.Lit(False, loc=self._loc(meta))

    def none(self, meta, children) -> ast.Lit:
        return ast.Lit(None, loc=self._loc(meta))

    def list_lit(self, meta, items) -> ast.Lit:
        return ast.Lit(tuple(i.value for i in items), loc=self._loc(meta))
