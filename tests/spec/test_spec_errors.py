"""Every mistake a user can make is reported with file:line:column, the key, and what to do."""
from __future__ import annotations

from pathlib import Path

import pytest

from rewriter.errors import UserErrors
from rewriter.spec.loader import load_spec
from spec_helpers import only_error, spec_errors

DATA = Path(__file__).parent / "data"

CONFIG = "{bits: 8, mode: symmetric, granularity: pertensor}"


def error_at(write_spec, text: str) -> tuple[int, int, str]:
    """(line, column, message) of the only error in a spec with ``text``."""
    err = only_error(write_spec(text))
    return err.loc.line, err.loc.column, err.message


# ---------------------------------------------------------------- many errors in one file


def test_all_errors_collected_one_line_each() -> None:
    path = DATA / "many_errors.yaml"
    with pytest.raises(UserErrors) as info:
        load_spec(path)
    lines = str(info.value).splitlines()
    assert len(lines) == len(info.value.errors) >= 14
    prefix = f"{path.resolve()}:"
    assert all(line.startswith(prefix) for line in lines)
    by_line = {}
    for err in info.value.errors:
        by_line.setdefault(err.loc.line, []).append(err.message)
    expected = {
        2: "missing required key 'name'",  # the spec's first key: line 1 is a comment
        3: "rules file 'missing.rules' not found",
        5: "configs.q8_a.bits must be an integer, got the string 'eight'",
        6: "did you mean 'symmetric'?",
        7: "configs.q8_c.granularity must be one of pertensor, perchannel, got 'per_tensor'",
        8: "configs.q8_d.bits must be between 2 and 32, got 1",
        9: "configs.q8_e.level_low (5) must be below level_high (3)",
        10: "configs.q8_f.level_low is given without level_high",
        11: "unknown key 'levle_high' in configs.q8_g; did you mean 'level_high'?",
        13: "duplicate key 'q8_ok' in configs (first given at line 12)",
        15: "unknown op type 'Convolution' in ops: ONNX defines no such operator; did you mean 'Conv'?",
        17: "ops.MaxPool.pass_through must be one of first, all, non_const, got 'some'",
        18: "unknown key 'activatons' in ops.Relu; did you mean 'activations'?",
    }
    for line, text in expected.items():
        assert any(text in m for m in by_line.get(line, [])), (line, by_line.get(line))
    line16 = " | ".join(by_line[16])
    assert "ops.Conv.ports must be a list, e.g. [0, 1]; got the number 3" in line16
    assert "ops.Conv.activations: config 'q8_ko' is not defined; did you mean 'q8_ok'?" in line16
    # sorted by position, and the two errors on line 16 in column order
    positions = [(e.loc.line, e.loc.column) for e in info.value.errors]
    assert positions == sorted(positions)


def test_error_columns_point_at_the_key_or_value() -> None:
    with pytest.raises(UserErrors) as info:
        load_spec(DATA / "many_errors.yaml")
    where = {(e.loc.line, e.message.split()[0]): e.loc.column for e in info.value.errors}
    assert where[(5, "configs.q8_a.bits")] == 16     # the value 'eight'
    assert where[(13, "duplicate")] == 3             # the second key
    assert where[(15, "unknown")] == 3               # the op key


# ---------------------------------------------------------------- one error per case


def test_yaml_syntax_error(write_spec) -> None:
    line, column, message = error_at(write_spec, "name: X\nconfigs:\n  q: {bits: 8\nops: {}\n")
    assert message.startswith("YAML syntax error:") and line == 4


def test_yaml_tab_error(write_spec) -> None:
    line, column, message = error_at(write_spec, "name: X\nops:\n\tConv: {}\n")
    assert (line, column) == (3, 1) and "YAML syntax error" in message


def test_a_comment_layout_ruamel_cannot_attach_is_read_without_it(write_spec) -> None:
    # A comment after a key whose value is a multi-word plain scalar, then a blank line: ruamel's
    # round-trip parser raises NotImplementedError ("overlap in comment"; found by tools/fuzz_loaders.py).
    # The file is still YAML: a valid spec in that layout loads, an invalid one gets its located error.
    path = write_spec("name: X\ndescription:   # what it is\n  a target \"for tests\"\n\n"
                      "ops:\n  MaxPool: {agnostic: true}\n")
    spec = load_spec(path)
    assert spec.name == "X" and spec.description == 'a target "for tests"'
    line, column, message = error_at(write_spec, "name: X\nops:   # c\n  x \"y\"\n\nconfigs: {}\n")
    assert line == 3 and "ops" in message


def test_empty_file(write_spec) -> None:
    assert "empty" in error_at(write_spec, "# nothing\n")[2]


