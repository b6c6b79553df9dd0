"""The user's metric: how it is named, and a clear error (exit 2, no output written) for each way it fails."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from rewriter.cli import main
from rewriter.errors import UserError
from rewriter.search.metric import Metric, load_metric

METRICS = Path(__file__).resolve().parent / "metric_functions.py"


def _quantize(paths: dict[str, Path], out: Path, metric: str, *extra: str) -> int:
    return main(["quantize", str(paths["model"]), "-o", str(out), "--data", str(paths["data"]), "--target",
                 str(paths["target"]), "--subset-size", "16", "--quiet", "--accuracy-aware", "--metric", metric,
                 *extra])


def test_a_file_function_and_a_module_function_load() -> None:
    assert load_metric(f"{METRICS}:error_rate").__name__ == "error_rate"
    assert load_metric("math:fabs") is math.fabs


@pytest.mark.parametrize(("text", "expected"), [
    ("no_such_dir/metric.py:accuracy", "no such file no_such_dir/metric.py"),
    (f"{METRICS}:accuracy", "the module has no 'accuracy'"),
    (f"{METRICS}:NOT_A_FUNCTION", "'NOT_A_FUNCTION' is not a function"),
    ("metric.py", "write it as path/to/file.py:FUNCTION or module:function"),
])
def test_a_missing_file_or_function_is_named(text: str, expected: str) -> None:
    with pytest.raises(UserError, match="metric") as raised:
        load_metric(text)
    assert expected in str(raised.value)


def test_cli_missing_metric_file_exits_2_before_any_work(damaged_block, tmp_path: Path, capsys) -> None:
    out = tmp_path / "q.onnx"
    assert _quantize(damaged_block, out, str(tmp_path / "absent.py") + ":accuracy") == 2
    err = capsys.readouterr().err
    assert "error: metric" in err and "absent.py" in err and "no such file" in err and "Traceback" not in err
    assert not out.exists()


def test_cli_missing_function_suggests_the_close_name(damaged_block, tmp_path: Path, capsys) -> None:
    assert _quantize(damaged_block, tmp_path / "q.onnx", f"{METRICS}:agreemnt") == 2
    assert "has no 'agreemnt'; did you mean 'agreement'?" in capsys.readouterr().err


def test_cli_a_metric_that_raises_shows_its_message_and_the_trial(damaged_block, tmp_path: Path, capsys) -> None:
    out = tmp_path / "q.onnx"
    assert _quantize(damaged_block, out, f"{METRICS}:raises_on_quantized") == 2
    err = capsys.readouterr().err
    assert "raised ValueError on the quantized model (DefaultQuantization, preset performance)" in err
    assert "labels file has 23 rows, expected 24" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize(("function", "expected"), [
    ("returns_nan", "returned nan as its value on the float model; it must be a finite number"),
    ("returns_text", "returned str '0.93' as its value on the float model; it must return a float"),
    ("returns_nan_per_sample", "returned nan as its per-sample value 1 on the float model"),
])
def test_cli_nan_or_not_a_number_exits_2(damaged_block, tmp_path: Path, capsys, function: str, expected: str) -> None:
    assert _quantize(damaged_block, tmp_path / "q.onnx", f"{METRICS}:{function}") == 2
    assert expected in capsys.readouterr().err


def test_values_are_checked_and_oriented() -> None:
    def constant(value):
        return Metric(lambda path: value, "m")

    assert constant(np.float32(0.5)).evaluate_file("x", "t").value == 0.5
    assert constant((0.75, np.array([0.5, 1.0]))).evaluate_file("x", "t").per_sample == (0.5, 1.0)
    for bad in (True, None, [0.5], math.inf, (0.5, ["a"])):
        with pytest.raises(UserError, match="on trial 3"):
            constant(bad).evaluate_file("x", "trial 3")
    lower = Metric(lambda path: 0.2, "loss", lower_is_better=True)
    assert lower.oriented(0.2) == -0.2 and lower.oriented(lower.oriented(0.2)) == 0.2


def test_the_metric_is_needed_and_only_with_a_search(damaged_block, tmp_path: Path, capsys) -> None:
    base = ["quantize", str(damaged_block["model"]), "-o", str(tmp_path / "q.onnx"), "--data",
            str(damaged_block["data"]), "--quiet"]
    assert main([*base, "--accuracy-aware"]) == 2
    assert "--accuracy-aware needs --metric" in capsys.readouterr().err
    assert main([*base, "--metric", f"{METRICS}:agreement"]) == 2
    assert "add --accuracy-aware" in capsys.readouterr().err
    assert main([*base, "--max-drop", "0.1"]) == 2
    assert "--max-drop set(s) the accuracy-aware search" in capsys.readouterr().err
