"""Property tests: printed ASTs parse back to themselves; no input makes the parser crash."""
from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewriter.dsl import parse_predicate, parse_rules
from rewriter.dsl.ast import (
    And, AttrRef, Compare, ConstInput, DtypeRef, EdgeRef, GraphInput, Ignore, Insert, Lit, NodeProp, Not, Or,
    Pattern, PatternEdge, PatternNode, PortRef, Propagate, RankRef, Remove, Rule, ShapeRef, Symmetric, Unify,
)
from rewriter.errors import SourceLoc, UserErrors

KEYWORDS = {"include", "pattern", "rule", "match", "where", "optional", "and", "or", "not", "in", "ignore",
            "insert", "remove", "propagate", "unify", "symmetric", "true", "false", "none"}

identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
names = identifiers.filter(lambda n: n not in KEYWORDS)
ports = st.integers(0, 64)

# ---------------------------------------------------------------- predicates

scalars = st.one_of(
    st.integers(-10**12, 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
    st.booleans(),
    st.none(),
)
literal_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3).map(tuple), max_leaves=6)

atoms = st.one_of(
    literal_values.map(Lit),
    identifiers.map(AttrRef),  # any word after `attr.`, keywords included
    ports.map(ConstInput),
    st.builds(ShapeRef, ports, st.integers(-8, 8), st.booleans()),
    ports.map(RankRef),
    ports.map(DtypeRef),
    st.sampled_from(["fanout", "num_inputs"]).map(NodeProp),
    ports.map(GraphInput),
)


def _compare(left, right, op):
    if op in ("in", "not in"):
        right = Lit(tuple(right.value)) if isinstance(right, Lit) and isinstance(right.value, tuple) else Lit((1, 2))
    return Compare(op, left, right)


ops = st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "not in"])
exprs = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.builds(_compare, inner, inner, ops),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
        inner.map(Not),
    ),
    max_leaves=8,
)

_LEVEL = {Or: 1, And: 2, Not: 3, Compare: 4}


def show_literal(value) -> str:
    if value is None:
        return "none"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{escaped.replace(chr(13), chr(92) + "r")}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(show_literal(v) for v in value) + "]"
    return repr(value)


def show(expr, need: int = 0) -> str:
    """The DSL text of ``expr``, parenthesised where its precedence is below ``need``."""
    level = _LEVEL.get(type(expr), 5)
    if isinstance(expr, Or):
        text = " or ".join(show(e, 2) for e in expr.items)
    elif isinstance(expr, And):
        text = " and ".join(show(e, 3) for e in expr.items)
    elif isinstance(expr, Not):
        text = "not " + show(expr.item, 3)
    elif isinstance(expr, Compare):
        text = f"{show(expr.left, 5)} {expr.op} {show(expr.right, 5)}"
    elif isinstance(expr, Lit):
        text = show_literal(expr.value)
    elif isinstance(expr, AttrRef):
        text = f"attr.{expr.name}"
    elif isinstance(expr, ConstInput):
        text = f"const({expr.index})"
    elif isinstance(expr, ShapeRef):
        text = f"{'out_shape' if expr.output else 'shape'}({expr.index})[{expr.dim}]"
    elif isinstance(expr, RankRef):
        text = f"rank({expr.index})"
    elif isinstance(expr, DtypeRef):
        text = f"dtype({expr.index})"
    elif isinstance(expr, NodeProp):
        text = expr.name
    else:
        text = f"graph_input({expr.index})"
    return f"({text})" if level < need else text


@settings(max_examples=300, deadline=None)
@given(exprs)
def test_printed_predicates_parse_back(expr):
    assert parse_predicate(show(expr), SourceLoc("p.yaml", 1, 1)) == expr


# ---------------------------------------------------------------- patterns and rules

OP_CHOICES = st.one_of(
    st.lists(st.sampled_from(["Conv", "MatMul", "Relu", "Add", "Softmax", "com.microsoft.Gelu",
                              "@quantizable", "@agnostic", "@unified"]), min_size=1, max_size=3, unique=True),
    st.just(["*"]),
)


@st.composite
def patterns(draw, name):
    captures = draw(st.lists(names, min_size=1, max_size=5, unique=True))
    nodes = tuple(
        PatternNode(
            c,
            tuple(draw(OP_CHOICES)),
            draw(st.none() | exprs),
            optional=i > 0 and draw(st.booleans()),  # a chain keeps every optional node legal
        )
        for i, c in enumerate(captures)
    )
    edges = tuple(
        PatternEdge(a, b, draw(st.none() | ports), draw(st.none() | ports), moves=draw(st.booleans()))
        for a, b in zip(captures, captures[1:])
    )
    return Pattern(name, nodes, edges)