def test_top_level_not_a_mapping(write_spec) -> None:
    line, column, message = error_at(write_spec, "- name: X\n")
    assert (line, column) == (1, 1) and "the spec must be a mapping" in message


@pytest.mark.parametrize("text, line, needle", [
    ("name: X\nname: Y\n", 2, "duplicate key 'name' in the spec (first given at line 1)"),
    ("name: X\nconfigs:\n  q: {bits: 8, bits: 4, mode: symmetric, granularity: pertensor}\n", 3,
     "duplicate key 'bits' in configs.q"),
    ("name: X\nops:\n  MaxPool: {agnostic: true}\n  MaxPool: {agnostic: false}\n", 4,
     "duplicate key 'MaxPool' in ops (first given at line 3)"),
])
def test_duplicate_keys(write_spec, text: str, line: int, needle: str) -> None:
    got_line, _, message = error_at(write_spec, text)
    assert got_line == line and needle in message


@pytest.mark.parametrize("text, line, needle", [
    ("name: X\nextend: cpu\n", 2, "unknown key 'extend' in the spec; did you mean 'extends'?"),
    ("name: X\nfoo: 1\n", 2, "unknown key 'foo' in the spec; expected one of: name, description, extends"),
    ("name: X\nconfigs:\n  q: {bits: 8, mode: symmetric, granularity: pertensor, sign: true}\n", 3,
     "unknown key 'sign' in configs.q; did you mean 'signed'?"),
    ("name: X\nops:\n  MaxPool: {agnostik: true}\n", 3,
     "unknown key 'agnostik' in ops.MaxPool; did you mean 'agnostic'?"),
    (f"name: X\nconfigs:\n  q: {CONFIG}\nops:\n  Conv:\n    activations: [q]\n    variants:\n"
     "      - {name: v, when: 'attr.group > 1', activation: [q]}\n", 8,
     "unknown key 'activation' in ops.Conv.variants[0]; did you mean 'activations'?"),
])
def test_unknown_keys(write_spec, text: str, line: int, needle: str) -> None:
    errors = spec_errors(write_spec(text))
    assert any(e.loc.line == line and needle in e.message for e in errors), [e.render() for e in errors]


@pytest.mark.parametrize("text, line, at, needle", [
    ("name: 5\n", 1, "5", "name must be a string, got the number 5"),
    ("name: X\nconfigs: [a]\n", 2, "[a]", "configs must be a mapping of config names to configs, got a list"),
    ("name: X\nconfigs:\n  q: {bits: 8.5, mode: symmetric, granularity: pertensor}\n", 3, "8.5",
     "configs.q.bits must be an integer, got the number 8.5"),
    ("name: X\nconfigs:\n  q: {bits: true, mode: symmetric, granularity: pertensor}\n", 3, "true",
     "configs.q.bits must be an integer, got the boolean true"),
    ("name: X\nconfigs:\n  q: {bits: 8, mode: symmetric, granularity: pertensor, signed: yes}\n", 3, "yes",
     "configs.q.signed must be true or false, got the string 'yes'"),
    ("name: X\nops:\n  Conv: {ports: 3}\n", 3, "3", "ops.Conv.ports must be a list, e.g. [0, 1]; got the number 3"),
    ("name: X\nops:\n  Conv: {ports: [0, -1]}\n", 3, "-1", "ops.Conv.ports[1] must be at least 0, got -1"),
    ("name: X\nops:\n  Conv: {ports: [0, 0]}\n", 3, "0]", "ops.Conv.ports lists input 0 twice"),
    (f"name: X\nconfigs:\n  q8_a: {CONFIG}\nops:\n  Conv: {{activations: q8_a}}\n", 5, "q8_a",
     "ops.Conv.activations must be a list, e.g. [q8_a]; got the string 'q8_a'"),
    ("name: X\nops:\n  Concat: {unified_scales: some}\n", 3, "some", "must be 'all' or a list of input groups"),
    ("name: X\nops:\n  LSTM: {unified_scales: [[0]]}\n", 3, "[0]", "must name at least two inputs"),
    ("name: X\nops:\n  LSTM: {unified_scales: [[0, 1], [1, 2]]}\n", 3, "[1, 2]", "input 1 is in two groups"),
    ("name: X\nops:\n  Conv: [a]\n", 3, "[a]", "ops.Conv must be a mapping of activations, weights"),
    ("name: X\nrules: ../rules/cpu.rules\n", 2, "../", "rules must be a list, e.g. [../rules/cpu.rules]"),
    ("name: X\nextends: [cpu]\n", 2, "[cpu]", "extends must be a string, got a list"),
    ("name: X\nconfigs:\n  q: 8\n", 3, "8", "configs.q must be a mapping, got the number 8"),
    ("name: X\nops:\n  8: {}\n", 3, "8", "keys in ops must be names, got the number 8"),
])
def test_wrong_types(write_spec, text: str, line: int, at: str, needle: str) -> None:
    got_line, got_column, message = error_at(write_spec, text)
    assert needle in message
    assert (got_line, got_column) == (line, text.splitlines()[line - 1].rindex(at) + 1)


