"""Syntax and semantic errors: exact file:line:column, the caret excerpt, and all of them at once."""
from __future__ import annotations

import pytest

from rewriter.dsl import parse_predicate, parse_rules
from rewriter.dsl.ast import And, Compare, ConstInput, Lit, Or, Pattern, PatternNode, RankRef, RuleSet
from rewriter.dsl.check import check_ruleset
from rewriter.errors import SourceLoc, UserError, UserErrors


def errors_of(text: str, filename: str = "t.rules") -> list[UserError]:
    with pytest.raises(UserErrors) as info:
        parse_rules(text, filename)
    return info.value.errors


def the_error(text: str) -> UserError:
    errors = errors_of(text)
    assert len(errors) == 1, [e.render() for e in errors]
    return errors[0]


def caret(line: str, column: int) -> str:
    return f"    {line}\n    {' ' * (column - 1)}^"


# ---------------------------------------------------------------- syntax


def test_a_missing_op_type_points_at_the_end_of_the_line():
    err = the_error("pattern p {\n  a : \n}\n")
    assert err.loc == SourceLoc("t.rules", 2, 7)
    assert err.message == (
        "unexpected end of line; expected one of: '*', "
        "a spec class (@quantizable, @agnostic, @unified), an op type"
    )
    assert err.context == caret("  a : ", 7)
    assert err.render().startswith("t.rules:2:7: unexpected end of line")


def test_an_unexpected_character():
    err = the_error("pattern p {\n  a : Conv % 3\n}\n")
    assert err.loc == SourceLoc("t.rules", 2, 12)
    assert err.message.startswith("unexpected '%'; expected one of: ';', 'optional', 'where', '|', '}', a newline")
    assert err.context == caret("  a : Conv % 3", 12)


def test_a_misspelt_keyword_gets_a_suggestion():
    err = the_error("pattern p {\n  a : Conv wher const(1)\n}\n")
    assert err.loc == SourceLoc("t.rules", 2, 12)
    assert err.message.startswith("unexpected 'wher'")
    assert err.message.endswith("(did you mean 'where'?)")
    err = the_error("patern p { a : Conv }\n")
    assert err.loc == SourceLoc("t.rules", 1, 1)
    assert "(did you mean 'pattern'?)" in err.message


def test_a_missing_closing_brace():
    err = the_error("pattern p {\n  a : Conv\n\npattern q {\n  b : Relu\n}\n")
    assert err.loc == SourceLoc("t.rules", 4, 1)
    assert err.message == "unexpected 'pattern'; expected one of: '}', a name (is a '}' missing above?)"
    assert err.context == caret("pattern q {", 1)


def test_an_unexpected_end_of_file_points_after_the_last_character():
    err = the_error("pattern p {\n  a : Conv\n\n\n")
    assert err.loc == SourceLoc("t.rules", 2, 11)
    assert err.message == "unexpected end of file; expected one of: '}', a name"
    assert err.context == caret("  a : Conv", 11)


def test_an_unclosed_parenthesis():
    err = the_error("pattern p {\n  a : Conv where const(1\n}\n")
    assert err.loc == SourceLoc("t.rules", 3, 1)
    assert err.message == "unexpected '}'; expected ')'"


def test_a_bad_comparison_operator():
    err = the_error("pattern p {\n  a : Conv where attr.x = 1\n}\n")
    assert err.loc == SourceLoc("t.rules", 2, 25)
    assert "a comparison ('==', '!=', '<', '<=', '>', '>=')" in err.message


def test_a_bad_port_word():
    err = the_error("pattern p {\n  a : Conv\n  b : Relu\n  a.output[0] -> b\n}\n")
    assert err.loc == SourceLoc("t.rules", 4, 5)
    assert err.message == "unexpected 'output'; expected one of: 'in', 'out'"
    err = the_error("pattern p { a : Conv }\nrule r {\n  match p\n  insert a.input\n}\n")
    assert err.loc == SourceLoc("t.rules", 4, 12)
    assert err.message == "unexpected 'input'; expected 'inputs' or 'outputs'"


def test_an_input_port_on_the_left_of_an_arrow():
    err = the_error("pattern p {\n  a : Conv\n  b : Relu\n  a.in[0] -> b\n}\n")
    assert err.loc == SourceLoc("t.rules", 4, 4)  # the '.in[0]'
    assert err.message.startswith("'a.in[0]' is on the left of '->': an input port belongs on the right")
    assert err.context == caret("  a.in[0] -> b", 4)


