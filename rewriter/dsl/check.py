"""Semantic checks of a parsed rule set, run over the whole tree at once.

The parser only builds the tree; everything that needs more than one
statement to judge (names defined twice, an edge to an unknown capture, a
rule that matches a pattern that does not exist) is checked here, and every
problem is reported in one go, each with its file:line:column and a caret.

Example:
    >>> from rewriter.dsl.ast import Pattern, PatternNode, RuleSet
    >>> rs = RuleSet((Pattern("p", (PatternNode("a", ("Cnov",)),), ()),), (), ())
    >>> [e.message for e in ruleset_errors(rs, {})]
    ["unknown op type 'Cnov' in node 'a' (did you mean 'Conv'?)"]
"""
from __future__ import annotations

import difflib
from collections import Counter
from typing import Iterable, Iterator

from rewriter.dsl import ast
from rewriter.errors import SourceLoc, UserError, UserErrors, source_excerpt
from rewriter.ir.ops import closest_op_type, known_op_types

__all__ = ["SPEC_CLASSES", "MAX_OPTIONAL_NODES", "MAX_PORT", "check_ruleset", "ruleset_errors", "predicate_errors"]

#: The op classes a pattern node may name; the hardware spec says which ops are in each.
SPEC_CLASSES = ("@agnostic", "@quantizable", "@unified")

#: Highest port index accepted: no ONNX op has more inputs or outputs, so a
#: larger index is a typo (and a rule that can never match).
MAX_PORT = 64

#: Most optional nodes a pattern may have: the matcher tries every way of keeping or dropping
#: them (2^k variants), and 2^8 = 256 variants per anchor node is still quick.
MAX_OPTIONAL_NODES = 8

_Problem = tuple[str, SourceLoc]


def check_ruleset(ruleset: ast.RuleSet, sources: dict[str, str]) -> None:
    """Raise ``UserErrors`` listing every problem of ``ruleset``; return quietly if none.

    Args:
        ruleset: patterns and rules, includes already expanded.
        sources: each file's text, by the name used in the SourceLocs, to show
            the offending line under each message.
    """
    errors = ruleset_errors(ruleset, sources)
    if errors:
        raise UserErrors(errors)


def ruleset_errors(ruleset: ast.RuleSet, sources: dict[str, str]) -> list[UserError]:
    """Every problem of ``ruleset`` as a UserError with a caret excerpt, in source order."""
    problems = list(_pattern_problems(ruleset)) + list(_rule_problems(ruleset))
    files = {f: i for i, f in enumerate(ruleset.files)}
    problems.sort(key=lambda p: (files.get(p[1].file, len(files)), p[1].line, p[1].column))
    return [
        UserError(msg, loc, source_excerpt(sources.get(loc.file, ""), loc.line, loc.column)) for msg, loc in problems
    ]


def predicate_errors(expr: ast.Expr) -> list[_Problem]:
    """Problems of one predicate: input indices out of range, ``in`` with a scalar on its right."""
    return list(_predicate_problems(expr))


# ---------------------------------------------------------------- helpers


def _suggest(name: str, candidates: Iterable[str]) -> str:
    hit = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{hit[0]}'?)" if hit else ""


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _port_problems(ports: Iterable[int | None], what: str, loc: SourceLoc) -> Iterator[_Problem]:
    for port in ports:
        if port is None:
            continue
        if port < 0:
            yield f"{what} index {port} is negative; ports count from 0", loc
        elif port > MAX_PORT:
            yield f"{what} index {port} is out of range (at most {MAX_PORT})", loc


# ---------------------------------------------------------------- predicates


def _predicate_problems(expr: ast.Expr) -> Iterator[_Problem]:
    if isinstance(expr, (ast.And, ast.Or)):
        for item in expr.items:
            yield from _predicate_problems(item)
    elif isinstance(expr, ast.Not):
        yield from _predicate_problems(expr.item)
    elif isinstance(expr, ast.Compare):
        yield from _predicate_problems(expr.left)
        yield from _predicate_problems(expr.right)
        right = expr.right
        if expr.op in ("in", "not in") and isinstance(right, ast.Lit) and not isinstance(right.value, (tuple, str)):
            yield f"the right side of '{expr.op}' must be a list or a string, not {right.value!r}", right.loc
    elif isinstance(expr, ast.ShapeRef):
        yield from _port_problems([expr.index], "output" if expr.output else "input", expr.loc)
    elif isinstance(expr, (ast.ConstInput, ast.RankRef, ast.DtypeRef, ast.GraphInput, ast.InputTest)):
        yield from _port_problems([expr.index], "input", expr.loc)


