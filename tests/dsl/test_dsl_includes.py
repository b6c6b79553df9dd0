"""Includes and loading files: relative paths, each file once, cycles, unreadable files."""
from __future__ import annotations

from pathlib import Path

import pytest

from rewriter.dsl import load_rule_files, load_rules, parse_rules
from rewriter.errors import SourceLoc, UserErrors

DATA = Path(__file__).parent / "data"


def test_includes_are_relative_to_the_including_file_and_expanded_in_place():
    rs = load_rules(DATA / "includes" / "main.rules")
    # main.rules: first, include common, include sub/more (which re-includes common), then its rule
    assert [p.name for p in rs.patterns] == ["first", "common_relu", "more_pair"]
    assert [r.name for r in rs.rules] == ["uses_both"]
    assert rs.files == (
        str(DATA / "includes" / "main.rules"),
        str(DATA / "includes" / "common.rules"),
        str(DATA / "includes" / "sub" / "more.rules"),
    )
    assert rs.pattern("more_pair").loc == SourceLoc(str(DATA / "includes" / "sub" / "more.rules"), 3, 9)


def test_a_diamond_include_loads_the_shared_file_once_at_its_first_position():
    rs = load_rules(DATA / "includes" / "sub" / "more.rules")
    assert [p.name for p in rs.patterns] == ["common_relu", "more_pair"]
    # listing files that include each other loads each once: no duplicate-name errors
    both = load_rule_files([DATA / "includes" / "sub" / "more.rules", DATA / "includes" / "main.rules"])
    assert [p.name for p in both.patterns] == ["common_relu", "more_pair", "first"]
    assert len(both.files) == 3


def test_the_same_top_level_file_twice_is_loaded_once():
    path = DATA / "includes" / "common.rules"
    rs = load_rule_files([path, str(path), DATA / "includes" / ".." / "includes" / "common.rules"])
    assert [p.name for p in rs.patterns] == ["common_relu"]


def test_load_rule_files_merges_in_order(tmp_path):
    (tmp_path / "a.rules").write_text("pattern pa { x : Relu }\nrule ra { match pa; ignore }\n")
    (tmp_path / "b.rules").write_text("rule rb { match pa; ignore x }\n")  # uses a pattern of a.rules
    rs = load_rule_files([tmp_path / "a.rules", tmp_path / "b.rules"])
    assert [r.name for r in rs.rules] == ["ra", "rb"]
    with pytest.raises(UserErrors, match="rule 'rb' matches 'pa', which is not a pattern"):
        load_rule_files([tmp_path / "b.rules"])


def test_an_include_cycle_is_an_error_naming_the_chain():
    with pytest.raises(UserErrors) as info:
        load_rules(DATA / "cycle" / "a.rules")
    (err,) = info.value.errors
    a, b = str(DATA / "cycle" / "a.rules"), str(DATA / "cycle" / "b.rules")
    assert err.loc == SourceLoc(b, 2, 1)
    assert err.message == f"include cycle: {a} -> {b} -> {a}"
    assert err.context == '    include "a.rules"\n    ^'


def test_a_file_including_itself_is_a_cycle(tmp_path):
    (tmp_path / "self.rules").write_text('include "./self.rules"\n')
    with pytest.raises(UserErrors, match="include cycle"):
        load_rules(tmp_path / "self.rules")


def test_a_missing_include_names_the_include_statement():
    with pytest.raises(UserErrors) as info:
        load_rules(DATA / "missing" / "main.rules")
    (err,) = info.value.errors
    main = str(DATA / "missing" / "main.rules")
    assert err.loc == SourceLoc(main, 3, 3)
    assert "cannot read included file 'nowhere.rules'" in err.message
    assert str(DATA / "missing" / "nowhere.rules") in err.message
    assert err.render().startswith(f"{main}:3:3: cannot read included file")
    assert err.context == '      include "nowhere.rules"\n      ^'


def test_an_include_from_text_resolves_against_the_filename_folder():
    rs = parse_rules('include "includes/common.rules"\n', str(DATA / "virtual.rules"))
    assert [p.name for p in rs.patterns] == ["common_relu"]


def test_a_missing_top_level_file_is_named(tmp_path):
    missing = tmp_path / "nope.rules"
    with pytest.raises(UserErrors) as info:
        load_rules(missing)
    (err,) = info.value.errors
    assert err.loc == SourceLoc(str(missing))
    assert "cannot read the rule file" in err.render() and str(missing) in err.render()


def test_a_folder_or_binary_file_is_reported_not_raised(tmp_path):
    (tmp_path / "bin.rules").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UserErrors) as info:
        load_rule_files([tmp_path, tmp_path / "bin.rules"])
    messages = [e.message for e in info.value.errors]
    assert len(messages) == 2
    assert "not UTF-8" in messages[1]


def test_errors_in_included_files_point_into_them(tmp_path):
    (tmp_path / "inc.rules").write_text("pattern p {\n  a : Cnov\n}\n")
    (tmp_path / "main.rules").write_text('include "inc.rules"\nrule r { match p; ignore }\n')
    with pytest.raises(UserErrors) as info:
        load_rules(tmp_path / "main.rules")
    (err,) = info.value.errors
    assert err.loc == SourceLoc(str(tmp_path / "inc.rules"), 2, 3)
    assert err.context == "      a : Cnov\n      ^"


def test_syntax_errors_in_several_files_are_all_reported(tmp_path):
    (tmp_path / "one.rules").write_text("pattern p {\n  a : \n}\n")
    (tmp_path / "two.rules").write_text("rule r {\n  match\n}\n")
    with pytest.raises(UserErrors) as info:
        load_rule_files([tmp_path / "one.rules", tmp_path / "two.rules"])
    assert [(e.loc.file, e.loc.line) for e in info.value.errors] == [
        (str(tmp_path / "one.rules"), 2),
        (str(tmp_path / "two.rules"), 2),
    ]


def test_a_byte_order_mark_is_ignored(tmp_path):
    (tmp_path / "bom.rules").write_text("\ufeffpattern p { a : Relu }\n", encoding="utf-8")
    assert load_rules(tmp_path / "bom.rules").patterns[0].loc == SourceLoc(str(tmp_path / "bom.rules"), 1, 9)
