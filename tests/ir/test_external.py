"""A large model's external data stays in its file: references in the model, values mapped when read.

``KEEP_IN_FILE_BYTES`` is shrunk so that small models take the path a model over 2 GB takes; what it
writes must be what the same model loaded whole writes.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

import rewriter.ir.load as load_mod
from models import random_inputs, tiny_cnn
from rewriter.calibrate.session import open_session, session_options
from rewriter.errors import UserError
from rewriter.ir.external import file_bytes, in_file
from rewriter.ir.load import load_model, model_digest, save_model
from rewriter.ir.tensors import initializer_arrays, tensor_array
from rewriter.options import QuantizeOptions
from rewriter.pipeline import quantize_file


def _stored(folder: Path, model: onnx.ModelProto | None = None) -> Path:
    """``model`` (tiny_cnn) written with every initializer of 64 bytes or more in ``w.data``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "m.onnx"
    onnx.save_model(model or tiny_cnn(), os.fspath(path), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="w.data", size_threshold=64)
    return path


def _keep_in_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every external tensor of every model stays in its file (tiny_cnn's are far below the sizes)."""
    monkeypatch.setattr(load_mod, "KEEP_IN_FILE_BYTES", 1)
    monkeypatch.setattr(load_mod, "_KEEP_MIN_BYTES", 1)


@pytest.fixture
def keep_in_file(monkeypatch: pytest.MonkeyPatch) -> None:
    _keep_in_file(monkeypatch)


def test_only_big_tensors_stay_in_their_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _stored(tmp_path)
    monkeypatch.setattr(load_mod, "KEEP_IN_FILE_BYTES", 1)
    monkeypatch.setattr(load_mod, "_KEEP_MIN_BYTES", 1024)
    model = load_model(path)
    kept = {t.name for t in model.graph.initializer if in_file(t)}
    sizes = {t.name: numpy_helper.to_array(t).nbytes for t in tiny_cnn().graph.initializer}
    assert kept == {name for name, size in sizes.items() if size >= 1024} and kept != set(sizes)


def test_external_data_stays_in_its_file(tmp_path: Path, keep_in_file: None) -> None:
    path = _stored(tmp_path)
    model = load_model(path)
    whole = tiny_cnn()
    expected = {t.name: numpy_helper.to_array(t) for t in whole.graph.initializer}
    referenced = [t for t in model.graph.initializer if in_file(t)]
    assert referenced and all(not t.raw_data for t in referenced)
    assert file_bytes(model) == sum(expected[t.name].nbytes for t in referenced)
    assert model.ByteSize() < whole.ByteSize() - file_bytes(model) // 2, "the weights are not in the proto"
    for t in model.graph.initializer:
        values = tensor_array(t)
        np.testing.assert_array_equal(values, expected[t.name])
        if in_file(t):
            assert isinstance(values, np.memmap) and not values.flags.writeable
    arrays = initializer_arrays(model, [t.name for t in referenced])
    assert arrays[referenced[0].name] is not arrays[referenced[0].name], "mapped again on each use, never kept"
    assert not any(t.raw_data for t in model.graph.initializer if in_file(t)), "reading left the proto as it was"


def test_a_model_loaded_whole_and_one_kept_in_its_file_save_the_same_bytes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _stored(tmp_path / "in")
    whole = load_model(path)
    _keep_in_file(monkeypatch)
    kept = load_model(path)
    assert file_bytes(kept) and not file_bytes(whole)
    assert model_digest(kept) == model_digest(whole)
    for size, name in ((1 << 40, "small"), (1024, "large")):
        monkeypatch.setattr(load_mod, "LARGE_MODEL_BYTES", size)
        save_model(whole, tmp_path / f"whole-{name}" / "out.onnx")
        save_model(kept, tmp_path / f"kept-{name}" / "out.onnx")
        files = sorted(p.name for p in (tmp_path / f"whole-{name}").iterdir())
        assert files == sorted(p.name for p in (tmp_path / f"kept-{name}").iterdir())
        assert len(files) == (1 if name == "small" else 2)
        for f in files:
            assert (tmp_path / f"whole-{name}" / f).read_bytes() == (tmp_path / f"kept-{name}" / f).read_bytes()
    # The output refers to its own data file, never to the input's.
    saved = onnx.load(os.fspath(tmp_path / "kept-large" / "out.onnx"), load_external_data=False)
    locations = {e.value for t in saved.graph.initializer for e in t.external_data if e.key == "location"}
    assert locations and all(not os.path.isabs(v) and v.startswith("out.onnx.") for v in locations)


def test_the_digest_follows_the_data_in_the_file(tmp_path: Path, keep_in_file: None) -> None:
    path = _stored(tmp_path)
    before = model_digest(load_model(path))
    data = bytearray((tmp_path / "w.data").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "w.data").write_bytes(bytes(data))
    assert model_digest(load_model(path)) != before


def test_onnxruntime_reads_the_weights_from_their_file(tmp_path: Path, keep_in_file: None) -> None:
    path = _stored(tmp_path)
    feeds = random_inputs(tiny_cnn(), 1)[0]
    expected = ort.InferenceSession(tiny_cnn().SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    got = open_session(load_model(path), session_options()).run(None, feeds)
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)


def test_a_location_outside_the_models_folder_is_refused(tmp_path: Path, keep_in_file: None) -> None:
    path = _stored(tmp_path / "in")
    model = onnx.load(os.fspath(path), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../w.data"
    (tmp_path / "w.data").write_bytes((tmp_path / "in" / "w.data").read_bytes())
    path.write_bytes(model.SerializeToString())
    with pytest.raises(UserError, match="external data"):
        load_model(path)


def test_a_data_file_too_short_is_refused(tmp_path: Path, keep_in_file: None) -> None:
    path = _stored(tmp_path)
    data = (tmp_path / "w.data").read_bytes()
    (tmp_path / "w.data").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="fewer than offset"):
        load_model(path)


@pytest.mark.parametrize("extra", [
    {}, {"bias_correction": "full", "layerwise_tuning": True}, {"smoothing": 0.8, "channel_alignment": True},
    {"output_format": "fakequantize", "target": "ANY", "self_check": False}])
def test_quantizing_a_model_kept_in_its_file_writes_the_same_bytes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: dict) -> None:
    # The passes read weights and run layers in onnxruntime: through the mapping, and the folder, too.
    model = tiny_cnn()
    path = _stored(tmp_path / "in", model)
    samples = random_inputs(model, 8)
    options = QuantizeOptions(**{"target": "ORT", "speed_guard": False, "check_samples": 4, **extra})
    quantize_file(path, tmp_path / "whole" / "q.onnx", samples, options)
    _keep_in_file(monkeypatch)
    quantize_file(path, tmp_path / "kept" / "q.onnx", samples, options)
    assert (tmp_path / "kept" / "q.onnx").read_bytes() == (tmp_path / "whole" / "q.onnx").read_bytes()


