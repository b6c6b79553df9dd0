"""The latency of a model in onnxruntime on this machine: what a speed-driven search compares.

One session on one thread (so the figure does not depend on how many cores other work leaves free), the
samples run once to warm up, then ``repeats`` timed passes over them; the median pass per sample, in
milliseconds. The caller must not time while other trials load the cores (``rewriter.search.tpe`` times
serially, after the accuracy trials).
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Mapping, Sequence

import onnx

from rewriter.calibrate.session import open_session, session_options

__all__ = ["latency_ms"]


def latency_ms(model: onnx.ModelProto, samples: Sequence[Mapping[str, Any]], repeats: int = 5) -> float:
    """Median milliseconds per sample of ``model`` on ``samples`` (module docstring)."""
    if not samples:
        raise ValueError("latency needs at least one sample")
    session = open_session(model, session_options(intra_op_threads=1))
    feeds = [dict(s) for s in samples]
    for feed in feeds:
        session.run(None, feed)
    passes = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        for feed in feeds:
            session.run(None, feed)
        passes.append((time.perf_counter() - start) / len(feeds))
    return statistics.median(passes) * 1000.0
