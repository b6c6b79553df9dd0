"""Evaluate DSL predicates (``where`` clauses, spec ``when`` strings) on a graph node.

Predicates are compiled once into closures: the matcher calls them for every
candidate node, so walking the syntax tree on each call would dominate the
cost of planning a large graph. Explaining why a predicate is false
(``explain_predicate``) is a separate, slower walk that only `audit --why` takes.
"""
from __future__ import annotations

import json
import operator
from functools import cache
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


@cache
def compile_predicate(expr: ast.Expr) -> Evaluator:
    """A closure computing the expression's value for (graph, node)."""
    if isinstance(expr, ast.Lit):
        value = expr.value
        return lambda g, n: value
    if isinstance(expr, ast.And):
        parts = tuple(compile_predicate(e) for e in expr.items)
        if len(parts) == 2:
            # The usual shape, without a generator per call (the value is all()'s: a bool).
            a, b = parts
            return lambda g, n: bool(a(g, n)) and bool(b(g, n))
        return lambda g, n: all(p(g, n) for p in parts)
    if isinstance(expr, ast.Or):
        parts = tuple(compile_predicate(e) for e in expr.items)
        if len(parts) == 2:
            a, b = parts
            return lambda g, n: bool(a(g, n)) or bool(b(g, n))
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


# -- explaining a false predicate (audit --why; never on the matching path) --


def explain_predicate(expr: ast.Expr | None, graph: GraphView, node: NodeInfo) -> str | None:
    """None when the predicate holds for ``node``; else the smallest failing part and the facts it read.

    ``fanout == 1 and const(1)`` on a node with two consumers gives
    ``fanout == 1 is false (fanout 2)``: the first false operand of an ``and``,
    followed down through ``not (a or b)`` to the operand that is true.
    """
    if expr is None or compile_predicate(expr)(graph, node):
        return None
    failing = _failing_part(expr, graph, node)
    facts = ", ".join(f"{expr_text(atom)} {_value_text(compile_predicate(atom)(graph, node))}"
                      for atom in _atoms(failing))
    return f"{expr_text(failing)} is false" + (f" ({facts})" if facts else "")


def _failing_part(expr: ast.Expr, graph: GraphView, node: NodeInfo) -> ast.Expr:
    """A sub-expression that is false on its own and makes ``expr`` (false) false."""
    if isinstance(expr, ast.And):
        first_false = next(e for e in expr.items if not compile_predicate(e)(graph, node))
        return _failing_part(first_false, graph, node)
    if isinstance(expr, ast.Not):
        inner = expr.item
        if isinstance(inner, ast.Not):
            return _failing_part(inner.item, graph, node)
        if isinstance(inner, ast.Or):
            first_true = next(e for e in inner.items if compile_predicate(e)(graph, node))
            return _failing_part(ast.Not(first_true), graph, node)
    return expr


def _atoms(expr: ast.Expr) -> list[ast.Expr]:
    """The facts an expression reads (attributes, shapes, const(i), ...), each once, literals left out."""
    if isinstance(expr, ast.Lit):
        return []
    if isinstance(expr, (ast.And, ast.Or)):
        parts = [a for e in expr.items for a in _atoms(e)]
    elif isinstance(expr, ast.Not):
        parts = _atoms(expr.item)
    elif isinstance(expr, ast.Compare):
        parts = _atoms(expr.left) + _atoms(expr.right)
    else:
        parts = [expr]
    return list(dict.fromkeys(parts))


def expr_text(expr: ast.Expr) -> str:
    """The expression in rule-file syntax, parenthesized only where precedence needs it."""
    if isinstance(expr, ast.Lit):
        return _value_text(expr.value)
    if isinstance(expr, ast.Or):
        return " or ".join(expr_text(e) for e in expr.items)
    if isinstance(expr, ast.And):
        return " and ".join(f"({expr_text(e)})" if isinstance(e, ast.Or) else expr_text(e) for e in expr.items)
    if isinstance(expr, ast.Not):
        inner = expr_text(expr.item)
        return f"not ({inner})" if isinstance(expr.item, (ast.And, ast.Or)) else f"not {inner}"
    if isinstance(expr, ast.Compare):
        return f"{expr_text(expr.left)} {expr.op} {expr_text(expr.right)}"
    return _atom_text(expr)


def _atom_text(expr: ast.Expr) -> str:
    if isinstance(expr, ast.AttrRef):
        return f"attr.{expr.name}"
    if isinstance(expr, ast.ConstInput):
        return f"const({expr.index})"
    if isinstance(expr, ast.GraphInput):
        return f"graph_input({expr.index})"
    if isinstance(expr, ast.InputTest):
        return f"{expr.test}({expr.index})"
    if isinstance(expr, ast.ShapeRef):
        return f"{'out_shape' if expr.output else 'shape'}({expr.index})[{expr.dim}]"
    if isinstance(expr, ast.RankRef):
        return f"rank({expr.index})"
    if isinstance(expr, ast.DtypeRef):
        return f"dtype({expr.index})"
    if isinstance(expr, ast.NodeProp):
        return expr.name
    raise TypeError(f"unknown predicate element {type(expr).__name__}")


def _value_text(value: Any) -> str:
    """A value as a rule-file literal: none, true, "text", [1, 2]."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_value_text(v) for v in value) + "]"
    return str(value)