def test_a_model_is_sized_without_serializing_its_big_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    # upb's ByteSize serializes the message: sizing a model must not copy its weights.
    model = tiny_cnn()
    model.graph.initializer.append(numpy_helper.from_array(np.ones((1 << 19,), np.float32), "big"))
    exact = model.ByteSize()
    sized: list[int] = []
    real = onnx.ModelProto.ByteSize

    def spy(self: onnx.ModelProto) -> int:
        size = real(self)
        sized.append(size)
        return size

    monkeypatch.setattr(onnx.ModelProto, "ByteSize", spy, raising=False)
    for limit, expected in ((exact, True), (exact + 64, False), (exact - 64, True)):
        assert load_mod.is_large(model, limit) is expected
        assert load_mod.too_big_to_serialize(model, limit) is expected
    assert sized and max(sized) < (1 << 21) // 4, "only the copy without the big tensor's data was serialized"


def _with_constant(value: float) -> onnx.ModelProto:
    """A Conv-free model whose only big tensor is a Constant node's value."""
    from onnx import TensorProto, helper

    constant = helper.make_node("Constant", [], ["c"],
                                value=numpy_helper.from_array(np.full((32, 32), value, np.float32), "c"))
    add = helper.make_node("Add", ["x", "c"], ["y"])
    graph = helper.make_graph([constant, add], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [32, 32])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_the_digest_reads_a_constant_kept_in_its_file(tmp_path: Path, keep_in_file: None) -> None:
    def stored(value: float, folder: str) -> Path:
        (tmp_path / folder).mkdir()
        path = tmp_path / folder / "m.onnx"
        onnx.save_model(_with_constant(value), os.fspath(path), save_as_external_data=True,
                        all_tensors_to_one_file=True, location="w.data", size_threshold=64, convert_attribute=True)
        return path

    ones, twos = load_model(stored(1.0, "ones")), load_model(stored(2.0, "twos"))
    assert any(in_file(a.t) for n in ones.graph.node for a in n.attribute), "the constant is not kept in its file"
    assert model_digest(ones) != model_digest(twos)  # same structure and reference, other values
    again = stored(1.0, "ones_again")
    assert model_digest(ones) == model_digest(load_model(again))  # another folder
    assert model_digest(ones) == model_digest(onnx.load(os.fspath(again)))  # loaded whole


def test_every_tensor_is_walked_subgraphs_included() -> None:
    """tensors() finds what onnx's own walk finds: initializers, tensor and tensor-list attributes, and the
    same inside If branches and Loop bodies at any depth; the graph's own tensors come first."""
    from onnx import TensorProto, helper
    from onnx.external_data_helper import _get_all_tensors

    from rewriter.ir.external import tensors

    def const(name: str) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], name=f"make_{name}",
                                value=numpy_helper.from_array(np.zeros(2, np.float32), f"{name}_value"))

    inner_if = helper.make_node(
        "If", ["cond"], ["inner_out"], name="inner_if",
        then_branch=helper.make_graph([const("deep_then")], "deep_then_graph", [],
                                      [helper.make_tensor_value_info("deep_then", TensorProto.FLOAT, [2])]),
        else_branch=helper.make_graph([const("deep_else")], "deep_else_graph", [],
                                      [helper.make_tensor_value_info("deep_else", TensorProto.FLOAT, [2])]))
    body = helper.make_graph(
        [inner_if, const("body_const"), helper.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, [])])
    listed = helper.make_node("Custom", [], ["listed_out"], name="listed", domain="x.y")
    listed.attribute.append(helper.make_attribute(
        "values", [numpy_helper.from_array(np.ones(1, np.float32), f"listed_{k}") for k in range(2)]))
    graph = helper.make_graph(
        [const("top"), listed, helper.make_node("Loop", ["trip", "cond"], [], name="loop", body=body)], "g",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])], [],
        [numpy_helper.from_array(np.array(3, np.int64), "trip"),
         numpy_helper.from_array(np.zeros(3, np.float32), "w")])
    model = helper.make_model(graph)

    ours = [t.name for t in tensors(model.graph)]
    assert sorted(ours) == sorted(t.name for t in _get_all_tensors(model))
    assert ours[:5] == ["trip", "w", "top_value", "listed_0", "listed_1"]
    assert set(ours[5:]) == {"body_const_value", "deep_then_value", "deep_else_value"}