@pytest.mark.parametrize("config, needle", [
    ("{bits: 8, mode: [symmetric, asymetric], granularity: pertensor}",
     "configs.q.mode[1] must be one of symmetric, asymmetric, got 'asymetric'; did you mean 'asymmetric'?"),
    ("{bits: 8, mode: [], granularity: pertensor}", "configs.q.mode must not be an empty list"),
    ("{bits: 8, mode: [symmetric, symmetric], granularity: pertensor}", "configs.q.mode lists 'symmetric' twice"),
    ("{bits: 8, mode: symmetric, granularity: channel}", "configs.q.granularity must be one of pertensor, perchannel"),
    ("{bits: 40, mode: symmetric, granularity: pertensor}", "configs.q.bits must be between 2 and 32, got 40"),
    ("{mode: symmetric, granularity: pertensor}", "config 'q' needs 'bits' (e.g. bits: 8)"),
    ("{bits: 8, granularity: pertensor}", "config 'q' needs 'mode'"),
    ("{bits: 8, mode: symmetric, granularity: pertensor, level_high: 3}",
     "configs.q.level_high is given without level_low; give both, or neither"),
    ("{bits: 8, mode: symmetric, granularity: pertensor, level_low: 3, level_high: 3}",
     "configs.q.level_low (3) must be below level_high (3)"),
    ("{bits: 8, mode: symmetric, granularity: pertensor, level_low: -200, level_high: 200}",
     "configs.q: levels -200..200 are 401 values; 8 bits hold at most 256"),
    ("{bits: 8, mode: symmetric, granularity: pertensor, narrow_range: true, level_low: -1, level_high: 1}",
     "configs.q.narrow_range sets level_low and level_high itself"),
    ("{bits: 8, mode: symmetric, granularity: pertensor, level_low: 0, level_high: 255, signed: true}",
     "configs.q.signed is true but the levels 0..255 are unsigned"),
])
def test_bad_configs(write_spec, config: str, needle: str) -> None:
    line, _, message = error_at(write_spec, f"name: X\nconfigs:\n  q: {config}\n")
    assert line == 3 and needle in message


@pytest.mark.parametrize("op, needle", [
    ("Convolution", "did you mean 'Conv'? (OpenVINO's Convolution is ONNX's Conv)"),
    ("Multiply", "did you mean 'Mul'?"),
    ("conv", "did you mean 'Conv'?"),
    ("MatMull", "did you mean 'MatMul'?"),
    ("NotEqual", "ONNX writes it as Not(Equal)"),
    ("Zzyzx", "ONNX defines no such operator"),
])
def test_unknown_op_types(write_spec, op: str, needle: str) -> None:
    line, column, message = error_at(write_spec, f"name: X\nops:\n  {op}: {{agnostic: true}}\n")
    assert (line, column) == (3, 3)
    assert f"unknown op type '{op}'" in message and needle in message


def test_undefined_config_suggests_closest(write_spec) -> None:
    line, column, message = error_at(write_spec, f"name: X\nconfigs:\n  q8_w_sym: {CONFIG}\n"
                                                 "ops:\n  Conv: {weights: [q8_w_sm]}\n")
    assert (line, column) == (5, 20)
    assert message == "ops.Conv.weights: config 'q8_w_sm' is not defined; did you mean 'q8_w_sym'?"


def test_undefined_config_lists_defined_ones(write_spec) -> None:
    message = error_at(write_spec, f"name: X\nconfigs:\n  a: {CONFIG}\n  b: {CONFIG}\n"
                                   "ops:\n  Conv: {activations: [zzz]}\n")[2]
    assert message.endswith("config 'zzz' is not defined; defined configs: a, b")


def test_undefined_config_in_variant(write_spec) -> None:
    line, _, message = error_at(write_spec, f"name: X\nconfigs:\n  a: {CONFIG}\nops:\n  Conv:\n"
                                            "    activations: [a]\n    variants:\n"
                                            "      - {name: dw, when: 'attr.group > 1', activations: [b]}\n")
    assert line == 8 and "ops.Conv.variants.dw.activations: config 'b' is not defined" in message


def test_broken_config_is_not_reported_again_at_its_users(write_spec) -> None:
    err = only_error(write_spec("name: X\nconfigs:\n  q: {bits: 0, mode: symmetric, granularity: pertensor}\n"
                                "ops:\n  Relu: {activations: [q]}\n"))
    assert err.loc.line == 3


