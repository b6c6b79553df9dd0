"""Hostile but plausible input files and options: exit 2 with one located message, never an internal error."""
from __future__ import annotations

from pathlib import Path

import pytest

from rewriter.cli import main
from rewriter.errors import UserError
from rewriter.options import QuantizeOptions

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "tiny_cnn.onnx"
CALIB = ROOT / "examples" / "calib"
DEEP = 10_000


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def quantize(capsys: pytest.CaptureFixture[str], tmp_path: Path, *argv: str | Path) -> tuple[int, str]:
    return run(capsys, "quantize", EXAMPLE, "-o", tmp_path / "out.onnx", "--data", CALIB, "--quiet", *argv)


# ---------------------------------------------------------------- YAML: forbidden characters, deep nesting

SPEC_HEAD = "name: X\nextends: cpu\n"


@pytest.mark.parametrize("text, where, what", [
    (SPEC_HEAD + 'description: "a\x01b"\n', "3:16", "character U+0001 is not allowed in YAML"),
    (SPEC_HEAD + "description: a\x00b\n", "3:15", "character U+0000 is not allowed in YAML"),
    (SPEC_HEAD + "description: " + "[" * DEEP + "]" * DEEP + "\n", "3:113",
     "lists and mappings nested more than 100 levels deep"),
])
def test_spec_file_with_forbidden_characters_or_deep_nesting(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             text: str, where: str, what: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(text, encoding="utf-8")
    code, err = run(capsys, "specs", "validate", spec)
    assert code == 2, err
    assert f"{spec}:{where}: {what}" in err


@pytest.mark.parametrize("name, text, where, what", [
    ("c.yaml", 'model:\n  name: x\n  note: "a\x01b"\n', "3:11", "character U+0001 is not allowed in YAML"),
    ("c.yaml", "model:\n  name: x\n  note: a\x00b\n", "3:10", "character U+0000 is not allowed in YAML"),
    ("c.yaml", "model: " + "[" * DEEP + "]" * DEEP + "\n", "1:107", "nested more than 100 levels deep"),
    ("c.json", '{"model": ' + "[" * DEEP + "]" * DEEP + "}\n", "1:110", "nested more than 100 levels deep"),
])
def test_config_file_with_forbidden_characters_or_deep_nesting(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               name: str, text: str, where: str,
                                                               what: str) -> None:
    config = tmp_path / name
    config.write_text(text, encoding="utf-8")
    code, err = quantize(capsys, tmp_path, "--config", config)
    assert code == 2, err
    assert f"{config}:{where}: " in err and what in err
    # The excerpt of a 20,000-character line is cut around the column.
    assert all(len(line) < 120 for line in err.splitlines() if line.startswith("    "))


# ---------------------------------------------------------------- NUL in a path read from a file


def test_nul_in_a_rule_file_include(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "r.rules"
    rules.write_text('include "a\x00b.rules"\n', encoding="utf-8")
    code, err = run(capsys, "rules", "check", rules)
    assert code == 2, err
    assert f"{rules}:1:1: the included path contains a NUL character" in err


@pytest.mark.parametrize("lines, where, key", [
    ('rules: ["a\\0b.rules"]\n', "3:9", "rules[0]"),
    ('model_types: {transformer: ["a\\0b.rules"]}\n', "3:29", "model_types.transformer[0]"),
])
def test_nul_in_a_spec_file_path(tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: str, where: str,
                                 key: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC_HEAD + lines, encoding="utf-8")
    code, err = run(capsys, "specs", "validate", spec)
    assert code == 2, err
    assert f"{spec}:{where}: {key}: the path contains a NUL character" in err


def test_nul_in_a_spec_extends_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text('name: X\nextends: "x/\\0.yaml"\n', encoding="utf-8")
    code, err = run(capsys, "specs", "validate", spec)
    assert code == 2, err
    assert f"{spec}:2:10: extends: the path contains a NUL character" in err


# ---------------------------------------------------------------- predicates nested too deep


@pytest.mark.parametrize("predicate", ["not " * 20_000 + "const(1)",
                                       "(const(1) and " * 300 + "const(0)" + ")" * 300])
def test_deeply_nested_predicate_in_a_rule_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                predicate: str) -> None:
    rules = tmp_path / "r.rules"
    rules.write_text(f"pattern p {{ a : Conv where {predicate} }}\nrule r {{ match p; ignore a }}\n",
                     encoding="utf-8")
    code, err = run(capsys, "rules", "check", rules)
    assert code == 2, err
    assert f"{rules}:1:" in err and "nested more than 100 levels deep" in err


def test_deeply_nested_when_in_a_spec_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC_HEAD + "ops:\n  Conv:\n    variants:\n      - name: v\n        when: \""
                    + "not " * 20_000 + "const(1)\"\n        activations: [q8_a]\n", encoding="utf-8")
    code, err = run(capsys, "specs", "validate", spec)
    assert code == 2, err
    assert f"{spec}:7:" in err and "nested more than 100 levels deep" in err