def test_an_output_port_on_the_right_of_an_arrow():
    err = the_error("pattern p {\n  a : Conv\n  b : Relu\n  a -> b.out[1]\n}\n")
    assert err.loc == SourceLoc("t.rules", 4, 9)
    assert err.message.startswith("'b.out[1]' is on the right of '->': an output port belongs on the left")


def test_misplaced_ports_are_reported_with_the_semantic_errors():
    errors = errors_of("pattern p {\n  a : Conv\n  b : Relu\n  a.in[0] -> b.out[0]\n  a -> zz\n}\n")
    assert [(e.loc.line, e.loc.column) for e in errors] == [(4, 4), (4, 15), (5, 3)]


def test_a_rule_must_start_with_match():
    err = the_error("pattern p { a : Conv }\nrule r {\n  insert a.inputs\n}\n")
    assert err.loc == SourceLoc("t.rules", 3, 3)
    assert err.message == "unexpected 'insert'; expected 'match'"


def test_a_rule_has_one_match():
    err = the_error("pattern p { a : Conv }\nrule r {\n  match p\n  ignore\n  match p\n}\n")
    assert err.loc == SourceLoc("t.rules", 5, 3)
    assert err.message.endswith("(a rule has exactly one 'match', before its actions)")
    assert ("an action (ignore, insert, remove, propagate, unify, symmetric, asymmetric, per_tensor, requantize, "
            "int32_bias)" in err.message)


def test_an_unquoted_include():
    err = the_error("include common.rules\n")
    assert err.loc == SourceLoc("t.rules", 1, 9)
    assert err.message == "unexpected 'common'; expected a string (\"...\")"


def test_parsing_resumes_after_a_syntax_error_at_the_next_declaration():
    text = (
        "patern p {\n  a : Conv\n}\n"       # 1: misspelt keyword
        "pattern q {\n  b : Relu\n  b ->\n}\n"  # 6-7: an arrow to nothing
        "rule r {\n match q\n ignore b c\n}\n"  # 10: a missing comma
        "pattern fine { x : Relu }\n"
    )
    errors = errors_of(text)
    assert [(e.loc.line, e.loc.column) for e in errors] == [(1, 1), (7, 1), (10, 11)]
    assert errors[2].message == "unexpected 'c'; expected one of: ',', ';', '}', a newline"
    assert errors[2].context == caret(" ignore b c", 11)


def test_syntax_errors_are_user_errors_never_lark_exceptions():
    for text in ["{", "}", "pattern", "pattern p {", "rule r { match }", '"', "@", "pattern p { a : Conv where }",
                 "pattern p { a : Conv where attr. }", "rule r { match p; remove a -> }", "\x00", "pattern p { a -> }"]:
        with pytest.raises(UserErrors) as info:
            parse_rules(text, "t.rules")
        assert all(e.loc and e.loc.file == "t.rules" and e.loc.line >= 1 for e in info.value.errors)


# ---------------------------------------------------------------- semantic checks


def test_duplicate_pattern_names_name_both_places():
    err = the_error("pattern p { a : Relu }\n\npattern p { b : Relu }\n")
    assert err.loc == SourceLoc("t.rules", 3, 9)
    assert err.message == "pattern 'p' is already defined at t.rules:1:9"
    assert err.context == caret("pattern p { b : Relu }", 9)


def test_an_inline_pattern_clashing_with_a_pattern_says_why():
    err = the_error("pattern r { a : Relu }\nrule r { match { a : Relu }; ignore }\n")
    assert err.loc == SourceLoc("t.rules", 2, 16)
    assert err.message == (
        "pattern 'r' is already defined at t.rules:1:9 (an inline 'match { ... }' pattern is named after its rule)"
    )


def test_duplicate_rule_names():
    err = the_error("pattern p { a : Relu }\nrule r { match p; ignore }\nrule r { match p; ignore }\n")
    assert err.loc == SourceLoc("t.rules", 3, 6)
    assert err.message == "rule 'r' is already defined at t.rules:2:6"


def test_duplicate_captures():
    err = the_error("pattern p {\n  a : Conv\n  b : Relu\n  a : Relu\n  a -> b\n}\n")
    assert err.loc == SourceLoc("t.rules", 4, 3)
    assert err.message == "capture 'a' is declared twice in pattern 'p' (first at t.rules:2:3)"


