"""How long onnxruntime takes to run a model, and each of its nodes, measured beside the float model.

The speed guard (``rewriter.tuning.speed_guard``) asks whether the quantized model is faster than the float
one, and which quantized groups cost more than they save. Both answers come from onnxruntime's own per-node
profiler (``SessionOptions.enable_profiling``) with the session options a user would take: the default
graph optimizations, and a given intra-op thread count (0: onnxruntime's default).

Two measurements serve the guard. ``measure_pair`` profiles both models for the per-node times that say
which quantized groups cost more than they save (a few runs: onnxruntime's profiler slows every node a
little, and reading its trace costs about as much as the runs). ``PairTimer`` times whole runs without
the profiler, the float model's session opened once for all the models it is compared with, and keeps the
quantized model's outputs on the samples so that the same runs also check its fidelity.

A shared machine is noisy, so the two models are run in turns (float, quantized, quantized, float, ...)
after one warm-up run each; a node's time is its median over the runs, the whole run's the lower quartile.
onnxruntime names the nodes it runs after its own fusions: a fused kernel keeps the name of one of the
nodes it replaced with a suffix (``conv0_token_2`` for a QLinearConv, ``relu0_nchwc`` for a Conv+Relu in
the blocked layout), and layout
changes it adds have names of their own (``Transpose``, ``ReorderInput``); a Conv fused with what follows
in the blocked layout takes the name of the tensor it writes (``relu_0.tmp_0_nchwc``). ``profiled_node``
maps a profiled name back to a node of the model, when there is one.
"""
from __future__ import annotations

import json
import os
import platform
import re
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort

from rewriter.calibrate.session import open_session
from rewriter.emit.ort_check import OPTIMIZED_GRAPH_FILE, integer_kernel_count, save_optimized_graph
from rewriter.emit.runtime_check import refused

__all__ = ["CLEAR_AFTER_ROUNDS", "NoIntegerKernel", "PairTimer", "RunProfile", "TimedPair", "clearly_apart",
           "machine_fingerprint", "measure_pair", "profiled_node", "qdq_readers"]

_SUFFIX = re.compile(r"(_token_\d+|_nchwc|_kernel_time)$")
_QDQ = ("QuantizeLinear", "DequantizeLinear")


def machine_fingerprint() -> dict[str, str]:
    """What makes timings on this machine comparable to another run's: the CPU (model and feature flags, as
    Linux lists them in /proc/cpuinfo, else the platform's processor name), the cores the process may use,
    and onnxruntime's version and build (its execution providers)."""
    model, flags = platform.processor(), ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                if name.strip() == "model name":
                    model = value.strip()
                elif name.strip() in ("flags", "Features") and not flags:
                    flags = " ".join(sorted(value.split()))
                if line.strip() == "":  # the first processor's block is enough
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)
    return {"machine": platform.machine(), "cpu": model, "cpu_flags": flags, "cores": str(cores),
            "onnxruntime": ort.__version__, "providers": ",".join(ort.get_available_providers())}


@dataclass(frozen=True)
class RunProfile:
    """One model's times over its profiled runs (microseconds): the whole run (lower quartile) and each profiled
    node (median)."""

    total_us: float
    nodes: Mapping[str, float]  # onnxruntime's node name -> median time per run (0 in runs without it)
    runs: int


def measure_pair(float_model: onnx.ModelProto, quantized_model: onnx.ModelProto,
                 feeds: Sequence[Mapping[str, np.ndarray]], runs: int,
                 threads: int = 1) -> tuple[RunProfile, RunProfile]:
    """Profile both models in turns, ``runs`` timed runs each after a warm-up; (float, quantized).

    Args:
        feeds: the inputs, taken in turn (the same one for both models in a round).
        runs: timed runs per model (at least 1).
        threads: onnxruntime's intra-op threads; 0 for its default (all cores).
    """
    if runs < 1 or not feeds:
        raise ValueError("measure_pair needs at least one run and one feed")
    # The timer's profiled rounds are these; its one plain timed round after them is not used.
    profiles = PairTimer(float_model, feeds, threads).time(quantized_model, runs=1, profile_runs=runs).profiles
    assert profiles is not None
    return profiles


