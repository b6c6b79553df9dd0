"""A model with external data is replaced as a whole: never an old model paired with new data, no orphans.

The data file is named after its content and the model's rename is the one commit point, so a
run killed anywhere leaves either the old output or the new one, each with its own weights; the
next save removes what the killed run left (temporaries, a data file no model refers to).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from onnx import numpy_helper

import rewriter.ir.load as load_mod
from models import tiny_cnn
from rewriter.io_utils import remove_stale_temporaries
from rewriter.ir.load import load_model, save_model

ROOT = Path(__file__).resolve().parents[2]
DATA_NAME = re.compile(r"out\.onnx\.[0-9a-f]{16}\.data")


def _weights(model) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _scaled(factor: float):
    model = tiny_cnn()
    for t in model.graph.initializer:
        array = numpy_helper.to_array(t)
        if array.dtype == np.float32:
            t.CopyFrom(numpy_helper.from_array(array * np.float32(factor), t.name))
    return model


def _data_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".data"))


def _referenced(model_path: Path) -> set[str]:
    import onnx

    model = onnx.load(os.fspath(model_path), load_external_data=False)
    return {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}


def test_a_new_save_replaces_the_old_data_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load_mod, "LARGE_MODEL_BYTES", 1024)
    dest = tmp_path / "out.onnx"
    save_model(_scaled(1.0), dest)
    first = _data_files(tmp_path)
    save_model(_scaled(2.0), dest)
    second = _data_files(tmp_path)
    assert len(first) == len(second) == 1 and first != second, "the data file is named after its content"
    assert set(second) == _referenced(dest)
    for name, value in _weights(load_model(dest)).items():
        np.testing.assert_array_equal(value, _weights(_scaled(2.0))[name])


def test_a_small_save_removes_the_data_file_of_a_large_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load_mod, "LARGE_MODEL_BYTES", 1024)
    dest = tmp_path / "out.onnx"
    save_model(_scaled(1.0), dest)
    monkeypatch.setattr(load_mod, "LARGE_MODEL_BYTES", 1 << 40)
    save_model(_scaled(2.0), dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.onnx"]


def test_data_files_of_other_outputs_are_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load_mod, "LARGE_MODEL_BYTES", 1024)
    save_model(_scaled(1.0), tmp_path / "a.onnx")
    save_model(_scaled(2.0), tmp_path / "b.onnx")
    save_model(_scaled(3.0), tmp_path / "a.onnx")
    for name, value in _weights(load_model(tmp_path / "b.onnx")).items():
        np.testing.assert_array_equal(value, _weights(_scaled(2.0))[name])
    assert len(_data_files(tmp_path)) == 2


_KILLER = textwrap.dedent("""
    import os, signal, sys
    import rewriter.ir.load as load
    load.LARGE_MODEL_BYTES = 1024
    source, dest, point = sys.argv[1:4]
    real_replace = os.replace

    def replace(src, dst):
        kind = "data" if os.fspath(dst).endswith(".data") else "model"
        if point == "before-" + kind:
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)
        if point == "after-" + kind:
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace
    load.save_model(load.load_model(source), dest)
""")


@pytest.mark.parametrize("point", ["before-data", "after-data", "before-model", "after-model"])
def test_sigkill_during_a_save_never_pairs_a_model_with_other_weights(tmp_path: Path, point: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load_mod, "LARGE_MODEL_BYTES", 1024)
    out = tmp_path / "out"
    dest = out / "out.onnx"
    old, new = _scaled(1.0), _scaled(2.0)
    save_model(old, dest)
    source = tmp_path / "new.onnx"
    save_model(new, source)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    killed = subprocess.run([sys.executable, "-c", _KILLER, str(source), str(dest), point], env=env,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    leftovers = sorted(p.name for p in out.iterdir())
    if point == "before-data":
        assert any(n.endswith(".tmp") for n in leftovers), leftovers  # the killed run's temporaries

    expected = _weights(new if point == "after-model" else old)
    for name, value in _weights(load_model(dest)).items():
        np.testing.assert_array_equal(value, expected[name], err_msg=f"{point}: {name}")

    # The next run cleans up after the killed one.
    save_model(_scaled(3.0), dest)
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.endswith(".tmp")], names
    assert set(_data_files(out)) == _referenced(dest) and all(DATA_NAME.fullmatch(n) for n in _data_files(out))
    for name, value in _weights(load_model(dest)).items():
        np.testing.assert_array_equal(value, _weights(_scaled(3.0))[name])


def test_temporaries_of_a_live_process_are_kept(tmp_path: Path) -> None:
    dest = tmp_path / "out.onnx"
    mine = tmp_path / f".out.onnx.{os.getpid()}.0123456789ab.tmp"
    gone_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout.strip()
    stale = tmp_path / f".out.onnx.{gone_pid}.0123456789ab.tmp"
    unrelated = tmp_path / f".other.onnx.{gone_pid}.0123456789ab.tmp"
    for p in (mine, stale, unrelated):
        p.write_bytes(b"x")
    assert remove_stale_temporaries(dest) == [stale]
    assert mine.exists() and unrelated.exists() and not stale.exists()
