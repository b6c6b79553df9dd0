"""The user's accuracy metric: ``FUNCTION(model_path) -> float`` or ``(float, per-sample floats)``.

Given as ``path/to/file.py:FUNCTION`` or ``module:function`` (``--metric``), or as any callable of that
shape (the API). The function loads its own annotated data; higher is better unless the metric is
declared lower-is-better. Every call is a *trial* with a label (``the float model``, ``the quantized
model (...)``, ``trial 5 (reverted: conv1, conv2)``): when the function raises or returns something
that is not a finite number, the run stops with a ``UserError`` naming the metric, the trial and what it returned.
"""
from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any

from rewriter.calibrate.loaders import LOADER_PATTERN, import_loader
from rewriter.calibrate.messages import short_message
from rewriter.errors import UserError
from rewriter.ir.load import save_model

__all__ = ["Metric", "MetricValue", "load_metric"]


@dataclass(frozen=True)
class MetricValue:
    """One evaluation: the value, the per-sample values when the function gave them, and its wall time."""

    value: float
    per_sample: tuple[float, ...] | None = None
    seconds: float = 0.0


def load_metric(text: str) -> Callable[[str], Any]:
    """The function named by ``FILE.py:FUNCTION`` or ``module:function``.

    Raises:
        UserError: not of that form, the file or module is missing or fails to import, no such function.
    """
    match = LOADER_PATTERN.match(text)
    if match is None:
        raise UserError(f"--metric {text!r}: write it as path/to/file.py:FUNCTION or module:function, "
                        "FUNCTION(model_path) returning a float")
    return import_loader(match["module"], match["function"], "metric")


class Metric:
    """A metric function with its direction; ``evaluate`` checks every value it returns.

    Args:
        function: ``function(model_path) -> float | (float, list of per-sample floats)``.
        name: how messages name it (the ``--metric`` text, or the callable's name).
        lower_is_better: the metric is an error (a loss, a word error rate): lower values are better.
    """

    def __init__(self, function: Callable[[str], Any], name: str | None = None, lower_is_better: bool = False) -> None:
        if not callable(function):
            raise UserError(f"the metric must be a function of a model path, got {type(function).__name__}")
        self.function = function
        self.name = name or getattr(function, "__qualname__", None) or repr(function)
        self.lower_is_better = lower_is_better
        self.calls = 0
        # The "FILE.py:FUNCTION" text when the function was loaded from it: how another process loads it.
        self.spec: str | None = name if name is not None and LOADER_PATTERN.match(name) and \
            getattr(function, "__name__", None) == name.rsplit(":", 1)[-1] else None

    def oriented(self, value: float) -> float:
        """``value`` with higher always better (the searches maximise this)."""
        return -value if self.lower_is_better else value

    def evaluate_file(self, path: str | Path, trial: str) -> MetricValue:
        """The metric of the model file at ``path``; ``trial`` names this evaluation in error messages.

        Raises:
            UserError: the function raised, or returned NaN, an infinity or something not a number.
        """
        self.calls += 1
        start = time.perf_counter()
        try:
            result = self.function(str(path))
        except Exception as error:  # noqa: BLE001 - the user's function failed: their error, named as theirs
            raise UserError(f"the metric {self.name} raised {type(error).__name__} on {trial}: "
                            f"{short_message(error)}") from error
        seconds = time.perf_counter() - start
        return self._checked(result, trial, seconds)

    def evaluate(self, model: Any, trial: str) -> MetricValue:
        """The metric of ``model`` (an onnx.ModelProto), written to a temporary file for the function."""
        with tempfile.TemporaryDirectory(prefix="rewriter-metric-") as folder:
            path = Path(folder) / "model.onnx"
            save_model(model, path)
            return self.evaluate_file(path, trial)

    def _checked(self, result: Any, trial: str, seconds: float) -> MetricValue:
        per_sample: tuple[float, ...] | None = None
        if isinstance(result, (tuple, list)) and len(result) == 2 and _is_list(result[1]):
            result, samples = result
            per_sample = tuple(self._number(item, trial, f"per-sample value {i}") for i, item in enumerate(samples))
        return MetricValue(self._number(result, trial, "value"), per_sample, seconds)

    def _number(self, value: Any, trial: str, what: str) -> float:
        # numpy scalars (float32, int64, 0-d arrays) count: an accuracy is often np.mean(...).
        if hasattr(value, "ndim") and getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, Real):
            raise UserError(f"the metric {self.name} returned {_shown(value)} as its {what} on {trial}; "
                            "it must return a float, or a pair (float, list of per-sample floats)")
        number = float(value)
        if not math.isfinite(number):
            raise UserError(f"the metric {self.name} returned {number} as its {what} on {trial}; "
                            "it must be a finite number")
        return number


def _is_list(value: Any) -> bool:
    """A list of per-sample values: a list, tuple or 1-d array (not a string)."""
    return isinstance(value, (list, tuple)) or getattr(value, "ndim", None) == 1


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"