def test_moderate_nesting_still_works(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "r.rules"
    rules.write_text("pattern p { a : Conv where " + "not " * 60 + "const(1) }\nrule r { match p; ignore a }\n",
                     encoding="utf-8")
    code, err = run(capsys, "audit", EXAMPLE, "--rules", rules)
    assert code == 0, err


# ---------------------------------------------------------------- numeric options


@pytest.mark.parametrize("argv, message", [
    (("--batch-size", "0"), "--batch-size must be at least 1, got 0"),
    (("--batch-size", "-3"), "--batch-size must be at least 1, got -3"),
    (("--seed", "-1", "--subset-size", "2"), "--seed must be at least 0, got -1"),
])
def test_numeric_options_out_of_range(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...],
                                      message: str) -> None:
    code, err = quantize(capsys, tmp_path, *argv)
    assert code == 2, err
    assert err == f"error: {message}\n"
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("options, message", [
    ({"batch_size": 0}, "batch size must be at least 1, got 0"),
    ({"seed": -1, "subset_size": 2}, "seed must be 0 or more, got -1"),
])
def test_api_options_out_of_range(options: dict[str, int], message: str) -> None:
    with pytest.raises(UserError, match=message):
        QuantizeOptions(**options)  # type: ignore[arg-type]


# ---------------------------------------------------------------- silent or unlocated


@pytest.mark.parametrize("written, suggested", [("Cnov", "Conv"), ("relu", "Relu"), ("Convolution", "Conv")])
def test_unknown_ignore_op_is_refused_with_the_closest_type(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           written: str, suggested: str) -> None:
    code, err = run(capsys, "audit", EXAMPLE, "--ignore-op", written)
    assert code == 2, err
    assert f"--ignore-op names op type '{written}', which neither ONNX nor the model has; " \
           f"did you mean '{suggested}'?" in err
    code, err = quantize(capsys, tmp_path, "--ignore-op", written)
    assert code == 2 and f"did you mean '{suggested}'?" in err


def test_ignore_op_of_a_type_absent_from_the_model_is_fine(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "audit", EXAMPLE, "--ignore-op", "LSTM")
    assert code == 0, err


LATIN1 = "caf\u00e9".encode("latin-1")


@pytest.mark.parametrize("name, data, command, where", [
    ("r.rules", b"pattern p { a : Conv }\n# " + LATIN1 + b"\n", ("rules", "check"), "2:6"),
    ("s.yaml", b"name: X\nextends: cpu\ndescription: " + LATIN1 + b"\n", ("specs", "validate"), "3:17"),
])
def test_invalid_utf8_is_located_by_line_and_column(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str,
                                                    data: bytes, command: tuple[str, str], where: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    code, err = run(capsys, *command, path)
    assert code == 2, err
    assert f"{path}:{where}: byte 0xE9 is not UTF-8 text; save the file as UTF-8" in err


def test_invalid_utf8_in_a_config_file_is_located(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.json"
    # The column counts characters: the two-byte \u00fc before the bad byte is one column.
    config.write_bytes(b'{"model": {"name": "\xc3\xbc' + LATIN1 + b'"}}')
    code, err = quantize(capsys, tmp_path, "--config", config)
    assert code == 2, err
    assert f"{config}:1:25: byte 0xE9 is not UTF-8 text" in err


def test_invalid_utf8_in_an_included_rule_file_points_into_it(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "latin.rules").write_bytes(b"# " + LATIN1 + b"\n")
    top = tmp_path / "top.rules"
    top.write_text('include "latin.rules"\n', encoding="utf-8")
    code, err = run(capsys, "rules", "check", top)
    assert code == 2, err
    assert f"{tmp_path / 'latin.rules'}:1:6: byte 0xE9 is not UTF-8 text" in err
