"""The `rewriter` command line: outputs, the JSON schema, exit codes and error messages."""
from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

import models
from rewriter.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "tiny_cnn.onnx"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_audit_table_lists_every_node(capsys) -> None:
    code, out, _ = run(capsys, "audit", str(EXAMPLE), "--target", "CPU")
    assert code == 0
    assert "FakeQuantize" in out and "insert by quantize_inputs @ rules/placement.rules:" in out
    graph = onnx.load(str(EXAMPLE)).graph
    assert "stem_conv" in out and out.count("\n  ") >= len(graph.node) - 2


def test_audit_without_a_target_shows_quantizes_default_placement(capsys) -> None:
    # quantize writes QDQ for onnxruntime by default, so audit with no --target plans for ORT too.
    code, out, _ = run(capsys, "audit", str(EXAMPLE), "--format", "json")
    assert code == 0 and json.loads(out)["target"] == "ORT"


def test_audit_json_schema(capsys) -> None:
    code, out, _ = run(capsys, "audit", str(EXAMPLE), "--format", "json", "--target", "CPU")
    assert code == 0
    doc = json.loads(out)
    assert doc["schema"] == "rewriter.plan/2" and doc["target"] == "CPU"
    assert set(doc) >= {"model", "spec", "preset", "rules", "summary", "decisions", "configs", "fakequantize",
                        "nodes"}
    point = doc["fakequantize"][0]
    assert set(point) == {"tensor", "role", "config", "candidates", "consumers", "at_output",
                          "channel_axis", "unify_group", "trail"}
    assert set(doc["configs"][point["config"]]) == {"name", "bits", "mode", "granularity", "level_low",
                                                    "level_high", "signed"}
    # Trails are decision ids; each decision is [action, source, file:line:column or origin, detail].
    decisions = [doc["decisions"][i] for i in point["trail"]]
    assert decisions and all(len(d) == 4 for d in decisions)
    assert any(d[2].startswith("rules/placement.rules:") for d in decisions)
    assert all(n["status"] in ("quantized", "float", "ignored", "agnostic") and n["reason"] for n in doc["nodes"])
    assert doc["summary"]["fakequantize"] == len(doc["fakequantize"])


def test_audit_output_file_is_identical_across_runs(tmp_path, capsys) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert run(capsys, "audit", str(EXAMPLE), "--format", "json", "-o", str(a))[0] == 0
    assert run(capsys, "audit", str(EXAMPLE), "--format", "json", "-o", str(b))[0] == 0
    assert a.read_bytes() == b.read_bytes()


def test_audit_with_a_user_spec_file_and_extra_rules(tmp_path, capsys) -> None:
    spec = tmp_path / "mychip.yaml"
    spec.write_text("name: MYCHIP\nextends: cpu\nops:\n  Add: null\n")
    rules = tmp_path / "extra.rules"
    rules.write_text("rule keep_stem {\n    match { c : Conv where graph_input(0) }\n    ignore\n}\n")
    code, out, _ = run(capsys, "audit", str(EXAMPLE), "--target", str(spec), "--rules", str(rules))
    assert code == 0, out
    assert "on MYCHIP" in out
    assert "stem_conv  Conv" in out and "kept float by keep_stem" in out
    assert "MYCHIP spec has no entry for Add" in out


@pytest.mark.parametrize("case", ["missing", "not_onnx", "checker"])
def test_bad_model_files_exit_2_and_name_the_file(tmp_path, capsys, case) -> None:
    path = tmp_path / "model.onnx"
    if case == "not_onnx":
        path.write_text("this is not a model")
    elif case == "checker":
        model = models.residual_block()
        model.graph.node[0].input[0] = "nowhere"
        path.write_bytes(model.SerializeToString())
    code, _, err = run(capsys, "audit", str(path))
    assert code == 2
    assert "model.onnx" in err and "Traceback" not in err


def test_unknown_target_lists_the_available_ones(capsys) -> None:
    code, _, err = run(capsys, "audit", str(EXAMPLE), "--target", "XPU")
    assert code == 2
    assert "unknown target 'XPU'" in err and "ANY, CPU, GNA, GPU, ORT, VPU" in err


def test_bad_rule_file_shows_line_column_and_caret(tmp_path, capsys) -> None:
    rules = tmp_path / "bad.rules"
    rules.write_text("rule r {\n    match { c : Conv }\n    insret c.inputs\n}\n")
    code, _, err = run(capsys, "rules", "check", str(rules))
    assert code == 2
    assert "bad.rules:3:5" in err and "^" in err


def test_rule_naming_an_undefined_pattern_or_capture(tmp_path, capsys) -> None:
    rules = tmp_path / "undefined.rules"
    rules.write_text("pattern p { c : Conv }\nrule r {\n    match q\n    ignore\n}\n"
                     "rule s {\n    match p\n    ignore d\n}\n")
    code, _, err = run(capsys, "rules", "check", str(rules))
    assert code == 2
    assert "undefined.rules:2" in err and "'q'" in err
    assert "undefined.rules:8" in err and "'d'" in err


def test_rules_check_accepts_the_shipped_rule_files(capsys) -> None:
    files = sorted(str(p) for p in (ROOT / "rules").glob("*.rules"))
    code, out, _ = run(capsys, "rules", "check", *files)
    assert code == 0 and out.count(": ok") == len(files)


def test_specs_list_show_validate(capsys) -> None:
    code, out, _ = run(capsys, "specs", "list")
    assert code == 0 and all(name in out for name in ("ANY", "CPU", "GNA", "GPU", "ORT", "VPU"))
    code, out, _ = run(capsys, "specs", "show", "gpu")
    assert code == 0 and json.loads(out)["name"] == "GPU"
    code, out, _ = run(capsys, "specs", "validate", *(str(p) for p in sorted((ROOT / "hw_specs").glob("*.yaml"))))
    assert code == 0 and out.count(": ok") == 6


@pytest.mark.parametrize("text, expected", [
    ("name: X\nconfigs:\n  q8: {bits: 8, mode: symetric, granularity: pertensor}\n", "3:"),
    ("name: X\nopz: {}\n", "did you mean 'ops'"),
    ("name: X\nops:\n  Convolution: {activations: []}\n", "Conv"),
    ("name: X\nops:\n  Conv: {activations: [q9]}\n", "q9"),
    ("name: X\nextends: loop\n", "extends"),
    ("name: X\nops: [\n", "yaml"),
])
def test_specs_validate_reports_errors_with_location(tmp_path, capsys, text, expected) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text(text)
    code, _, err = run(capsys, "specs", "validate", str(path))
    assert code == 2
    assert "loop.yaml:" in err and expected.lower() in err.lower()


def test_unknown_ignore_scope_is_an_error(capsys) -> None:
    code, _, err = run(capsys, "audit", str(EXAMPLE), "--ignore-scope", "nosuchnode")
    assert code == 2 and "nosuchnode" in err