def test_an_edge_to_an_unknown_capture():
    err = the_error("pattern p {\n  conv : Conv\n  act : Relu\n  conv -> akt\n  conv -> act\n}\n")
    assert err.loc == SourceLoc("t.rules", 4, 3)
    assert err.message == "edge conv -> akt: 'akt' is not a capture of pattern 'p' (did you mean 'act'?)"
    assert err.context == caret("  conv -> akt", 3)


def test_an_edge_from_a_node_to_itself():
    err = the_error("pattern p {\n  a : Relu\n  a -> a\n}\n")
    assert err.loc == SourceLoc("t.rules", 3, 3)
    assert "links a node to itself" in err.message


def test_a_rule_naming_an_undefined_pattern():
    err = the_error("pattern conv_bias { a : Conv }\nrule r {\n  match conv_bais\n  ignore\n}\n")
    assert err.loc == SourceLoc("t.rules", 2, 6)
    assert err.message == "rule 'r' matches 'conv_bais', which is not a pattern (did you mean 'conv_bias'?)"


def test_an_action_naming_an_unknown_capture():
    base = "pattern p {\n  conv : Conv\n  bias : Add\n  conv -> bias\n}\nrule r {\n  match p\n"
    err = the_error(base + "  insert conv.inputs, bais.outputs\n}\n")
    assert err.loc == SourceLoc("t.rules", 8, 23)
    assert err.message == "'bais' is not a capture of pattern 'p' (did you mean 'bias'?)"
    assert err.context == caret("  insert conv.inputs, bais.outputs", 23)
    err = the_error(base + "  ignore conv, bais\n}\n")
    assert err.loc == SourceLoc("t.rules", 8, 3)  # names carry no location: the action's
    assert err.message == "'bais' is not a capture of pattern 'p' (did you mean 'bias'?)"
    for action in ["propagate xyz", "unify xyz.inputs", "symmetric xyz.inputs[0]"]:
        assert the_error(base + f"  {action}\n}}\n").message == "'xyz' is not a capture of pattern 'p'"


def test_remove_an_edge_between_unknown_captures():
    errors = errors_of("pattern p {\n  a : Conv\n  b : Relu\n  a -> b\n}\nrule r {\n  match p\n  remove x -> y\n}\n")
    assert [(e.loc.line, e.loc.column, e.message) for e in errors] == [
        (8, 10, "'x' is not a capture of pattern 'p'"),
        (8, 10, "'y' is not a capture of pattern 'p'"),
    ]


def test_an_optional_node_must_sit_on_a_chain():
    err = the_error(
        "pattern p {\n  a : Conv\n  b : Conv\n  o : Add optional\n  c : Relu\n  a -> o\n  b -> o\n  o -> c\n}\n"
    )
    assert err.loc == SourceLoc("t.rules", 4, 3)
    assert err.message == (
        "optional node 'o' has 2 incoming and 1 outgoing pattern edges; an optional node must sit on a chain: "
        "at most one of each, and at least one"
    )
    # at an end of a chain (one edge) it is fine: the example conv -> bias -> act? relies on it
    parse_rules("pattern p {\n  a : Conv\n  b : Add optional\n  c : Relu optional\n  a -> b -> c\n}\n", "t.rules")


def test_an_optional_node_without_edges():
    errors = errors_of("pattern p {\n  a : Conv\n  o : Relu optional\n}\n")
    assert [(e.loc.line, e.loc.column) for e in errors] == [(1, 9), (3, 3)]
    assert errors[0].message.startswith("pattern 'p' is not connected")
    assert errors[1].message.startswith("optional node 'o' has 0 incoming and 0 outgoing")


def test_a_pattern_of_only_optional_nodes():
    err = the_error("pattern p {\n  a : Relu optional\n}\n")
    assert err.message == "pattern 'p' has only optional nodes; at least one must be required"


def test_a_disconnected_pattern_names_the_unreachable_captures():
    err = the_error("pattern p {\n  a : Conv\n  b : Relu\n  c : Relu\n  d : Relu\n  a -> b\n  c -> d\n}\n")
    assert err.loc == SourceLoc("t.rules", 1, 9)
    assert err.message == "pattern 'p' is not connected: no chain of edges links 'c', 'd' to 'a'"


def test_an_empty_pattern():
    err = the_error("pattern p {\n}\n")
    assert err.loc == SourceLoc("t.rules", 1, 9)
    assert err.message == "pattern 'p' is empty: declare at least one node ('name : OpType')"
    assert the_error("rule r { match { }; ignore }").message.startswith("pattern 'r' is empty")