@st.composite
def actions(draw, captures):
    cap = st.sampled_from(captures)
    refs = st.builds(PortRef, cap, st.sampled_from(["inputs", "outputs"]),
                     st.none() | st.lists(ports, min_size=1, max_size=3).map(tuple))
    some = lambda s: st.lists(s, min_size=1, max_size=3).map(tuple)  # noqa: E731
    return draw(st.one_of(
        st.lists(cap, max_size=3).map(lambda xs: Ignore(tuple(xs))),
        some(refs).map(Insert),
        some(st.one_of(refs, st.builds(EdgeRef, cap, cap))).map(Remove),
        some(cap).map(Propagate),
        some(refs).map(Unify),
        some(refs).map(Symmetric),
    ))


@st.composite
def rulesets(draw):
    pattern_names = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    pats = [draw(patterns(n)) for n in pattern_names]
    rules = []
    for i, pat in enumerate(draw(st.lists(st.sampled_from(pats), min_size=1, max_size=3))):
        captures = [n.name for n in pat.nodes]
        acts = tuple(draw(st.lists(actions(captures), min_size=1, max_size=3)))
        rules.append(Rule(f"rule_{i}", pat.name, acts))
    return pats, rules


def show_port(ref) -> str:
    if isinstance(ref, EdgeRef):
        return f"{ref.src} -> {ref.dst}"
    ports_ = "" if ref.ports is None else "[" + ", ".join(map(str, ref.ports)) + "]"
    return f"{ref.capture}.{ref.direction}{ports_}"


def show_action(action) -> str:
    keyword = type(action).__name__.lower()
    if isinstance(action, (Ignore, Propagate)):
        return f"{keyword} {', '.join(action.captures)}".rstrip()
    refs = action.groups if isinstance(action, Unify) else action.targets
    return f"{keyword} {', '.join(show_port(r) for r in refs)}"


def show_file(pats, rules) -> str:
    out = []
    for p in pats:
        out.append(f"pattern {p.name} {{")
        for n in p.nodes:
            where = f" where {show(n.where)}" if n.where is not None else ""
            out.append(f"  {n.name} : {' | '.join(n.ops)}{where}{' optional' if n.optional else ''}")
        for e in p.edges:
            src = e.src if e.src_port is None else f"{e.src}.out[{e.src_port}]"
            dst = e.dst if e.dst_port is None else f"{e.dst}.in[{e.dst_port}]"
            out.append(f"  {src} {'~>' if e.moves else '->'} {dst}   # a comment")
        out.append("}")
    for r in rules:
        out += [f"rule {r.name} {{", f"  match {r.pattern}"] + [f"  {show_action(a)}" for a in r.actions] + ["}"]
    return "\n".join(out) + "\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rulesets())
def test_printed_rule_files_parse_back(generated):
    pats, rules = generated
    rs = parse_rules(show_file(pats, rules), "gen.rules")
    assert rs.patterns == tuple(pats)
    assert rs.rules == tuple(rules)


# ---------------------------------------------------------------- robustness

TOKENS = ["pattern", "rule", "include", "match", "where", "optional", "ignore", "insert", "remove", "a", "b",
          "Conv", "@quantizable", "*", "{", "}", "(", ")", "[", "]", ":", ";", ",", "|", "->", "~>", ".", "in", "out",
          "inputs", "const", "attr", "not", "and", "==", "1", "-1", '"s"', "\n", " ", "#c\n", "x.in[0]"]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.lists(st.sampled_from(TOKENS), max_size=30).map(" ".join), st.text(max_size=40)))
def test_any_text_gives_a_ruleset_or_user_errors(text):
    try:
        parse_rules(text, "fuzz.rules")
    except UserErrors as exc:
        assert exc.errors and all(e.loc is not None and e.loc.file == "fuzz.rules" for e in exc.errors)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=string.printable, max_size=30))
def test_any_predicate_text_gives_an_expr_or_user_errors(text):
    try:
        parse_predicate(text, SourceLoc("p.yaml", 4, 7))
    except UserErrors as exc:
        assert all(e.loc.file == "p.yaml" and e.loc.line >= 4 for e in exc.errors)
