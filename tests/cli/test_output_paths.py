"""Output paths: only a regular file or a new path is written, checked before any work starts."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

import models
from rewriter import io_utils
from rewriter.cli import main
from rewriter.errors import UserError
from rewriter.io_utils import check_output_path
from rewriter.ir.load import save_model

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "tiny_cnn.onnx"
CALIB = ROOT / "examples" / "calib"


def quantize(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str]:
    code = main(["quantize", str(EXAMPLE), "--data", str(CALIB), "--subset-size", "4", "--quiet",
                 *map(str, argv)])
    return code, capsys.readouterr().err


def test_a_named_pipe_is_refused_and_left_in_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    code, err = quantize(capsys, "-o", pipe)
    assert code == 2
    assert f"-o {pipe}: is a named pipe, not a regular file" in err
    assert stat.S_ISFIFO(pipe.lstat().st_mode)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="creating a device node needs root")
def test_a_character_device_is_refused_and_left_in_place(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # A private copy of /dev/null (same device numbers): a broken check must not replace the real one.
    device = tmp_path / "null"
    os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    code, err = quantize(capsys, "-o", device)
    assert code == 2
    assert f"-o {device}: is a character device" in err
    assert stat.S_ISCHR(device.lstat().st_mode)


def test_a_folder_is_refused_before_calibration(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import rewriter.pipeline

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("quantize ran although -o was refused")

    monkeypatch.setattr(rewriter.pipeline, "quantize", never)
    code, err = quantize(capsys, "-o", tmp_path)
    assert code == 2
    assert f"-o {tmp_path}: is a folder" in err


def test_a_symlink_is_refused_unless_followed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target, link = tmp_path / "real.onnx", tmp_path / "link.onnx"
    link.symlink_to(target.name)
    code, err = quantize(capsys, "-o", link)
    assert code == 2
    assert f"-o {link}: is a symbolic link (to real.onnx)" in err and "--follow-symlinks" in err
    assert link.is_symlink() and not target.exists()

    code, err = quantize(capsys, "-o", link, "--follow-symlinks")
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == "real.onnx"
    assert target.is_file() and not target.is_symlink() and target.stat().st_size > 0


def test_report_equal_to_output_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.onnx"
    code, err = quantize(capsys, "-o", out, "--report", out)
    assert code == 2
    assert f"--report {out}: is the same file as -o" in err
    assert not out.exists()


def test_report_equal_to_the_input_model_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "in.onnx"
    model.write_bytes(EXAMPLE.read_bytes())
    code = main(["quantize", str(model), "--data", str(CALIB), "--subset-size", "4", "-o", str(tmp_path / "o.onnx"),
                 "--report", str(model)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"--report {model}: is the input model" in err
    assert model.read_bytes() == EXAMPLE.read_bytes()
    assert not (tmp_path / "o.onnx").exists()


def test_unwritable_report_exits_2_before_the_model_is_written(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    out = tmp_path / "m.onnx"
    code, err = quantize(capsys, "-o", out, "--report", blocker / "report.json")
    assert code == 2
    assert f"--report {blocker / 'report.json'}" in err
    assert not out.exists()


def test_folder_without_write_permission_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Permission bits do not stop root, so the answer of os.access stands in for a read-only folder.
    monkeypatch.setattr(io_utils.os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(UserError, match=f"cannot create files in {tmp_path} \\(no write permission\\)"):
        check_output_path(tmp_path / "m.onnx", "-o")


def test_audit_output_is_checked_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    assert main(["audit", str(EXAMPLE), "-o", str(pipe)]) == 2
    assert "is a named pipe" in capsys.readouterr().err
    model = tmp_path / "in.onnx"
    model.write_bytes(EXAMPLE.read_bytes())
    assert main(["audit", str(model), "-o", str(model)]) == 2
    assert f"-o {model}: is the input model" in capsys.readouterr().err
    assert model.read_bytes() == EXAMPLE.read_bytes()


def test_save_model_refuses_a_symlink(tmp_path: Path) -> None:
    link = tmp_path / "link.onnx"
    link.symlink_to("elsewhere.onnx")
    with pytest.raises(UserError, match="is a symbolic link"):
        save_model(models.tiny_cnn(), link)
    assert link.is_symlink()


def test_model_and_report_get_the_same_mode_from_the_umask(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    old = os.umask(0o022)
    try:
        code, err = quantize(capsys, "-o", tmp_path / "m.onnx", "--report", tmp_path / "r.json")
    finally:
        os.umask(old)
    assert code == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["summary"]
    assert [(tmp_path / n).stat().st_mode & 0o777 for n in ("m.onnx", "r.json")] == [0o644, 0o644]