class NoIntegerKernel(Exception):
    """The quantized model would run no integer kernel in onnxruntime (``PairTimer.time``): not timed."""


@dataclass(frozen=True)
class TimedPair:
    """Whole runs of both models timed in turns without the profiler (``RunProfile.nodes`` empty), the
    quantized model's outputs on the feeds in order (one mapping per feed it ran, at most one per feed), and
    the per-node profiles (float, quantized) when they were asked for. ``float_outputs``: the float model's
    outputs on the feeds in order, from the call that opened its session (empty on later calls)."""

    float: RunProfile
    quantized: RunProfile
    outputs: tuple[Mapping[str, np.ndarray], ...]
    profiles: tuple[RunProfile, RunProfile] | None = None
    float_outputs: tuple[Mapping[str, np.ndarray], ...] = ()


class PairTimer:
    """Times models against one float model at one thread count, in turns.

    The float model's session is opened on the first call and kept for the next ones: a guard compares
    several re-emitted models with the same float model. The first call may also profile both models per
    node: their sessions are opened with onnxruntime's profiler, which runs ``profile_runs`` rounds and is
    then ended, so that the timed runs after it, in the same sessions, run as fast as without it (the
    profiler slows each node by a few microseconds: a model of many small nodes, 3 to 4 times).
    """

    def __init__(self, float_model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]],
                 threads: int = 1) -> None:
        if not feeds:
            raise ValueError("PairTimer needs at least one feed")
        self.feeds = [dict(f) for f in feeds]
        self.threads = threads
        self._float_model: onnx.ModelProto | None = float_model
        self._float_session: ort.InferenceSession | None = None

    def time(self, quantized_model: onnx.ModelProto, runs: int, profile_runs: int = 0,
             require_integer_kernels: bool = False,
             profile_if: Callable[[float, float], bool] | None = None,
             clear_margin: float | None = None) -> TimedPair:
        """``runs`` timed runs of each model after a warm-up each, in turns; the quantized outputs of the first
        round over the feeds (the warm-up gives the first feed's). With ``profile_runs`` (only on the first
        call), that many profiled runs of each come first, between the warm-up and the timed runs, unless
        ``profile_if``, given the warm-up runs' seconds (float, quantized), says no: the profiler is then
        ended before any profiled run (its sessions are opened with it on, and it cannot be started later).
        With ``require_integer_kernels``, the quantized session saves the graph it runs and nothing is run if
        it has no integer kernel (the count costs no session of its own). With ``clear_margin``, the timed
        runs stop early once the outcome is clear (``clearly_apart``): every run of one model more than that
        share faster than every run of the other, after ``CLEAR_AFTER_ROUNDS`` rounds.

        Raises:
            RuntimeRefused: onnxruntime cannot load ``quantized_model`` or run it on the first feed.
            NoIntegerKernel: asked for, and onnxruntime runs no integer kernel for ``quantized_model``.
        """
        if runs < 1:
            raise ValueError("PairTimer.time needs at least one run")
        profile = profile_runs > 0
        if profile and self._float_session is not None:
            raise ValueError("only the first call of a PairTimer can profile the float model")
        float_outputs: list[dict[str, np.ndarray]] = []
        float_names: list[str] = []
        warm_up: list[float] = []  # the warm-up runs' seconds: float (when its session opens here), quantized
        with tempfile.TemporaryDirectory(prefix="rewriter-profile-") as tmp:
            quantized: ort.InferenceSession | None = None
            if require_integer_kernels:
                # The quantized session first: without an integer kernel, the float session is not needed.
                # (Only when asked: otherwise the float session opens first, as its load's memory peak is
                # then not on top of the quantized session, which matters for a model of gigabytes.)
                quantized = self._quantized_session(quantized_model, Path(tmp), profile, count_kernels=True)
            if self._float_session is None:
                assert self._float_model is not None
                prefix = Path(tmp) / "float" if profile else None
                self._float_session = _session(self._float_model, self.threads, prefix)
                self._float_model = None  # the session holds what it needs
                float_names = [o.name for o in self._float_session.get_outputs()]
                began = time.perf_counter()
                float_outputs.append(dict(zip(float_names, self._float_session.run(None, self.feeds[0]))))
                warm_up = [time.perf_counter() - began]
            if quantized is None:
                quantized = self._quantized_session(quantized_model, Path(tmp), profile, count_kernels=False)
            try:
                names = [o.name for o in quantized.get_outputs()]
                began = time.perf_counter()
                outputs: list[dict[str, np.ndarray]] = [dict(zip(names, quantized.run(None, self.feeds[0])))]
                warm_up.append(time.perf_counter() - began)
            except Exception as e:  # onnxruntime's errors have no common public base class
                raise refused("onnxruntime cannot run the model to time", e) from None
            sessions = (self._float_session, quantized)
            profiles = None
            if profile and profile_if is not None and not profile_if(warm_up[0], warm_up[-1]):
                for session in sessions:
                    session.end_profiling()
                profile = False
            if profile:
                for i in range(profile_runs):
                    for which in ((0, 1) if i % 2 == 0 else (1, 0)):
                        sessions[which].run(None, self.feeds[i % len(self.feeds)])
                # The float session's profile holds its warm-up run too: ``_read_profile`` drops the first.
                float_file, quantized_file = (s.end_profiling() for s in sessions)
                profiles = (_read_profile(Path(float_file)), _read_profile(Path(quantized_file)))
            times: tuple[list[float], list[float]] = ([], [])
            clock = time.perf_counter
            for i in range(runs):
                feed = self.feeds[i % len(self.feeds)]
                for which in ((0, 1) if i % 2 == 0 else (1, 0)):
                    began = clock()
                    result = sessions[which].run(None, feed)
                    times[which].append(clock() - began)
                    if which == 1 and i == len(outputs) and i < len(self.feeds):
                        outputs.append(dict(zip(names, result)))
                    elif which == 0 and float_outputs and i == len(float_outputs) and i < len(self.feeds):
                        float_outputs.append(dict(zip(float_names, result)))
                if clear_margin is not None and clearly_apart(times[0], times[1], clear_margin):
                    break
        return TimedPair(_timed(times[0]), _timed(times[1]), tuple(outputs), profiles, tuple(float_outputs))

    def _quantized_session(self, model: onnx.ModelProto, tmp: Path, profile: bool,
                           count_kernels: bool) -> ort.InferenceSession:
        """The quantized model's session (profiled when asked); with ``count_kernels``, NoIntegerKernel if
        onnxruntime runs no integer kernel for it (from the graph the session saves as it opens)."""
        optimized = tmp / "optimized" if count_kernels else None
        try:
            session = _session(model, self.threads, tmp / "quantized" if profile else None, optimized)
        except Exception as e:  # onnxruntime's errors have no common public base class
            raise refused("onnxruntime cannot run the model to time", e) from None
        if optimized is not None and integer_kernel_count(
                onnx.load(str(optimized / OPTIMIZED_GRAPH_FILE), load_external_data=False)) == 0:
            raise NoIntegerKernel("onnxruntime runs no integer kernel for the quantized model")
        return session


