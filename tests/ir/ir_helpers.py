"""Helpers for the IR tests: run a model with onnxruntime, compare two models' outputs."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from models import random_inputs


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Outputs of ``model`` with onnxruntime's graph optimizations off (so it computes what the graph says)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def max_relative_diff(before: onnx.ModelProto, after: onnx.ModelProto, n: int = 3,
                      seed: int = 0) -> tuple[float, float]:
    """(max abs diff, output scale) over ``n`` random feeds; scale is the largest |output| of ``before``."""
    diff, scale = 0.0, 0.0
    for feeds in random_inputs(before, n, seed):
        for a, b in zip(run(before, feeds), run(after, feeds)):
            assert a.shape == b.shape and a.dtype == b.dtype
            diff = max(diff, float(np.max(np.abs(a.astype(np.float64) - b))))
            scale = max(scale, float(np.max(np.abs(a))))
    return diff, scale
