"""Command-line conventions: --version, python -m rewriter, diagnostics options anywhere, logging on stderr,
progress labels per pass, the spec table, a light `specs list`, and file modes from the umask."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import models
from rewriter.cli import main
from rewriter.ir.load import save_model
from rewriter.spec.loader import load_spec, resolve_target

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "tiny_cnn.onnx"
CALIB = ROOT / "examples" / "calib"


def _python(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
                          check=False)


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"rewriter {version('rewriter')}\n"


def test_python_dash_m_runs_the_command_line() -> None:
    done = _python("-m", "rewriter", "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"rewriter {version('rewriter')}\n"


@pytest.mark.parametrize("form", ["json", "table"])
def test_the_command_ends_after_an_audit_with_all_of_its_output(form: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    # The command exits right after the audit is written, without freeing the plan (console_main): what it
    # prints, to a pipe and to a file, and its exit code are those of main called in-process.
    model = tmp_path / "m.onnx"
    save_model(models.conv_bn_relu_chain(), model)
    assert main(["audit", str(model), "--format", form]) == 0
    expected = capsys.readouterr().out
    assert len(expected) > 1000  # enough to sit in a buffer that a hasty exit would lose
    printed = _python("-m", "rewriter", "audit", str(model), "--format", form)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == expected
    written = _python("-m", "rewriter", "audit", str(model), "--format", form, "-o", str(tmp_path / "out"))
    assert written.returncode == 0, written.stderr
    assert (tmp_path / "out").read_text() == expected
    # A refused input still exits as usual, with its code.
    refused = _python("-m", "rewriter", "audit", str(tmp_path / "missing.onnx"))
    assert refused.returncode == 2 and "missing.onnx" in refused.stderr


def test_main_in_process_keeps_nothing_until_exit(tmp_path: Path) -> None:
    import rewriter.cli

    model = tmp_path / "m.onnx"
    save_model(models.conv_bn_relu_chain(), model)
    assert main(["audit", str(model), "-o", str(tmp_path / "out.txt")]) == 0
    assert rewriter.cli._kept_until_exit is None  # a program that calls main goes on; its plans are freed


@pytest.mark.parametrize("argv", [["--debug", "specs", "list"], ["specs", "--debug", "list"],
                                  ["specs", "list", "--debug"]])
def test_debug_is_accepted_before_or_after_the_subcommand(argv: list[str], monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import rewriter.spec.loader

    def broken() -> list:
        raise RuntimeError("a bug")

    monkeypatch.setattr(rewriter.spec.loader, "list_targets", broken)
    monkeypatch.delenv("REWRITER_DEBUG", raising=False)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "internal error: RuntimeError: a bug" in err


def test_without_debug_an_internal_error_says_to_add_it(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import rewriter.spec.loader

    monkeypatch.setattr(rewriter.spec.loader, "list_targets", lambda: 1 / 0)
    monkeypatch.delenv("REWRITER_DEBUG", raising=False)
    assert main(["specs", "list"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "rerun with --debug" in err


def _quantize(tmp_path: Path, *extra: str) -> list[str]:
    return ["quantize", str(EXAMPLE), "--data", str(CALIB), "--subset-size", "4", "--quiet", "--no-self-check",
            "-o", str(tmp_path / "out.onnx"), *extra]


def test_verbose_logs_stage_timings_on_stderr_and_nothing_without_it(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_quantize(tmp_path)) == 0
    quiet = capsys.readouterr()
    assert quiet.err == "" and quiet.out.startswith("wrote ")
    assert main(_quantize(tmp_path, "-v")) == 0
    verbose = capsys.readouterr()
    assert verbose.out == quiet.out  # the summary line does not change
    lines = verbose.err.splitlines()
    assert any(line.startswith("info: calibration: 4 sample(s) of ") for line in lines), lines
    assert any(line.startswith("info: statistics: ") and line.endswith(" s") for line in lines), lines
    assert not any(line.startswith("debug: ") for line in lines)
    assert main(["--log-level", "debug", *_quantize(tmp_path)]) == 0
    assert any(line.startswith("debug: target ORT: spec ") for line in capsys.readouterr().err.splitlines())


def test_verbose_audit_logs_loading_and_planning(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(EXAMPLE), "--target", "CPU", "-v", "--format", "json"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["info", "info"], lines
    assert lines[0].startswith(f"info: target CPU and {EXAMPLE} (") and lines[1].startswith("info: plan: ")


def test_log_level_error_silences_warnings_which_stay_one_line_by_default(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    calib = tmp_path / "calib"
    calib.mkdir()
    for f in CALIB.iterdir():
        (calib / f.name).write_bytes(f.read_bytes())
    (calib / "notes.txt").write_text("not a sample")
    argv = ["quantize", str(EXAMPLE), "--data", str(calib), "--subset-size", "2", "--quiet", "--no-self-check",
            "-o", str(tmp_path / "out.onnx")]
    assert main(argv) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"warning: {calib}: ignoring 1 file(s) that are not .npy, .npz or images (notes.txt)"]
    assert main([*argv, "--log-level", "ERROR"]) == 0
    assert capsys.readouterr().err == ""


class _FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("bias_correction", ["fast", "full"])
def test_progress_line_names_the_pass_it_counts_for(monkeypatch: pytest.MonkeyPatch, bias_correction: str) -> None:
    from rewriter.options import QuantizeOptions
    from rewriter.pipeline import quantize

    model = models.depthwise_after_conv()  # one Conv pair that channel alignment takes
    screen = _FakeTTY()
    monkeypatch.setattr(sys, "stderr", screen)
    quantize(model, models.random_inputs(model, 4), QuantizeOptions(
        subset_size=4, channel_alignment=True, bias_correction=bias_correction, layerwise_tuning=True,
        progress=True, self_check=False))
    lines = [line.rsplit("\r", 1)[-1] for line in screen.getvalue().split("\n") if line]
    drawn = [line.split("  ")[0] for line in lines]
    assert drawn == ["statistics: channel alignment", "statistics: ranges, bias correction",
                     f"bias correction ({bias_correction})",
                     "layer-wise tuning"], lines
    assert all(" samples  " in line for line in lines[:2]) and all(" layer runs  " in line for line in lines[2:])


def test_specs_show_table_names_each_config_once_and_every_op_type(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["specs", "show", "CPU", "--format", "table"]) == 0
    lines = capsys.readouterr().out.splitlines()
    spec = load_spec(resolve_target("CPU"))
    assert len(lines) < 100  # the JSON form is over 800
    rows = {line.split()[0]: line.split() for line in lines if line and not line.startswith(" ")}
    assert set(spec.ops) <= set(rows)
    assert rows["Conv"][1:3] == ["q8_a", "q8_w_sym,q8_w_asym"]
    assert [line.split()[0] for line in lines if line].count("q8_a") == 1  # the config row, not repeated
    assert "agnostic" in " ".join(rows["MaxPool"])


def test_specs_list_does_not_import_onnx() -> None:
    done = _python("-c", "import sys\n"
                         "from rewriter.cli import main\n"
                         "code = main(['specs', 'list'])\n"
                         "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxruntime')))\n"
                         "sys.exit(code)")
    assert done.returncode == 0, done.stderr
    assert "CPU " in done.stdout and done.stdout.splitlines()[-1] == "[]"


def test_every_output_file_takes_its_mode_from_the_umask(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    old = os.umask(0o027)
    try:
        assert main(_quantize(tmp_path, "--report", str(tmp_path / "r.json"))) == 0
        assert main(["audit", str(EXAMPLE), "-o", str(tmp_path / "a.txt")]) == 0
        assert main(["audit", str(EXAMPLE), "--format", "json", "-o", str(tmp_path / "a.json")]) == 0
        save_model(models.tiny_cnn(), tmp_path / "m.onnx")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes and set(modes.values()) == {0o640}, modes
