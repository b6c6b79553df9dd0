"""stderr holds one line per warning and the one error message: no source paths, no onnxruntime log lines."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper, save

from rewriter.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "tiny_cnn.onnx"
CALIB = ROOT / "examples" / "calib"


def test_a_warning_is_one_line_without_the_source_path(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    calib = tmp_path / "calib"
    calib.mkdir()
    for f in CALIB.iterdir():
        (calib / f.name).write_bytes(f.read_bytes())
    (calib / "notes.txt").write_text("not a sample")
    code = main(["quantize", str(EXAMPLE), "-o", str(tmp_path / "out.onnx"), "--data", str(calib), "--quiet",
                 "--subset-size", "2"])
    err = capfd.readouterr().err
    assert code == 0
    assert err.splitlines() == [f"warning: {calib}: ignoring 1 file(s) that are not .npy, .npz or images (notes.txt)"]


def test_onnxruntime_logs_nothing_before_the_error(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # A Reshape the sample cannot satisfy: onnxruntime fails the run (and used to log it at error level).
    conv = helper.make_node("Conv", ["input", "w"], ["c"])
    reshape = helper.make_node("Reshape", ["c", "shape"], ["y"])
    graph = helper.make_graph(
        [conv, reshape], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 4, 4]),
         helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 7])],
        [numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")])
    model = tmp_path / "m.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), os.fspath(model))
    calib = tmp_path / "calib"
    calib.mkdir()
    np.savez(calib / "a.npz", input=np.ones((1, 3, 4, 4), np.float32), shape=np.array([5, 7], np.int64))
    code = main(["quantize", str(model), "-o", str(tmp_path / "out.onnx"), "--data", str(calib), "--quiet"])
    err = capfd.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "onnxruntime rejected the sample" in err, err
