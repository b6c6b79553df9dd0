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

from rewriter.emit.runtime_profile import NoIntegerKernel, RunProfile, TimedPair

Pair = Callable[..., tuple[RunProfile, RunProfile]]


def install(monkeypatch: pytest.MonkeyPatch, pair: Pair, float_outputs: bool = False, warm_ups: bool = False) -> None:
    import rewriter.tuning.speed_guard as speed_guard
    from rewriter.emit.runtime_check import ModelRunner

    class Timer:
        def __init__(self, float_model: Any, feeds: Sequence[Mapping[str, Any]], threads: int = 1) -> None:
            self.float_model, self.feeds, self.threads = float_model, list(feeds), threads
            self.calls = 0

        def time(self, quantized_model: Any, runs: int, profile_runs: int = 0,
                 require_integer_kernels: bool = False, profile_if: Any = None,
                 clear_margin: float | None = None) -> TimedPair:
            # The kernel count a real timer takes from its quantized session: speed_guard.integer_kernels
            # (which tests replace) stands for it.
            if require_integer_kernels and speed_guard.integer_kernels(quantized_model) == 0:
                raise NoIntegerKernel("no integer kernel (fake timer)")
            float_profile, quantized_profile = pair(self.float_model, quantized_model, self.feeds, runs, self.threads)
            # The warm-up runs a real timer would give ``profile_if``: the priced run times (asked only with
            # ``warm_ups``: other tests freeze the guard's clock so that its budget never runs out).
            if warm_ups and profile_runs and profile_if is not None and not profile_if(
                    float_profile.total_us / 1e6, quantized_profile.total_us / 1e6):
                profile_runs = 0
            profiles = (float_profile, quantized_profile) if profile_runs else None
            self.calls += 1
            given = (tuple(ModelRunner(self.float_model, "onnxruntime", "the timer's float model").run(self.feeds))
                     if float_outputs and self.calls == 1 else ())
            return TimedPair(float_profile, quantized_profile, (), profiles, given)

    monkeypatch.setattr(speed_guard, "PairTimer", Timer)


def priced(costs: dict[str, float]) -> Pair:
    """A profiler: every node of a model costs 100 us (Q/DQ nodes 0), a node named in ``costs`` costs that
    when it reads a DequantizeLinear (it runs quantized); float and quantized are profiled alike."""
    def profile(model: Any) -> RunProfile:
        dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        nodes = {}
        for node in model.graph.node:
            if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
                nodes[node.name] = 0.0
            elif node.name in costs and any(i in dequantized for i in node.input):
                nodes[node.name] = costs[node.name]
            else:
                nodes[node.name] = 100.0
        return RunProfile(sum(nodes.values()), nodes, 9)

    def measure_pair_fake(float_model: Any, quantized_model: Any, feeds: Any, runs: int,
                          threads: int = 1) -> tuple[RunProfile, RunProfile]:
        return profile(float_model), profile(quantized_model)
    return measure_pair_fake


def steady_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock that never moves: the guard's time budget never runs out, whatever the machine's load."""
    import rewriter.tuning.speed_guard as speed_guard

    class Frozen:
        @staticmethod
        def perf_counter() -> float:
            return 0.0
    monkeypatch.setattr(speed_guard, "time", Frozen)