def test_repeated_config_in_a_list(write_spec) -> None:
    line, _, message = error_at(write_spec, f"name: X\nconfigs:\n  a: {CONFIG}\n"
                                            "ops:\n  Conv: {activations: [a, a]}\n")
    assert line == 5 and "ops.Conv.activations lists 'a' twice" in message


@pytest.mark.parametrize("variant, needle", [
    ("{when: 'attr.group > 1', activations: [a]}", "ops.Conv.variants[0] needs 'name'"),
    ("{name: v, activations: [a]}", "ops.Conv.variants[0] needs 'when'"),
    ("{name: v, when: 'attr.group > 1'}", "ops.Conv.variants[0] changes nothing"),
    ("{name: v, when: 3, activations: [a]}", "ops.Conv.variants[0].when must be a string"),
])
def test_bad_variants(write_spec, variant: str, needle: str) -> None:
    line, _, message = error_at(write_spec, f"name: X\nconfigs:\n  a: {CONFIG}\nops:\n  Conv:\n"
                                            f"    variants:\n      - {variant}\n")
    assert line == 7 and needle in message


def test_duplicate_variant_names(write_spec) -> None:
    line, _, message = error_at(write_spec, f"name: X\nconfigs:\n  a: {CONFIG}\nops:\n  Conv:\n    variants:\n"
                                            "      - {name: v, when: 'attr.group > 1', activations: [a]}\n"
                                            "      - {name: v, when: 'attr.group > 2', activations: [a]}\n")
    assert line == 8 and "two variants are named 'v'" in message


def test_pass_through_needs_agnostic(write_spec) -> None:
    line, column, message = error_at(write_spec, "name: X\nops:\n  Pad: {pass_through: non_const}\n")
    assert (line, column) == (3, 9)
    assert "ops.Pad.pass_through applies only to agnostic ops; add 'agnostic: true'" in message


def test_unified_scales_outside_ports(write_spec) -> None:
    line, _, message = error_at(write_spec, "name: X\nops:\n  LSTM:\n    ports: [0, 1]\n"
                                            "    unified_scales: [[0, 5]]\n")
    assert line == 5 and "names input 5, which ports [0, 1] does not quantize" in message


def test_missing_rules_file(write_spec) -> None:
    line, column, message = error_at(write_spec, "name: X\nrules:\n  - ../none.rules\n")
    assert (line, column) == (3, 5)
    assert "rules file '../none.rules' not found" in message and "relative to the spec file" in message


def test_missing_name(write_spec) -> None:
    line, column, message = error_at(write_spec, "description: nameless\n")
    assert (line, column) == (1, 1)
    assert "missing required key 'name'" in message


def test_empty_name(write_spec) -> None:
    assert "name must not be empty" in error_at(write_spec, "name: ''\n")[2]


def test_merge_keys_are_refused(write_spec) -> None:
    text = f"name: X\nconfigs:\n  base: &b {CONFIG}\n  q:\n    <<: *b\n    bits: 4\n"
    errors = spec_errors(write_spec(text))
    assert any(e.loc.line == 5 and "YAML merge keys (<<) are not supported" in e.message for e in errors)


def test_missing_file() -> None:
    with pytest.raises(UserErrors, match="spec file '/no/such/spec.yaml' not found"):
        load_spec("/no/such/spec.yaml")


def test_message_renders_file_line_column(write_spec) -> None:
    path = write_spec("name: X\nops:\n  Cnv: {}\n")
    with pytest.raises(UserErrors) as info:
        load_spec(path)
    assert str(info.value) == (f"{path.resolve()}:3:3: unknown op type 'Cnv' in ops: ONNX defines no such "
                               "operator; did you mean 'Conv'?")


def test_an_integer_too_long_for_python_is_a_located_error(tmp_path) -> None:
    # Found by the loader fuzzer: the YAML library's int() refuses more than 4300 digits with a ValueError.
    path = tmp_path / "huge.yaml"
    path.write_text("name: HUGE\nextends: cpu\nsaturation_fix: " + "9" * 5000 + "\n")
    with pytest.raises(UserErrors) as info:
        load_spec(path)
    first = info.value.errors[0]
    assert (first.loc.line, first.loc.column) == (3, 17) and "5000 characters" in first.message


@pytest.mark.parametrize("key", ["rules", "extends"])
def test_a_path_too_long_for_the_file_system_is_a_located_error(write_spec, key: str) -> None:
    # Found by the spec fuzz run: a rules path of 300 characters made the file system raise ENAMETOOLONG
    # from inside pathlib, an exit 1.
    name = "(" * 300 + "/x.rules"
    value = f"[{name}]" if key == "rules" else f"./{name}"
    line, column, message = error_at(write_spec, f"name: X\n{key}: {value}\nops: {{}}\n")
    assert line == 2 and "cannot be looked up" in message
