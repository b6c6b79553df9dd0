"""Variant predicates are parsed by the rule DSL's parser, with locations inside the YAML file."""
from __future__ import annotations

from rewriter.dsl import ast
from rewriter.spec.loader import load_spec, resolve_target
from spec_helpers import spec_errors

CONFIG = "{bits: 8, mode: symmetric, granularity: pertensor}"


def spec_text(when: str) -> str:
    return (f"name: X\nconfigs:\n  a: {CONFIG}\nops:\n  Conv:\n    activations: [a]\n    variants:\n"
            f"      - name: v\n        when: {when}\n        activations: []\n")


def test_builtin_depthwise_predicate_is_parsed() -> None:
    (depthwise,) = load_spec(resolve_target("cpu")).op("Conv").variants
    assert isinstance(depthwise.when_ast, ast.And)
    assert depthwise.when_ast.loc.file.endswith("cpu.yaml")


def test_predicate_location_is_inside_the_quoted_scalar(write_spec) -> None:
    spec = load_spec(write_spec(spec_text('"attr.group > 1"')))
    expr = spec.op("Conv").variants[0].when_ast
    assert isinstance(expr, ast.Compare)
    assert (expr.left.loc.line, expr.left.loc.column) == (9, 16)  # 'attr', after the quote


def test_predicate_syntax_error_points_into_the_yaml(write_spec) -> None:
    errors = spec_errors(write_spec(spec_text('"attr.group >> 1"')))
    assert len(errors) == 1
    assert errors[0].loc.line == 9 and errors[0].loc.column > 16
    assert "\n" not in errors[0].render()


def test_predicate_error_does_not_hide_other_errors(write_spec) -> None:
    text = spec_text("attr.group >") + "  Relu: {activations: [b]}\n"
    errors = spec_errors(write_spec(text))
    assert [e.loc.line for e in errors] == [9, 11]
