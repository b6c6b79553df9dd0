"""A large model whose weights live inside an If's branches: loaded, quantized and saved with them in external data.

The size thresholds are shrunk so that a model of a few hundred KB takes the paths of one over 2 GB:
its external data kept in its file (subgraph initializers too), the output saved split. Each branch's
weights must reach the output's own data file (a subgraph copied whole would make the model proto itself
as large as its weights, more than protobuf can serialize past 2 GB).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import rewriter.calibrate.session as calib_session
import rewriter.ir.load as load_mod
from rewriter.cli import main
from rewriter.ir.external import tensors

WIDTH = 128  # 64 KB per weight


def _branch(rng: np.random.Generator, name: str) -> onnx.GraphProto:
    weight = numpy_helper.from_array((rng.standard_normal((WIDTH, WIDTH)) * 0.1).astype(np.float32), f"{name}.weight")
    return helper.make_graph(
        [helper.make_node("MatMul", ["x", weight.name], [f"{name}.mm"], name=f"{name}_matmul"),
         helper.make_node("Relu", [f"{name}.mm"], [f"{name}.y"], name=f"{name}_relu")],
        name, [], [helper.make_tensor_value_info(f"{name}.y", TensorProto.FLOAT, [1, WIDTH])], [weight])


def _model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("If", ["flag"], ["y"], name="switch", then_branch=_branch(rng, "high"),
                          else_branch=_branch(rng, "low"))],
        "if_with_weights",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, WIDTH]),
         helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, WIDTH])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _samples(folder: Path, flag: bool, n: int = 4) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(n):
        np.savez(folder / f"s{i}.npz", x=rng.standard_normal((1, WIDTH)).astype(np.float32), flag=np.array(flag))
    return folder


def _locations(path: Path) -> list[str]:
    model = onnx.load(os.fspath(path), load_external_data=False)
    return [e.value for t in tensors(model.graph) for e in t.external_data if e.key == "location"]


@pytest.mark.parametrize("keep_in_file", [True, False])
def test_subgraph_weights_of_a_large_model_go_to_external_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                keep_in_file: bool) -> None:
    model = tmp_path / "in" / "m.onnx"
    model.parent.mkdir()
    onnx.save_model(_model(), os.fspath(model), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.data", size_threshold=0)
    assert len(_locations(model)) == 2, "the input keeps both branches' weights in its data file"
    for module, name in ((load_mod, "LARGE_MODEL_BYTES"), (calib_session, "LARGE_MODEL_BYTES")):
        monkeypatch.setattr(module, name, 16 << 10)
    if keep_in_file:
        monkeypatch.setattr(load_mod, "KEEP_IN_FILE_BYTES", 16 << 10)
    out = tmp_path / "out" / "q.onnx"
    assert main(["quantize", os.fspath(model), "-o", os.fspath(out), "--data",
                 os.fspath(_samples(tmp_path / "data", True)), "--target", "ORT", "--quiet"]) == 0
    # The taken branch is quantized (its int8 weight goes out too), the other branch's float weight stays
    # in the branch: both in the output's own data file, none in the input's.
    saved = onnx.load(os.fspath(out), load_external_data=False)
    switch = next(n for n in saved.graph.node if n.op_type == "If")
    low = next(a.g for a in switch.attribute if a.name == "else_branch")
    assert [t.name for t in low.initializer] == ["low.weight"]
    assert low.initializer[0].data_location == TensorProto.EXTERNAL
    locations = _locations(out)
    assert len(locations) >= 2 and all(v.startswith("q.onnx.") and not os.path.isabs(v) for v in locations)
    assert sorted(p.name for p in out.parent.iterdir()) == sorted({"q.onnx", *locations})
    # onnxruntime runs it from the file as the float model runs, within quantization error on the taken branch.
    float_session = ort.InferenceSession(os.fspath(model), providers=["CPUExecutionProvider"])
    session = ort.InferenceSession(os.fspath(out), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).standard_normal((1, WIDTH)).astype(np.float32)
    for flag in (True, False):
        feed = {"x": x, "flag": np.array(flag)}
        expected, got = float_session.run(None, feed)[0], session.run(None, feed)[0]
        if flag:
            assert 10 * np.log10(np.sum(expected ** 2) / max(np.sum((expected - got) ** 2), 1e-20)) > 20
        else:
            np.testing.assert_array_equal(got, expected)


def test_loading_whole_or_kept_in_file_writes_the_same_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "in" / "m.onnx"
    model.parent.mkdir()
    onnx.save_model(_model(), os.fspath(model), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.data", size_threshold=0)
    data = _samples(tmp_path / "data", True)
    for module in (load_mod, calib_session):
        monkeypatch.setattr(module, "LARGE_MODEL_BYTES", 16 << 10)
    outputs = []
    for keep in (1 << 40, 16 << 10):
        monkeypatch.setattr(load_mod, "KEEP_IN_FILE_BYTES", keep)
        out = tmp_path / f"out-{keep}" / "q.onnx"
        assert main(["quantize", os.fspath(model), "-o", os.fspath(out), "--data", os.fspath(data),
                     "--target", "ORT", "--quiet", "--no-speed-guard"]) == 0
        outputs.append({p.name: p.read_bytes() for p in out.parent.iterdir()})
    assert outputs[0] == outputs[1]
