"""`rewriter.quantize(model, target=..., data=..., **options)`: the documented Python entry point."""
from __future__ import annotations

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


def test_unknown_option_names_the_valid_ones() -> None:
    with pytest.raises(UserError, match=r"unknown option\(s\) presett.*valid: .*preset"):
        rewriter.quantize(str(EXAMPLE), data=str(CALIB), presett="mixed")


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
