"""`rewriter.quantize(model, target=..., data=..., **options)`: the documented Python entry point."""
from __future__ import annotations

import dataclasses
import inspect
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import onnx
import pytest

import rewriter
from rewriter.errors import UserError
from rewriter.pipeline import QuantizeOptions, quantize as run_pipeline

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "tiny_cnn.onnx"
CALIB = ROOT / "examples" / "calib"
SEED_CONFIG = ROOT / "tests" / "config" / "data" / "seed_example.json"


def test_unpacks_into_model_and_report_equal_to_the_pipeline() -> None:
    model, report = rewriter.quantize(str(EXAMPLE), target="GPU", data=str(CALIB), preset="mixed", subset_size=8)
    reference = run_pipeline(str(EXAMPLE), str(CALIB), QuantizeOptions(target="GPU", preset="mixed", subset_size=8))
    assert isinstance(model, onnx.ModelProto)
    assert model.SerializeToString() == reference.model.SerializeToString()
    assert report["options"]["target"] == "GPU" and report["options"]["preset"] == "mixed"
    assert report["calibration"]["samples"] == 8


def test_accepts_a_model_proto_and_plain_lists() -> None:
    proto = onnx.load(str(EXAMPLE))
    before = proto.SerializeToString()
    result = rewriter.quantize(proto, data=str(CALIB), ignore_scope=["branch_a"], ignore_ops=["Gemm"])
    assert proto.SerializeToString() == before  # the caller's model is not modified
    status = {n.node: n.status for n in result.plan.nodes}
    assert status["branch_a"] != "quantized" and status["output"] != "quantized"
    assert status["branch_b"] == "quantized"


def test_config_file_with_keyword_override() -> None:
    with pytest.warns(UserWarning, match="placeholder"):  # the config's notices reach API users as warnings
        result = rewriter.quantize(str(EXAMPLE), data=str(CALIB), config=str(SEED_CONFIG), bias_correction=False)
    assert "channel_alignment" in result.report["passes"]
    assert "bias_correction" not in result.report["passes"]


def test_a_misspelt_option_is_refused_by_the_signature() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'presett'"):
        rewriter.quantize(str(EXAMPLE), data=str(CALIB), presett="mixed")  # type: ignore[call-arg]


def test_help_shows_real_signatures_and_docstrings() -> None:
    quantize = inspect.signature(rewriter.quantize)
    assert not any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in quantize.parameters.values())
    # Every option QuantizeOptions takes is a keyword of its own (quantizer_overrides and the ignored scope's
    # file positions come from config files).
    fields = {f.name for f in dataclasses.fields(QuantizeOptions)} - {"target", "quantizer_overrides",
                                                                       "ignore_scope_sources"}
    assert fields <= set(quantize.parameters), fields - set(quantize.parameters)
    assert quantize.return_annotation in ("QuantizeResult", rewriter.QuantizeResult)
    audit = inspect.signature(rewriter.audit)
    assert list(audit.parameters)[:2] == ["model", "target"]
    for function in (rewriter.quantize, rewriter.audit):
        doc = inspect.getdoc(function) or ""
        assert "Args:" in doc and "See rewriter.api" not in doc
    result_doc = inspect.getdoc(rewriter.QuantizeResult) or ""
    assert all(f"{name}:" in result_doc for name in ("model", "plan", "ranges", "report", "inserted"))


def test_the_documented_keywords_are_the_signatures_keywords() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    documented = set(re.findall(r"^\| `(\w+)` \|", text, re.MULTILINE))
    keywords = {name for name, p in inspect.signature(rewriter.quantize).parameters.items()
                if p.kind is p.KEYWORD_ONLY}
    assert keywords <= documented, keywords - documented


def test_import_rewriter_loads_no_heavy_library_and_names_resolve_on_use() -> None:
    code = ("import sys, rewriter\n"
            "heavy = sorted(m for m in ('onnx', 'onnxruntime', 'numpy', 'lark') if m in sys.modules)\n"
            "print(heavy, rewriter.__version__, rewriter.quantize.__module__, sorted(rewriter.__all__) == dir_ok)\n")
    code = code.replace("dir_ok", "sorted(n for n in dir(rewriter) if n in rewriter.__all__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", version("rewriter"), "rewriter.api", "True"]


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'quantise'"):
        rewriter.quantise  # noqa: B018 - the access is the test


def test_missing_data_is_a_user_error() -> None:
    with pytest.raises(UserError, match="no calibration data"):
        rewriter.quantize(str(EXAMPLE))


def test_large_weight_sqnr_is_measured_on_slices_that_keep_every_channel() -> None:
    import numpy as np

    from rewriter.report.quantize_report import weight_sample

    w = np.arange(64 * 10, dtype=np.float32).reshape(64, 10)
    per_column = weight_sample(w, 1, limit=100)
    assert per_column.shape == (10, 10) and np.array_equal(per_column, w[::7])  # step ceil(640 / 100)
    per_row = weight_sample(w, 0, limit=100)
    assert per_row.shape[0] == 64 and per_row.size <= 2 * 100
    assert weight_sample(w, None, limit=10_000) is w
