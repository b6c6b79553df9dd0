"""Work bounded by the input's size: optional nodes capped, rule lookups by name, loaders read lazily."""
from __future__ import annotations

from pathlib import Path

import pytest

from rewriter.cli import main
from rewriter.dsl import ast
from rewriter.dsl.check import MAX_OPTIONAL_NODES
from rewriter.dsl.parser import parse_rules
from rewriter.errors import UserError
from rewriter.match.matcher import compile_variants


def _chain_pattern(optional: int) -> str:
    names = ["head"] + [f"o{i}" for i in range(optional)] + ["tail"]
    lines = ["pattern long {", "    head : Conv"]
    lines += [f"    o{i} : Relu optional" for i in range(optional)]
    lines += ["    tail : Add", "    " + " -> ".join(names), "}", "rule r {", "    match long", "    ignore head", "}"]
    return "\n".join(lines) + "\n"


def test_a_pattern_with_too_many_optional_nodes_is_refused_at_its_ninth(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "long.rules"
    rules.write_text(_chain_pattern(30))
    assert main(["rules", "check", str(rules)]) == 2
    err = capsys.readouterr().err
    # The ninth optional node is declared on line 3 + 8 = 11.
    assert f"{rules}:{3 + MAX_OPTIONAL_NODES}:5" in err and "30 optional nodes" in err, err
    assert err.count("error:") == 1


def test_the_most_optional_nodes_allowed_still_match(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ruleset = parse_rules(_chain_pattern(MAX_OPTIONAL_NODES), "ok.rules")
    pattern = ruleset.pattern("long")
    assert pattern is not None and len(compile_variants(pattern)) == 2 ** MAX_OPTIONAL_NODES


def test_a_hand_built_pattern_with_too_many_optional_nodes_is_refused() -> None:
    nodes = (ast.PatternNode("head", ("Conv",)),) + tuple(
        ast.PatternNode(f"o{i}", ("Relu",), optional=True) for i in range(MAX_OPTIONAL_NODES + 1))
    names = [n.name for n in nodes]
    edges = tuple(ast.PatternEdge(a, b) for a, b in zip(names, names[1:]))
    with pytest.raises(UserError, match="optional nodes"):
        compile_variants(ast.Pattern("p", nodes, edges))


def test_pattern_lookup_returns_the_first_declaration() -> None:
    first = ast.Pattern("p", (ast.PatternNode("a", ("Conv",)),), ())
    second = ast.Pattern("p", (ast.PatternNode("b", ("Relu",)),), ())
    ruleset = ast.RuleSet((first, second), (), ())
    assert ruleset.pattern("p") is first and ruleset.pattern("q") is None