# ---------------------------------------------------------------- patterns


def _pattern_problems(ruleset: ast.RuleSet) -> Iterator[_Problem]:
    rule_names = {r.name for r in ruleset.rules}
    first: dict[str, ast.Pattern] = {}
    for pattern in ruleset.patterns:
        if pattern.name in first:
            # An inline `match { ... }` pattern takes its rule's name, which is
            # how a rule name can clash with a pattern name.
            why = " (an inline 'match { ... }' pattern is named after its rule)" if pattern.name in rule_names else ""
            yield f"pattern '{pattern.name}' is already defined at {first[pattern.name].loc}{why}", pattern.loc
        else:
            first[pattern.name] = pattern
        yield from _one_pattern(pattern)


def _one_pattern(pattern: ast.Pattern) -> Iterator[_Problem]:
    if not pattern.nodes:
        yield f"pattern '{pattern.name}' is empty: declare at least one node ('name : OpType')", pattern.loc
        return
    seen: dict[str, ast.PatternNode] = {}
    for node in pattern.nodes:
        if node.name in seen:
            yield (f"capture '{node.name}' is declared twice in pattern '{pattern.name}' "
                   f"(first at {seen[node.name].loc})"), node.loc
        else:
            seen[node.name] = node
        yield from _node_problems(node)

    known = set(seen)
    for edge in pattern.edges:
        for end in (edge.src, edge.dst):
            if end not in known:
                yield (f"edge {edge.src} -> {edge.dst}: '{end}' is not a capture of pattern "
                       f"'{pattern.name}'{_suggest(end, known)}"), edge.loc
        if edge.src == edge.dst:
            yield (f"edge {edge.src} -> {edge.dst} links a node to itself; "
                   "an ONNX graph has no cycles, so it never matches"), edge.loc
        yield from _port_problems([edge.src_port], "output", edge.loc)
        yield from _port_problems([edge.dst_port], "input", edge.loc)

    edges = [e for e in pattern.edges if e.src in known and e.dst in known and e.src != e.dst]
    yield from _optional_problems(pattern, edges)
    yield from _connectivity_problems(pattern, edges)


def _node_problems(node: ast.PatternNode) -> Iterator[_Problem]:
    for op in node.ops:
        if op == "*":
            if len(node.ops) > 1:
                yield f"node '{node.name}': '*' already matches any op; drop the other alternatives", node.loc
        elif op.startswith("@"):
            if op not in SPEC_CLASSES:
                hint = _suggest(op, SPEC_CLASSES)
                yield (f"unknown spec class '{op}' in node '{node.name}'{hint}; "
                       f"the classes are {', '.join(SPEC_CLASSES)}"), node.loc
        elif "." not in op and op not in known_op_types():
            # Domain-qualified names (com.microsoft.Gelu) are not checked:
            # any domain may define any op.
            close = closest_op_type(op)
            hint = f" (did you mean '{close}'?)" if close else ""
            yield f"unknown op type '{op}' in node '{node.name}'{hint}", node.loc
    if node.where is not None:
        yield from _predicate_problems(node.where)


