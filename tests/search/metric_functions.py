"""Metric functions the search tests name as ``tests/search/metric_functions.py:FUNCTION``.

The task: the float model's arg-max over its last axis is the label of each of 24 fixed inputs (drawn like
the damaged LayerNorm block's data: tokens whose scales differ by 1000x); the float model is the file
named by the environment variable ``REWRITER_TEST_FLOAT_MODEL``. Every function loads its own data, as a
user's metric does.
"""
from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort

_rng = np.random.default_rng(1)
INPUTS = [(_rng.standard_normal((1, 8, 16)) * 10.0 ** _rng.uniform(-2, 1, (1, 8, 1))).astype(np.float32)
          for _ in range(24)]
_labels: dict[str, np.ndarray] = {}


def _outputs(path: str) -> np.ndarray:
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return np.stack([session.run(None, {"input": x})[0] for x in INPUTS])


def _per_sample(path: str) -> np.ndarray:
    reference = os.environ["REWRITER_TEST_FLOAT_MODEL"]
    if reference not in _labels:
        _labels[reference] = _outputs(reference).argmax(-1)
    return (_outputs(path).argmax(-1) == _labels[reference]).mean(axis=(1, 2))


def agreement(path: str) -> tuple[float, list[float]]:
    """Share of tokens whose label the model keeps, with the per-sample shares."""
    per_sample = _per_sample(path)
    return float(per_sample.mean()), per_sample.tolist()


def error_rate(path: str) -> float:
    """Lower is better: the share of tokens whose label the model changes."""
    return float(1.0 - _per_sample(path).mean())


def raises_on_quantized(path: str) -> float:
    if os.path.samefile(path, os.environ["REWRITER_TEST_FLOAT_MODEL"]):
        return 1.0
    raise ValueError("labels file has 23 rows, expected 24")


def returns_nan(path: str) -> float:
    return float("nan")


def returns_text(path: str) -> str:
    return "0.93"


def returns_nan_per_sample(path: str) -> tuple[float, list[float]]:
    return 0.5, [0.5, float("nan")]


NOT_A_FUNCTION = 3
