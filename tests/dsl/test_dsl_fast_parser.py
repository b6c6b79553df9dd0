"""The hand-written parser (rewriter.dsl.fast_parser) against Lark: the same AST, locations and builder errors
for every file it takes, and Lark for every file it is unsure of.

The generator writes rule files from the grammar's pieces with random layout (blanks, comments, CRLF,
newlines anywhere, ';'), then sometimes breaks them (a token dropped, doubled or replaced by a stray
character): what the fast parser takes from a broken file, Lark must take too, to the same tree.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewriter.dsl import fast_parser, parse_rules
from rewriter.dsl import parser as dsl_parser
from rewriter.dsl.grammar import MAX_NESTING
from rewriter.errors import UserErrors

from two_parsers import assert_parsers_agree, fast_parser_takes, parse_file

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("REWRITER_FUZZ_EXAMPLES", "300"))

# ---------------------------------------------------------------- real files


def _rule_files() -> list[Path]:
    return sorted(list((REPO / "rules").glob("*.rules")) + list((REPO / "tests").rglob("*.rules")))


@pytest.mark.parametrize("path", _rule_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_the_shipped_and_test_rule_files_take_the_fast_path_to_the_same_ast(path: Path):
    text = path.read_text(encoding="utf-8")
    assert assert_parsers_agree(text, str(path)), "the fast parser gave up on a well-formed file"


def test_the_benchmark_file_takes_the_fast_path_to_the_same_ast():
    import bench_rules  # tools/ is put on sys.path by the fixture below

    text, count = bench_rules.generated_rules(0.05)
    assert assert_parsers_agree(text, "generated.rules")
    assert len(parse_rules(text, "generated.rules").rules) == count


@pytest.fixture(autouse=True)
def _tools_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "tools"))


def test_a_well_formed_file_never_reaches_lark(monkeypatch: pytest.MonkeyPatch):
    import bench_rules

    def no_lark(*args: object, **kwargs: object) -> None:
        raise AssertionError("Lark was asked to parse a well-formed file")

    monkeypatch.setattr(dsl_parser, "lark_parser", no_lark)
    text, count = bench_rules.generated_rules(0.05)
    text += (REPO / "rules" / "ort.rules").read_text(encoding="utf-8")
    items, syntax_errors, build_errors = parse_file(text, "x.rules")  # not the conftest's check, which runs Lark
    assert len(items) > 2 * count and not syntax_errors and not build_errors


def test_parsing_work_grows_linearly_with_the_file(monkeypatch: pytest.MonkeyPatch):
    # Counted, not timed (tools/bench_rules.py times it): the scanner runs its regex once per token and
    # skipped newline, so a file ten times as long must take exactly ten times the regex runs. Its regexes
    # have no nested repetition, so each run is linear in the token it reads.
    import bench_rules

    runs = 0
    token_regex = fast_parser._TOKEN

    class CountingRegex:
        def match(self, text: str, pos: int) -> re.Match[str] | None:
            nonlocal runs
            runs += 1
            return token_regex.match(text, pos)

    monkeypatch.setattr(fast_parser, "_TOKEN", CountingRegex())
    counts = []
    for size in (0.01, 0.1):
        text, _ = bench_rules.generated_rules(size)
        runs = 0
        assert fast_parser_takes(text)
        counts.append((text.count("pattern"), runs))
    (small_blocks, small_runs), (large_blocks, large_runs) = counts
    assert large_runs - 1 == (small_runs - 1) * large_blocks // small_blocks  # the 1: the end of the file


# ---------------------------------------------------------------- what the fast parser leaves to Lark


@pytest.mark.parametrize("text", [
    "pattern p { a : Relu }\nrule r { match p; ignore",  # a syntax error
    'pattern p { a : Relu where attr.mode == "é" }\npattern é { b : Add }',  # a non-ASCII name
    "pattern p { a : Relu where " + "not " * 20 + "const(0) }",  # deeper than the fast parser goes
    "pattern p { a : Relu where " + "(" * 20 + "const(0)" + ")" * 20 + " }",
    "pattern p { a : com . microsoft . Gelu }",  # an op type is written without blanks
    "pattern p { a : Relu }\r",  # a lone carriage return
])
def test_the_fast_parser_leaves_what_it_is_unsure_of_to_lark(text: str):
    assert not fast_parser_takes(text)


def test_a_predicate_nested_too_deep_is_refused_with_its_location():
    text = "pattern p {\n  a : Relu where " + "not " * (MAX_NESTING + 5) + "const(0)\n}\n"
    with pytest.raises(UserErrors) as info:
        parse_rules(text, "deep.rules")
    (error,) = info.value.errors
    assert f"nested more than {MAX_NESTING} levels deep" in error.message
    assert str(error.loc).startswith("deep.rules:2:")


def test_locations_follow_the_opening_parenthesis_of_a_first_operand():
    # Lark starts an expression at the '(' of its first operand, the operand itself inside it.
    line = "  a : Relu where ((const(0) or rank(0) == 4)) and (fanout) == 1"
    text = f"pattern p {{\n{line}\n}}\n"
    assert assert_parsers_agree(text)
    where = parse_rules(text, "t.rules").patterns[0].nodes[0].where
    first_paren, const, fanout_paren = line.index("(") + 1, line.index("const") + 1, line.index("(fanout") + 1
    assert (where.loc.column, where.items[0].loc.column) == (first_paren, const)
    assert where.items[1].loc.column == fanout_paren  # the comparison starts at its operand's '('
    assert where.items[1].left.loc.column == fanout_paren + 1


# ---------------------------------------------------------------- generated files

_WORDS = ["a", "b", "conv", "x_1", "const", "attr", "out", "inputs", "shape", "zero", "Relu", "_y"]
_KEYWORDS = ["where", "optional", "and", "or", "not", "in", "include", "pattern", "rule", "match", "ignore",
             "from", "true", "none"]
names = st.sampled_from(_WORDS)
ints = st.sampled_from(["0", "1", "2", "-1", "007", "64", "65"])
numbers = st.sampled_from(["0", "-1", "2.5", ".5", "1.", "1e-4", "2.5E+3", "-0.0", "10"])
strings = st.sampled_from(['""', '"a"', '"float32"', r'"a \"q\" \\ w"', r'"\n\t\r\x"', '"é"'])
op_types = st.sampled_from(["Conv", "Relu", "com.microsoft.Gelu", "MatMul", "*", "@agnostic", "@quantizable",
                            "where", "in", "Add"])


def _tokens(*parts: object) -> list[str]:
    out: list[str] = []
    for part in parts:
        out.extend(part if isinstance(part, list) else [str(part)])
    return out


literals = st.recursive(
    st.one_of(numbers, strings, st.sampled_from(["true", "false", "none"])).map(lambda t: [t]),
    lambda inner: st.lists(inner, max_size=3).map(
        lambda items: ["["] + [t for i, item in enumerate(items) for t in ([","] if i else []) + item] + ["]"]),
    max_leaves=5,
)
atoms = st.one_of(
    literals,
    ints.map(lambda i: _tokens("const", "(", i, ")")),
    names.map(lambda n: _tokens("attr", ".", n)),
    st.sampled_from(["optional", "in", "where"]).map(lambda n: _tokens("attr", ".", n)),
    st.tuples(st.sampled_from(["shape", "out_shape"]), ints, ints).map(lambda t: _tokens(t[0], "(", t[1], ")", "[",
                                                                                         t[2], "]")),
    st.tuples(st.sampled_from(["rank", "dtype", "graph_input", "zero", "present", "static"]), ints).map(
        lambda t: _tokens(t[0], "(", t[1], ")")),
    st.sampled_from(["fanout", "num_inputs"]).map(lambda t: [t]),
)
compare_ops = st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "not in"]).map(str.split)
predicates = st.recursive(
    atoms,
    lambda inner: st.one_of(
        inner.map(lambda e: _tokens("(", e, ")")),
        inner.map(lambda e: _tokens("not", e)),
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(lambda t: _tokens(*t)),
        st.tuples(inner, compare_ops, inner).map(lambda t: _tokens(*t)),
    ),
    max_leaves=6,
)
ports = st.tuples(st.sampled_from(["in", "out"]), ints).map(lambda t: _tokens(".", t[0], "[", t[1], "]"))
endpoints = st.tuples(names, st.one_of(st.just([]), ports)).map(lambda t: _tokens(*t))
chains = st.tuples(endpoints, st.lists(st.tuples(st.sampled_from(["->", "~>"]), endpoints), min_size=1,
                                       max_size=3)).map(lambda t: _tokens(t[0], *[_tokens(*p) for p in t[1]]))
nodes = st.tuples(names, st.lists(op_types, min_size=1, max_size=3), st.one_of(st.just([]), predicates),
                  st.booleans()).map(
    lambda t: _tokens(t[0], ":", [x for i, op in enumerate(t[1]) for x in (["|"] if i else []) + [op]],
                      ["where", *t[2]] if t[2] else [], ["optional"] if t[3] else []))
separators = st.sampled_from([["\n"], [";"], ["\n", "\n"], ["\n", "# note\n"], [";", "\n"]])


def _joined(items: list[list[str]], seps: list[list[str]]) -> list[str]:
    out: list[str] = []
    for i, item in enumerate(items):
        if i:
            out.extend(seps[i % len(seps)])
        out.extend(item)
    return out


bodies = st.tuples(st.lists(st.one_of(nodes, chains), max_size=4), st.lists(separators, min_size=1, max_size=3),
                   separators).map(lambda t: _tokens("{", t[2], _joined(t[0], t[1]), t[2], "}"))
patterns = st.tuples(names, bodies).map(lambda t: _tokens("pattern", t[0], t[1]))
portrefs = st.tuples(names, st.sampled_from(["inputs", "outputs"]),
                     st.one_of(st.just([]), st.lists(ints, min_size=1, max_size=3))).map(
    lambda t: _tokens(t[0], ".", t[1], ["["] + [x for i, p in enumerate(t[2]) for x in ([","] if i else []) + [p]]
                      + ["]"] if t[2] else []))


def _comma_list(items: list[list[str]]) -> list[str]:
    return [x for i, item in enumerate(items) for x in ([","] if i else []) + item]


name_lists = st.lists(names.map(lambda n: [n]), min_size=1, max_size=3).map(_comma_list)
portref_lists = st.lists(portrefs, min_size=1, max_size=3).map(_comma_list)
edgerefs = st.tuples(names, names).map(lambda t: _tokens(t[0], "->", t[1]))
actions = st.one_of(
    st.one_of(st.just([]), name_lists).map(lambda n: _tokens("ignore", n)),
    st.tuples(st.sampled_from(["insert", "unify", "symmetric", "asymmetric", "per_tensor"]), portref_lists).map(
        lambda t: _tokens(*t)),
    st.lists(st.one_of(portrefs, edgerefs), min_size=1, max_size=3).map(lambda t: _tokens("remove", _comma_list(t))),
    st.tuples(st.sampled_from(["propagate", "int32_bias"]), name_lists).map(lambda t: _tokens(*t)),
    st.tuples(portrefs, portrefs).map(lambda t: _tokens("requantize", t[0], "from", t[1])),
)
rules = st.tuples(names, st.one_of(names.map(lambda n: [n]), bodies), st.lists(actions, max_size=4), separators).map(
    lambda t: _tokens("rule", t[0], "{", "match", t[1], *[_tokens(t[3], a) for a in t[2]], t[3], "}"))
includes = strings.map(lambda s: _tokens("include", s))
files = st.tuples(st.lists(st.one_of(patterns, rules, includes), max_size=4), st.lists(separators, min_size=1,
                                                                                        max_size=3)).map(
    lambda t: _joined(t[0], t[1]))

# What goes between two tokens: mostly a blank, sometimes nothing, a newline (which the postlexer may drop
# or which may end a statement too early), a comment, or a CRLF.
_GLUE = [" "] * 12 + ["", "", "\t", "\n", "\n  ", " # c\n", "\r\n", "\f", "  \n\n "]
_STRAY = ["é", "=", "\r", ".", "-", "->", '"', "@", "(", "]", ",", "1.5", "a.b"] + _KEYWORDS


@st.composite
def rule_texts(draw: st.DrawFn) -> str:
    tokens = draw(files)
    if tokens and draw(st.integers(0, 3)) == 0:  # break one file in four
        at = draw(st.integers(0, len(tokens) - 1))
        how = draw(st.sampled_from(["drop", "double", "replace"]))
        if how == "drop":
            del tokens[at]
        elif how == "double":
            tokens.insert(at, tokens[at])
        else:
            tokens[at] = draw(st.sampled_from(_STRAY))
    glue = draw(st.lists(st.sampled_from(_GLUE), min_size=len(tokens) + 1, max_size=len(tokens) + 1))
    return glue[-1].join([""]) + "".join(g + t for g, t in zip(glue, tokens)) + draw(st.sampled_from(["", "\n"]))


@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(rule_texts())
def test_generated_files_parse_alike_or_go_to_lark(text: str):
    assert_parsers_agree(text, "g.rules")


def test_the_generator_makes_files_the_fast_parser_takes():
    # Without accepted files the test above would compare nothing.
    taken = 0

    # Derandomized: the count is of one fixed set of 200 files, so the bar below cannot flake.
    @settings(max_examples=200, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(rule_texts())
    def count(text: str) -> None:
        nonlocal taken
        taken += assert_parsers_agree(text, "g.rules")

    count()
    assert taken >= 40


# Declarations before a broken one: on lines of their own, or on one line between ';'.
_GOOD_PREFIXES = [
    "pattern p0 { a : Relu }\n" + "".join(f"pattern q{i} {{\n  a : Conv\n  b : Add\n  a -> b\n}}\n" for i in range(6)),
    "".join(f"pattern p{i} {{ a : Relu; b : Add; a -> b }}; rule r{i} {{ match p{i}; ignore }}; " for i in range(4)),
    "# a comment first\n\n" + "".join(f"rule r{i} {{ match {{ a : Relu }}\n ignore a }}\n" for i in range(5)),
]


@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_GOOD_PREFIXES), rule_texts())
def test_errors_after_many_declarations_are_the_errors_lark_finds_in_the_whole_file(prefix: str, text: str):
    # Lark is given the file with the middle declarations blanked; it must report what it reports on all of it.
    assert_parsers_agree(prefix + text, "g.rules")


def test_a_syntax_error_after_good_declarations_keeps_its_message_and_place():
    text = _GOOD_PREFIXES[1] + "\npattern broken { a : Relu where const(1) == }\nrule r { match broken; ignore }\n"
    assert_parsers_agree(text)
    with pytest.raises(UserErrors) as info:
        parse_rules(text, "t.rules")
    (error,) = info.value.errors
    assert str(error.loc) == f"t.rules:2:{text.splitlines()[1].index('}') + 1}"
    assert error.message.startswith("unexpected '}'; expected")


# ---------------------------------------------------------------- lone predicates (spec `when:` strings)

def _predicate_outcome(text: str, fast: bool) -> str:
    """What parse_predicate gives for ``text`` placed at spec.yaml:7:15: the AST with locations, or the errors."""
    from unittest import mock

    from rewriter.dsl import parse_predicate
    from rewriter.errors import SourceLoc

    with mock.patch.object(dsl_parser, "parse_predicate_fast", dsl_parser.parse_predicate_fast if fast
                           else (lambda text, locator: None)):
        try:
            return repr(parse_predicate(text, SourceLoc("spec.yaml", 7, 15)))
        except UserErrors as e:
            return "\n".join(f"{err.loc}: {err.message}\n{err.context}" for err in e.errors)


@st.composite
def predicate_texts(draw: st.DrawFn) -> str:
    tokens = draw(predicates)
    if draw(st.integers(0, 3)) == 0:  # break one in four
        tokens[draw(st.integers(0, len(tokens) - 1))] = draw(st.sampled_from(_STRAY))
    glue = draw(st.lists(st.sampled_from(_GLUE), min_size=len(tokens) + 1, max_size=len(tokens) + 1))
    return "".join(g + t for g, t in zip(glue, tokens)) + glue[-1]


def _shipped_when_strings() -> list[str]:
    found = re.findall(r'^\s*when:\s*"([^"]*)"', "\n".join(p.read_text(encoding="utf-8")
                                                          for p in sorted((REPO / "hw_specs").glob("*.yaml"))), re.M)
    assert found, "no when: string in hw_specs (the test would compare nothing)"
    return found


@pytest.mark.parametrize("text", _shipped_when_strings())
def test_the_shipped_when_strings_take_the_fast_path_to_lark_s_ast(text: str):
    from rewriter.dsl.fast_parser import parse_predicate_fast
    from rewriter.dsl.grammar import Locator

    assert parse_predicate_fast(text, Locator("spec.yaml", 7, 15)) is not None
    assert _predicate_outcome(text, fast=True) == _predicate_outcome(text, fast=False)


@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(predicate_texts())
def test_generated_predicates_parse_alike_or_go_to_lark(text: str):
    assert _predicate_outcome(text, fast=True) == _predicate_outcome(text, fast=False), text


def test_the_generator_makes_predicates_the_fast_parser_takes():
    # Without accepted predicates the test above would compare Lark with itself.
    from rewriter.dsl.fast_parser import parse_predicate_fast
    from rewriter.dsl.grammar import Locator

    taken = 0

    @settings(max_examples=200, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(predicate_texts())
    def count(text: str) -> None:
        nonlocal taken
        taken += parse_predicate_fast(text, Locator("spec.yaml", 7, 15)) is not None

    count()
    assert taken >= 60