def _optional_problems(pattern: ast.Pattern, edges: list[ast.PatternEdge]) -> Iterator[_Problem]:
    if all(n.optional for n in pattern.nodes):
        yield f"pattern '{pattern.name}' has only optional nodes; at least one must be required", pattern.loc
        return
    optional = [n for n in pattern.nodes if n.optional]
    if len(optional) > MAX_OPTIONAL_NODES:
        yield (f"pattern '{pattern.name}' has {len(optional)} optional nodes, more than {MAX_OPTIONAL_NODES}: "
               f"matching tries every way of keeping or dropping them (2^{len(optional)} variants); "
               "split it into several patterns"), optional[MAX_OPTIONAL_NODES].loc
    if len(pattern.nodes) < 2:
        return
    ins = Counter(e.dst for e in edges)
    outs = Counter(e.src for e in edges)
    for node in pattern.nodes:
        if not node.optional:
            continue
        # An absent optional node is bridged (its neighbours connect
        # directly) or, at an end of a chain, dropped; neither is defined for
        # a node with several inputs or outputs in the pattern.
        n_in, n_out = ins[node.name], outs[node.name]
        if n_in > 1 or n_out > 1 or n_in + n_out == 0:
            yield (f"optional node '{node.name}' has {n_in} incoming and {n_out} outgoing pattern edges; "
                   "an optional node must sit on a chain: at most one of each, and at least one"), node.loc


def _connectivity_problems(pattern: ast.Pattern, edges: list[ast.PatternEdge]) -> Iterator[_Problem]:
    if len(pattern.nodes) < 2:
        return
    neighbours: dict[str, set[str]] = {n.name: set() for n in pattern.nodes}
    for e in edges:
        neighbours[e.src].add(e.dst)
        neighbours[e.dst].add(e.src)
    root = pattern.nodes[0].name
    reached, todo = {root}, [root]
    while todo:
        for nxt in neighbours[todo.pop()] - reached:
            reached.add(nxt)
            todo.append(nxt)
    unreached = [n.name for n in pattern.nodes if n.name not in reached]
    if unreached:
        yield (f"pattern '{pattern.name}' is not connected: no chain of edges links "
               f"{_quoted(dict.fromkeys(unreached))} to '{root}'"), pattern.loc


# ---------------------------------------------------------------- rules


def _rule_problems(ruleset: ast.RuleSet) -> Iterator[_Problem]:
    first: dict[str, ast.Rule] = {}
    pattern_names = [p.name for p in ruleset.patterns]
    for rule in ruleset.rules:
        if rule.name in first:
            yield f"rule '{rule.name}' is already defined at {first[rule.name].loc}", rule.loc
        else:
            first[rule.name] = rule
        if not rule.actions:
            yield (f"rule '{rule.name}' has no actions; add one of ignore, insert, remove, propagate, unify, "
                   "symmetric, asymmetric, per_tensor, requantize, int32_bias"), rule.loc
        pattern = ruleset.pattern(rule.pattern)
        if pattern is None:
            yield (f"rule '{rule.name}' matches '{rule.pattern}', which is not a pattern"
                   f"{_suggest(rule.pattern, pattern_names)}"), rule.loc
            continue
        captures = [n.name for n in pattern.nodes]
        for action in rule.actions:
            yield from _action_problems(action, pattern.name, captures)


def _action_problems(action: ast.Action, pattern: str, captures: list[str]) -> Iterator[_Problem]:
    def unknown(name: str, loc: SourceLoc) -> Iterator[_Problem]:
        if name not in captures:
            yield f"'{name}' is not a capture of pattern '{pattern}'{_suggest(name, captures)}", loc

    if isinstance(action, (ast.Ignore, ast.Propagate, ast.Int32Bias)):
        for name in action.captures:
            yield from unknown(name, action.loc)
        return
    if isinstance(action, ast.Requantize):
        out, src = action.outputs, action.inputs
        yield from unknown(out.capture, out.loc)
        yield from _port_problems(out.ports or (), out.direction[:-1], out.loc)
        yield from _port_problems(src.ports or (), src.direction[:-1], src.loc)
        if out.direction != "outputs" or src.direction != "inputs" or out.capture != src.capture:
            yield (f"write requantize as 'requantize {out.capture}.outputs from {out.capture}.inputs[0]': the "
                   f"outputs of one node, quantized again with the grid its named inputs read"), action.loc
        return
    refs = action.groups if isinstance(action, ast.Unify) else action.targets
    for ref in refs:
        if isinstance(ref, ast.EdgeRef):
            yield from unknown(ref.src, ref.loc)
            yield from unknown(ref.dst, ref.loc)
        else:
            yield from unknown(ref.capture, ref.loc)
            yield from _port_problems(ref.ports or (), ref.direction[:-1], ref.loc)