def test_an_unknown_op_type():
    err = the_error("pattern p {\n  a : Conv | Cnov | com.example.Anything\n}\n")
    assert err.loc == SourceLoc("t.rules", 2, 3)
    assert err.message == "unknown op type 'Cnov' in node 'a' (did you mean 'Conv'?)"
    assert the_error("pattern p { a : relu }").message == "unknown op type 'relu' in node 'a' (did you mean 'Relu'?)"
    assert the_error("pattern p { a : Zzzzzzzz }").message == "unknown op type 'Zzzzzzzz' in node 'a'"


def test_an_unknown_spec_class():
    err = the_error("pattern p {\n  a : @quantisable\n}\n")
    assert err.loc == SourceLoc("t.rules", 2, 3)
    assert err.message == (
        "unknown spec class '@quantisable' in node 'a' (did you mean '@quantizable'?); "
        "the classes are @agnostic, @quantizable, @unified"
    )


def test_star_with_other_alternatives():
    assert the_error("pattern p { a : * | Relu }").message == (
        "node 'a': '*' already matches any op; drop the other alternatives"
    )


@pytest.mark.parametrize(
    "body, column, message",
    [
        ("a.out[-1] -> b", 3, "output index -1 is negative; ports count from 0"),
        ("a -> b.in[65]", 3, "input index 65 is out of range (at most 64)"),
        ("a -> b.in[64]", None, None),
    ],
)
def test_edge_port_indices(body, column, message):
    text = f"pattern p {{\n  a : Conv\n  b : Relu\n  {body}\n}}\n"
    if message is None:
        parse_rules(text, "t.rules")
        return
    err = the_error(text)
    assert (err.loc.line, err.loc.column, err.message) == (4, column, message)


def test_action_and_predicate_port_indices():
    errors = errors_of(
        "pattern p {\n  a : Conv where const(-2) and shape(70)[0] == 1 and out_shape(-1)[-1] == 1\n}\n"
        "rule r {\n  match p\n  insert a.inputs[0, 100]\n  remove a.outputs[-3]\n}\n"
    )
    assert [(e.loc.line, e.loc.column, e.message) for e in errors] == [
        (2, 18, "input index -2 is negative; ports count from 0"),
        (2, 32, "input index 70 is out of range (at most 64)"),
        (2, 54, "output index -1 is negative; ports count from 0"),
        (6, 10, "input index 100 is out of range (at most 64)"),
        (7, 10, "output index -3 is negative; ports count from 0"),
    ]


def test_in_needs_a_list_or_a_string():
    err = the_error("pattern p {\n  a : Conv where attr.axis in 3\n}\n")
    assert err.loc == SourceLoc("t.rules", 2, 31)
    assert err.message == "the right side of 'in' must be a list or a string, not 3"
    the_rules = "pattern p {\n  a : Conv where attr.mode in \"abc\" and 1 not in attr.pads\n}\n"
    parse_rules(the_rules, "t.rules")


def test_a_rule_without_actions():
    err = the_error("pattern p { a : Conv }\nrule r {\n  match p\n}\n")
    assert err.loc == SourceLoc("t.rules", 2, 6)
    assert err.message == ("rule 'r' has no actions; add one of ignore, insert, remove, propagate, unify, symmetric, "
                           "asymmetric, per_tensor, requantize, int32_bias")


def test_the_checks_report_every_problem_in_source_order():
    text = (
        "pattern p {\n"                 # 1
        "  a : Cnov\n"                  # 2  unknown op
        "  b : @foo\n"                  # 3  unknown class
        "  a : Relu\n"                  # 4  duplicate capture
        "  a -> zz\n"                   # 5  unknown capture
        "}\n"                           # 6
        "pattern p { x : Relu }\n"      # 7  duplicate pattern
        "pattern e { }\n"               # 8  empty
        "rule r { match q; ignore }\n"  # 9  undefined pattern
        "rule s {\n"                    # 10
        "  match p\n"                   # 11
        "  insert y.inputs\n"           # 12 unknown capture in an action
        "}\n"
    )
    errors = errors_of(text)
    assert [(e.loc.line, e.loc.column) for e in errors] == [
        (1, 9), (2, 3), (3, 3), (4, 3), (5, 3), (7, 9), (8, 9), (9, 6), (12, 10),
    ]
    assert errors[0].message.startswith("pattern 'p' is not connected")
    assert all(e.context.count("^") == 1 for e in errors)
    rendered = UserErrors(errors).render()
    assert sum(line.startswith("t.rules:") for line in rendered.splitlines()) == 9


