"""Deterministic timings for the speed guard in tests.

One function prices a pair of models, ``(float_model, quantized_model, feeds, runs, threads) ->
(RunProfile, RunProfile)``, and stands for both of the guard's measurements (``PairTimer``): the per-node
profile of the first model it times and the whole runs of every model. The fake timer gives no
quantized outputs, so the guard's final fidelity check runs the model itself, as it does for a model it did
not time; with ``float_outputs`` its first call gives the float model's outputs on the feeds, run in
onnxruntime as the real timer's float session gives them.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import pytest

from rewriter.emit.runtime_profile import RunProfile, TimedPair

Pair = Callable[..., tuple[RunProfile, RunProfile]]


def install(monkeypatch: pytest.MonkeyPatch, pair: Pair, float_outputs: bool = False) -> None:
    import rewriter.tuning.speed_guard as speed_guard
    from rewriter.emit.runtime_check import ModelRunner

    class Timer:
        def __init__(self, float_model: Any, feeds: Sequence[Mapping[str, Any]], threads: int = 1) -> None:
            self.float_model, self.feeds, self.threads = float_model, list(feeds), threads
            self.calls = 0

        def time(self, quantized_model: Any, runs: int, profile_runs: int = 0) -> TimedPair:
            float_profile, quantized_profile = pair(self.float_model, quantized_model, self.feeds, runs, self.threads)
            profiles = (float_profile, quantized_profile) if profile_runs else None
            self.calls += 1
            given = (tuple(ModelRunner(self.float_model, "onnxruntime", "the timer's float model").run(self.feeds))
                     if float_outputs and self.calls == 1 else ())
            return TimedPair(float_profile, quantized_profile, (), profiles, given)

    monkeypatch.setattr(speed_guard, "PairTimer", Timer)
