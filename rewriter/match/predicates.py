"""Evaluate DSL predicates (``where`` clauses, spec ``when`` strings) on a graph node.

Predicates are compiled once into closures: the matcher calls them for every
candidate node, so walking the syntax tree on each call would dominate the
cost of planning a large graph.
"""
from __future__ import annotations

import operator
from functools import lru_cache
from typing import Any, Callable

from rewriter.dsl import ast
from rewriter.ir.graph import GraphView, NodeInfo

Evaluator = Callable[[GraphView, NodeInfo], Any]

_ORDERING: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


def holds(expr: ast.Expr | None, graph: GraphView, node: NodeInfo) -> bool:
    """True when the predicate holds for ``node``; no predicate always holds.

    Unknown facts (an absent attribute, a dynamic dimension) evaluate to None,
    and any ordering comparison with None is false, so a rule never fires on a
    guess.
    """
    if expr is None:
        return True
    return bool(compile_predicate(expr)(graph, node))


@lru_cache(maxsize=None)
def compile_predicate(expr: ast.Expr) -> Evaluator:
    """A closure computing the expression's value for (graph, node)."""
    if isinstance(expr, ast.Lit):
        value = expr.value
        return lambda g, n: value
    if isinstance(expr, ast.And):
        parts = tuple(compile_predicate(e) for e in expr.items)
        return lambda g, n: all(p(g, n) for p in parts)
    if isinstance(expr, ast.Or):
        parts = tuple(compile_predicate(e) for e in expr.items)
        return lambda g, n: any(p(g, n) for p in parts)
    if isinstance(expr, ast.Not):
        inner = compile_predicate(expr.item)
        return lambda g, n: not inner(g, n)
    if isinstance(expr, ast.Compare):
        left, right, op = compile_predicate(expr.left), compile_predicate(expr.right), expr.op
        return lambda g, n: _compare(op, left(g, n), right(g, n))
    return _compile_atom(expr)


def _compile_atom(expr: ast.Expr) -> Evaluator:
    if isinstance(expr, ast.AttrRef):
        name = expr.name
        return lambda g, n: n.attrs.get(name)
    if isinstance(expr, ast.ConstInput):
        i = expr.index
        return lambda g, n: g.is_constant(_input(n, i))
    if isinstance(expr, ast.GraphInput):
        i = expr.index
        return lambda g, n: bool(_input(n, i)) and g.tensor(_input(n, i)).is_graph_input
    if isinstance(expr, ast.InputTest):
        i, test = expr.index, expr.test
        if test == "zero":
            return lambda g, n: bool(_input(n, i)) and g.tensor(_input(n, i)).is_zero
        if test == "present":
            return lambda g, n: bool(_input(n, i))
        return lambda g, n: _static(g, _input(n, i))
    if isinstance(expr, ast.ShapeRef):
        i, dim, output = expr.index, expr.dim, expr.output
        return lambda g, n: _dim(g, _port(n.outputs if output else n.inputs, i), dim)
    if isinstance(expr, ast.RankRef):
        i = expr.index
        return lambda g, n: _rank(g, _input(n, i))
    if isinstance(expr, ast.DtypeRef):
        i = expr.index
        return lambda g, n: g.tensor(_input(n, i)).dtype
    if isinstance(expr, ast.NodeProp):
        if expr.name == "fanout":
            return lambda g, n: g.fanout(n.outputs[0]) if n.outputs else 0
        return lambda g, n: sum(1 for t in n.inputs if t)
    raise TypeError(f"unknown predicate element {type(expr).__name__}")


def _port(names: tuple[str, ...], index: int) -> str:
    return names[index] if index < len(names) else ""


def _input(node: NodeInfo, index: int) -> str:
    return node.inputs[index] if index < len(node.inputs) else ""


def _rank(graph: GraphView, tensor: str) -> int | None:
    shape = graph.tensor(tensor).shape if tensor else None
    return None if shape is None else len(shape)


def _static(graph: GraphView, tensor: str) -> bool:
    shape = graph.tensor(tensor).shape if tensor else None
    return shape is not None and all(isinstance(d, int) for d in shape)


def _dim(graph: GraphView, tensor: str, dim: int) -> int | None:
    shape = graph.tensor(tensor).shape if tensor else None
    if shape is None or not -len(shape) <= dim < len(shape):
        return None
    value = shape[dim]
    return value if isinstance(value, int) else None


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    if op in ("in", "not in"):
        inside = left in right if isinstance(right, (tuple, list, str)) else False
        return inside if op == "in" else not inside
    if left is None or right is None:
        return False
    try:
        return _ORDERING[op](left, right)
    except TypeError:
        return False
