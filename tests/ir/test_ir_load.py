"""load_model turns bad files into UserError naming the file; save_model is atomic and deterministic."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import rewriter.ir.load as load_mod
from models import conv_bn_relu_chain, tiny_cnn
from rewriter.errors import UserError
from rewriter.ir.load import load_model, model_digest, save_model


def _expect_user_error(path: Path, *fragments: str) -> UserError:
    with pytest.raises(UserError) as info:
        load_model(path)
    text = str(info.value)
    assert str(path) in text
    for fragment in fragments:
        assert fragment in text
    assert "Traceback" not in text
    return info.value


def test_roundtrip(tmp_path: Path) -> None:
    m = tiny_cnn()
    save_model(m, tmp_path / "m.onnx")
    assert load_model(tmp_path / "m.onnx") == m


def test_missing_file(tmp_path: Path) -> None:
    _expect_user_error(tmp_path / "nope.onnx", "no such model file")


def test_folder_instead_of_file(tmp_path: Path) -> None:
    _expect_user_error(tmp_path, "is a folder")


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    _expect_user_error(p, "empty")


@pytest.mark.parametrize("content", [
    b"this is not a model\njust some text\n",
    b"\xff\xfe\x00garbage\x12\x99" * 10,
    b'{"graph": 1}',
])
def test_not_onnx(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    _expect_user_error(p, "not")


def test_truncated_model(tmp_path: Path) -> None:
    data = tiny_cnn().SerializeToString()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[: len(data) // 2])
    _expect_user_error(p)


def test_model_failing_checker(tmp_path: Path) -> None:
    # Relu reads a tensor nobody defines.
    node = helper.make_node("Relu", ["ghost"], ["y"], name="relu")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    p = tmp_path / "invalid.onnx"
    p.write_bytes(m.SerializeToString())
    _expect_user_error(p, "ONNX checker", "ghost")


def test_unknown_op_fails_checker(tmp_path: Path) -> None:
    node = helper.make_node("Rellu", ["x"], ["y"], name="typo")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    p = tmp_path / "typo.onnx"
    p.write_bytes(m.SerializeToString())
    _expect_user_error(p, "Rellu")


def test_unsorted_model_is_sorted_not_rejected(tmp_path: Path) -> None:
    m = conv_bn_relu_chain()
    nodes = list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(reversed(nodes))
    p = tmp_path / "unsorted.onnx"
    p.write_bytes(m.SerializeToString())
    loaded = load_model(p)
    assert [n.name for n in loaded.graph.node] == [n.name for n in nodes]


def test_external_data(tmp_path: Path) -> None:
    m = tiny_cnn()
    # onnx.save_model moves the data out of the proto it is given: give it a copy.
    onnx.save_model(tiny_cnn(), tmp_path / "ext.onnx", save_as_external_data=True, location="ext.bin",
                    size_threshold=0)
    assert (tmp_path / "ext.bin").exists()
    loaded = load_model(tmp_path / "ext.onnx")
    assert all(t.data_location == TensorProto.DEFAULT for t in loaded.graph.initializer)
    assert loaded == m


def _record_checks_and_parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What load_model asks of onnx, in order: "check file", "check proto" or "parse"."""
    calls: list[str] = []
    check, parse = onnx.checker.check_model, load_mod._parse_mapped

    def checking(model, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append("check proto" if isinstance(model, onnx.ModelProto) else "check file")
        return check(model, *args, **kwargs)

    def parsing(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append("parse")
        return parse(*args, **kwargs)

    monkeypatch.setattr(onnx.checker, "check_model", checking)
    monkeypatch.setattr(load_mod, "_parse_mapped", parsing)
    return calls


def test_one_file_model_is_checked_once_before_it_is_parsed(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # The checker's own copy of the model is freed before the parsed model is built, which then reuses that
    # memory; the file it checked is the model parsed, so it is not checked again.
    model = tiny_cnn()
    save_model(model, tmp_path / "m.onnx")
    calls = _record_checks_and_parses(monkeypatch)
    assert load_model(tmp_path / "m.onnx") == model
    assert calls == ["check file", "parse"]


def test_model_with_external_data_read_in_is_checked_with_its_data(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    onnx.save_model(tiny_cnn(), tmp_path / "ext.onnx", save_as_external_data=True, location="ext.bin",
                    size_threshold=0)
    calls = _record_checks_and_parses(monkeypatch)
    load_model(tmp_path / "ext.onnx")
    assert calls == ["check file", "parse", "check proto"]


def test_missing_external_data(tmp_path: Path) -> None:
    onnx.save_model(tiny_cnn(), tmp_path / "ext.onnx", save_as_external_data=True, location="ext.bin",
                    size_threshold=0)
    (tmp_path / "ext.bin").unlink()
    _expect_user_error(tmp_path / "ext.onnx", "external data")


def test_text_format(tmp_path: Path) -> None:
    m = conv_bn_relu_chain()
    onnx.save_model(m, tmp_path / "m.textproto")
    assert load_model(tmp_path / "m.textproto") == m


def test_save_is_byte_identical(tmp_path: Path) -> None:
    save_model(tiny_cnn(), tmp_path / "a.onnx")
    save_model(tiny_cnn(), tmp_path / "b.onnx")
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_save_leaves_no_temp_files(tmp_path: Path) -> None:
    save_model(tiny_cnn(), tmp_path / "sub" / "m.onnx")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["m.onnx"]


def _fail(*args: object) -> None:
    raise OSError(28, "No space left on device")


def test_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load_mod.os, "fsync", _fail)
    with pytest.raises(UserError, match="No space left"):
        save_model(tiny_cnn(), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "m.onnx"
    save_model(conv_bn_relu_chain(), dest)
    before = dest.read_bytes()
    monkeypatch.setattr(load_mod.os, "replace", _fail)
    with pytest.raises(UserError, match="m.onnx"):
        save_model(tiny_cnn(), dest)
    assert dest.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_large_model_goes_to_external_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend 1 KB is "large" to exercise the external-data path without writing gigabytes.
    monkeypatch.setattr(load_mod, "LARGE_MODEL_BYTES", 1024)
    m = tiny_cnn()
    snapshot = m.SerializeToString()
    save_model(m, tmp_path / "big.onnx")
    assert m.SerializeToString() == snapshot, "save_model must leave its argument unchanged"
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and names[0] == "big.onnx" and re.fullmatch(r"big\.onnx\.[0-9a-f]{16}\.data", names[1])
    assert (tmp_path / "big.onnx").stat().st_size < len(snapshot)
    first = [(tmp_path / n).read_bytes() for n in names]
    save_model(m, tmp_path / "big.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    assert [(tmp_path / n).read_bytes() for n in names] == first
    loaded = load_model(tmp_path / "big.onnx")
    for a, b in zip(m.graph.initializer, loaded.graph.initializer):
        np.testing.assert_array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))


def test_large_model_restores_non_raw_tensors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load_mod, "LARGE_MODEL_BYTES", 16)
    m = conv_bn_relu_chain()
    # A tensor stored in float_data rather than raw_data must come back exactly as it was.
    values = np.arange(400, dtype=np.float32)
    m.graph.initializer.append(helper.make_tensor("extra", TensorProto.FLOAT, [400], values.tolist()))
    snapshot = m.SerializeToString()
    save_model(m, tmp_path / "m.onnx")
    assert m.SerializeToString() == snapshot
    loaded = load_model(tmp_path / "m.onnx")
    extra = next(t for t in loaded.graph.initializer if t.name == "extra")
    np.testing.assert_array_equal(numpy_helper.to_array(extra), values)


def test_saved_file_mode_follows_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        save_model(tiny_cnn(), tmp_path / "m.onnx")
    finally:
        os.umask(old)
    assert (tmp_path / "m.onnx").stat().st_mode & 0o777 == 0o644


def _with_big_weight(scale: float = 1.0) -> onnx.ModelProto:
    model = tiny_cnn()
    model.graph.initializer.append(numpy_helper.from_array(np.arange(2000, dtype=np.float32) * scale, "big"))
    return model


def test_model_digest_follows_weights_and_structure_without_serializing_the_weights(
        monkeypatch: pytest.MonkeyPatch) -> None:
    same, again, scaled, renamed = _with_big_weight(), _with_big_weight(), _with_big_weight(2.0), _with_big_weight()
    renamed.graph.node[0].name = "renamed"
    small = tiny_cnn()
    # The same values in float_data rather than raw_data (another encoding), and one of them changed.
    values = np.arange(2000, dtype=np.float32)
    as_floats, changed = _with_floats(values), _with_floats(values)
    changed.graph.initializer[-1].float_data[7] = -1.0
    # The digest is taken tensor by tensor, never of the whole message with its big weights.
    monkeypatch.setattr(onnx.ModelProto, "SerializeToString", _refuse_whole_model, raising=False)
    digest = model_digest(same)
    assert digest == model_digest(again) and digest != model_digest(small)
    assert model_digest(scaled) != digest  # a changed big weight
    assert model_digest(renamed) != digest  # a changed structure
    assert model_digest(as_floats) == model_digest(as_floats) != digest
    assert model_digest(changed) != model_digest(as_floats)  # a changed value in a typed field


def _with_floats(values: np.ndarray) -> onnx.ModelProto:
    """``_with_big_weight`` with its big weight's values in float_data rather than raw_data."""
    model = _with_big_weight()
    big = model.graph.initializer[-1]
    big.ClearField("raw_data")
    big.float_data.extend(values.tolist())
    return model


def _refuse_whole_model(self: onnx.ModelProto, **_: object) -> bytes:
    if any(len(t.raw_data) > 1024 for t in self.graph.initializer):
        raise ValueError("a model with its big weights was serialized whole")
    return onnx.ModelProto.SerializePartialToString(self)