#: Rounds timed before a timing may stop early because its outcome is clear.
CLEAR_AFTER_ROUNDS = 3


def clearly_apart(first: Sequence[float], second: Sequence[float], margin: float) -> bool:
    """Whether, after at least ``CLEAR_AFTER_ROUNDS`` runs of each, every run of one model is more than
    ``margin`` (a share) faster than every run of the other: more runs would not change which is faster by
    more than the margin, only tighten how much (a model three times slower than float, say, is reverted
    whatever its exact ratio). A stall of the machine during any run keeps the two apart-unclear, and the
    timing goes on."""
    if min(len(first), len(second)) < CLEAR_AFTER_ROUNDS:
        return False
    return max(first) * (1 + margin) < min(second) or max(second) * (1 + margin) < min(first)


def _timed(seconds: list[float]) -> RunProfile:
    """The lower quartile of the run times, as for a profile (``_read_profile``)."""
    ordered = sorted(seconds)
    return RunProfile(ordered[(len(ordered) - 1) // 4] * 1e6, {}, len(ordered))


def _session(model: onnx.ModelProto, threads: int, profile_prefix: Path | None,
             optimized_folder: Path | None = None) -> ort.InferenceSession:
    """A session with the options a user would take (default graph optimizations) and ``threads`` intra-op
    threads; with a prefix, onnxruntime's profiler on, writing there; with a folder, the graph it runs saved
    there (``save_optimized_graph``)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    if optimized_folder is not None:
        optimized_folder.mkdir()
        save_optimized_graph(options, optimized_folder)
    return open_session(model, options)


def _read_profile(path: Path) -> RunProfile:
    """Medians of the runs after the warm-up: the whole run, and each node (summed within a run)."""
    events = json.loads(path.read_text())
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                  if e.get("cat") == "Session" and e.get("name") == "model_run")[1:]
    per_run: list[dict[str, float]] = [{} for _ in runs]
    starts = [start for start, _ in runs]
    for event in events:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        index = _run_of(starts, runs, event["ts"])
        if index is not None:
            name = event["name"][:-len("_kernel_time")]
            per_run[index][name] = per_run[index].get(name, 0.0) + float(event["dur"])
    names = sorted({n for run in per_run for n in run})
    nodes = {n: statistics.median(run.get(n, 0.0) for run in per_run) for n in names}
    # The whole run: the lower quartile, not the median. Another job taking the core slows some runs by
    # several times on a shared machine; the quicker runs are the ones that measure the model.
    totals = sorted(end - start for start, end in runs)
    total = totals[(len(totals) - 1) // 4] if totals else 0.0
    return RunProfile(float(total), nodes, len(runs))


def _run_of(starts: list[float], runs: list[tuple[float, float]], ts: float) -> int | None:
    """The index of the run whose time span holds ``ts`` (runs are sorted, never overlapping)."""
    lo, hi = 0, len(starts)
    while lo < hi:
        mid = (lo + hi) // 2
        if starts[mid] <= ts:
            lo = mid + 1
        else:
            hi = mid
    index = lo - 1
    return index if index >= 0 and ts <= runs[index][1] else None


def profiled_node(name: str, known: Mapping[str, str]) -> str | None:
    """The model node a profiled name stands for, or None for a node onnxruntime added (a layout Transpose,
    a reorder). ``known`` maps node names, and the names of the tensors they write, to node names:
    onnxruntime names a fused node after one of the nodes it replaced or after the tensor it writes, with
    suffixes of its own, which are stripped until a known name is left."""
    while True:
        if name in known:
            return known[name]
        stripped = _SUFFIX.sub("", name)
        if stripped == name:
            return None
        name = stripped


def qdq_readers(model: onnx.ModelProto) -> dict[str, tuple[str, ...]]:
    """Each QuantizeLinear/DequantizeLinear node -> the other nodes that read the values it carries.

    A DequantizeLinear's readers are its consumers; a QuantizeLinear's are the readers of the
    DequantizeLinear nodes after it (or its consumers, when an integer op reads it directly).
    """
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for tensor in node.input:
            consumers.setdefault(tensor, []).append(node)

    def readers(node: onnx.NodeProto, depth: int = 0) -> list[str]:
        found: list[str] = []
        for out in node.output:
            for reader in consumers.get(out, []):
                if reader.op_type in _QDQ and depth < 2:
                    found.extend(readers(reader, depth + 1))
                elif reader.op_type not in _QDQ:
                    found.append(reader.name)
        return found

    return {n.name: tuple(dict.fromkeys(readers(n))) for n in model.graph.node if n.op_type in _QDQ}