def test_check_ruleset_alone_raises_with_excerpts():
    text = "pattern p { a : Cnov }\n"
    rs_text = {"x.rules": text}

    node = PatternNode("a", ("Cnov",), loc=SourceLoc("x.rules", 1, 13))
    rs = RuleSet((Pattern("p", (node,), ()),), (), ("x.rules",))
    with pytest.raises(UserErrors) as info:
        check_ruleset(rs, rs_text)
    assert info.value.errors[0].context == caret(text.rstrip("\n"), 13)
    check_ruleset(RuleSet((), (), ()), {})


# ---------------------------------------------------------------- parse_predicate


def test_parse_predicate_offsets_locations_from_its_loc():
    expr = parse_predicate("rank(0) == 4 and const(1)", SourceLoc("cpu.yaml", 12, 11))
    assert expr == And((Compare("==", RankRef(0), Lit(4)), ConstInput(1)))
    assert expr.items[0].right.loc == SourceLoc("cpu.yaml", 12, 22)
    assert expr.items[1].loc == SourceLoc("cpu.yaml", 12, 28)


def test_parse_predicate_on_several_lines():
    expr = parse_predicate("(const(0)\n   or const(1))", SourceLoc("cpu.yaml", 5, 9))
    assert expr == Or((ConstInput(0), ConstInput(1)))
    assert expr.items[1].loc == SourceLoc("cpu.yaml", 6, 7)  # lines after the first keep their own columns


def test_parse_predicate_syntax_error_points_into_the_yaml_line():
    source = "ops:\n  Conv:\n    when: attr.group == 1 and rank(0) = 4\n"
    with pytest.raises(UserErrors) as info:
        parse_predicate("attr.group == 1 and rank(0) = 4", SourceLoc("cpu.yaml", 3, 11), source)
    (err,) = info.value.errors
    assert err.loc == SourceLoc("cpu.yaml", 3, 39)
    assert err.message.startswith("unexpected '='; expected one of: 'and', 'in', 'not', 'or', a comparison")
    assert err.message.endswith("the end of the predicate")
    assert err.context == caret("    when: attr.group == 1 and rank(0) = 4", 39)


def test_parse_predicate_without_the_source_shows_the_predicate():
    with pytest.raises(UserErrors) as info:
        parse_predicate("const(1) or", SourceLoc("cpu.yaml", 3, 11))
    (err,) = info.value.errors
    assert err.loc == SourceLoc("cpu.yaml", 3, 22)
    assert err.message.startswith("unexpected end of the predicate; expected one of: a value")
    assert "a newline" not in err.message
    assert err.context == caret("const(1) or", 12)


def test_parse_predicate_checks_indices():
    with pytest.raises(UserErrors) as info:
        parse_predicate("const(0) and dtype(-1) == \"float32\"", SourceLoc("cpu.yaml", 3, 11))
    (err,) = info.value.errors
    assert err.loc == SourceLoc("cpu.yaml", 3, 24)
    assert err.message == "input index -1 is negative; ports count from 0"
    assert err.context == caret("const(0) and dtype(-1) == \"float32\"", 14)


def test_parse_predicate_rejects_empty_text_and_statements():
    for text in ["", "   ", "a : Conv", "const(0); const(1)"]:
        with pytest.raises(UserErrors):
            parse_predicate(text, SourceLoc("cpu.yaml", 1, 1))


def test_requantize_names_outputs_then_inputs_of_one_capture():
    err = the_error("rule r {\n  match { op : MaxPool }\n  requantize op.inputs[0] from op.outputs[0]\n}\n")
    assert err.loc == SourceLoc("t.rules", 3, 3)
    assert err.message.startswith("write requantize as 'requantize op.outputs from op.inputs[0]'")
    rs = parse_rules("rule r {\n  match { op : MaxPool }\n  requantize op.outputs[0] from op.inputs[0]\n}\n", "t.rules")
    (action,) = rs.rules[0].actions
    assert action.outputs.ports == (0,) and action.inputs.direction == "inputs"


def test_int32_bias_names_a_capture():
    err = the_error("rule r {\n  match { op : Conv }\n  int32_bias conv\n}\n")
    assert err.message.startswith("'conv' is not a capture of pattern 'r'")
