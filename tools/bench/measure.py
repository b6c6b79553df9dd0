"""Measurements of the benchmark: child processes (wall time, peak RSS), model files, latency, the floor.

Used by tools/bench/run.py. Needs numpy, onnx and onnxruntime (the project's
own dependencies), so it runs in the project venv as well as in the bench venv.

- ``run_child(cmd)``: run one command in its own process; wall time and the
  child's peak resident set size (``ru_maxrss`` from ``os.wait4``). Linux
  starts a child's ru_maxrss from its parent's high-water mark (kept across
  fork and exec), so this is the child's peak only while the parent is the
  smaller; run.py prefers the VmHWM a quantizer's process (peers.py) and the
  floor's (``main`` below) report of themselves.
- ``file_facts(path)``: file size, QuantizeLinear/DequantizeLinear node counts,
  and the integer kernels onnxruntime really runs
  (``rewriter.emit.ort_check.fused_counts``).
- ``latency(models, feeds, threads)``: onnxruntime latency at batch 1,
  ORT_ENABLE_ALL, sequential execution; the models are timed in interleaved
  rounds so that a slow spell of a shared machine hits all of them alike.
- ``floor_pass(model, sample_paths)``: one plain float onnxruntime pass over the
  calibration samples, read from disk one at a time (what a quantizer's
  statistics pass cannot beat). ``python measure.py floor ...`` runs it in a
  child process.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from metrics import load_sample  # noqa: E402

MB = 1024.0 * 1024.0


# ----------------------------------------------------------------------------- child processes

def rss_mb(pid: str | int = "self", key: str = "VmRSS") -> float | None:
    """A /proc/<pid>/status memory line (VmRSS, VmHWM) in MB, or None where /proc is missing."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def run_child(cmd: Sequence[str], timeout_s: float, env: Mapping[str, str] | None = None,
              cwd: os.PathLike | None = None, log_path: os.PathLike | None = None) -> dict:
    """Run ``cmd`` in its own process; return wall time, exit status and peak RSS of that process.

    stdout and stderr go to ``log_path`` (or are dropped); the last lines are
    returned as ``log_tail``. A child still running after ``timeout_s`` is
    killed (its process group, which it leads) and reported as timed out.
    """
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, env=dict(env) if env else None,
                                cwd=cwd, start_new_session=True)
        timed_out = False
        hwm = 0.0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            # Backup for systems where ru_maxrss is not kept: poll the child's high-water mark.
            hwm = max(hwm, rss_mb(proc.pid, "VmHWM") or 0.0)
            if time.perf_counter() - start > timeout_s:
                timed_out = True
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if log_path:
            log.close()
    wall = time.perf_counter() - start
    peak = max(usage.ru_maxrss / 1024.0, hwm)  # ru_maxrss is in KiB on Linux
    return {
        "returncode": proc.returncode,
        "timed_out": timed_out,
        "wall_s": round(wall, 3),
        "peak_rss_mb": round(peak, 1),
        "log_tail": _tail(log_path) if log_path else "",
    }


def _tail(path: os.PathLike, lines: int = 25) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# ----------------------------------------------------------------------------- model files

def _all_nodes(graph) -> list:
    out = []
    for node in graph.node:
        out.append(node)
        for attr in node.attribute:
            if attr.g is not None and attr.g.node:
                out.extend(_all_nodes(attr.g))
            for g in attr.graphs:
                out.extend(_all_nodes(g))
    return out


def file_facts(path: os.PathLike) -> dict:
    """Size on disk, Q/DQ node counts in the file, and what onnxruntime fuses them into."""
    import onnx

    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    ops = Counter(n.op_type for n in _all_nodes(model.graph))
    facts = {
        "file_bytes": path.stat().st_size + sum(p.stat().st_size for p in _external_files(model, path)),
        "quantize_linear": ops.get("QuantizeLinear", 0),
        "dequantize_linear": ops.get("DequantizeLinear", 0),
        "fake_quantize": ops.get("FakeQuantize", 0),
        # What the constants take, apart from graph structure and per-node metadata (which dominate the file
        # of a tiny model): the size quantization is meant to shrink.
        "weight_bytes": _initializer_bytes(model, path),
    }
    facts.update(integer_kernels(path))
    return facts


def _initializer_bytes(model, path: Path) -> int:
    total = 0
    for t in model.graph.initializer:
        if t.data_location == t.EXTERNAL:
            total += int(next((e.value for e in t.external_data if e.key == "length"), 0) or 0)
        else:
            total += t.ByteSize()
    return total


def _external_files(model, path: Path) -> list[Path]:
    files = set()
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                files.add(path.parent / entry.value)
    return sorted(p for p in files if p.is_file())


def integer_kernels(path: os.PathLike) -> dict:
    """Integer kernels in onnxruntime's optimized graph, and the Q/DQ nodes it leaves unfused."""
    try:
        from rewriter.emit.ort_check import INTEGER_OPS, fused_counts
    except ImportError as error:  # the harness still measures the rest without our package
        return {"integer_kernels_error": f"rewriter not importable: {error}"}
    try:
        counts = fused_counts(str(path))
    except Exception as error:  # noqa: BLE001 - a model onnxruntime refuses is a result, not a crash
        return {"integer_kernels_error": f"{type(error).__name__}: {error}"}
    kernels = {op: counts[op] for op in INTEGER_OPS if counts.get(op)}
    return {
        "integer_kernels": kernels,
        "integer_kernels_total": sum(kernels.values()),
        "unfused_quantize_linear": counts.get("QuantizeLinear", 0),
        "unfused_dequantize_linear": counts.get("DequantizeLinear", 0),
    }


# ----------------------------------------------------------------------------- latency

def session(path: os.PathLike, threads: int):
    """An onnxruntime CPU session as the benchmark times it: ORT_ENABLE_ALL, sequential, ``threads`` intra-op."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def latency(models: Mapping[str, os.PathLike], feeds: Mapping[str, np.ndarray], threads: int,
            runs: int = 30, warmup: int = 5, rounds: int = 3) -> dict[str, dict]:
    """Median latency (ms) per model at batch 1; ``runs`` timed runs each, split over interleaved rounds.

    A model that fails to load or run gets {"error": ...} instead of numbers.
    """
    sessions, result = {}, {}
    for label, path in models.items():
        try:
            sess = session(path, threads)
            for _ in range(warmup):
                sess.run(None, dict(feeds))
            sessions[label] = sess
        except Exception as error:  # noqa: BLE001
            result[label] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
    times: dict[str, list[float]] = {label: [] for label in sessions}
    per_round = max(1, -(-runs // rounds))
    for _ in range(rounds):
        for label, sess in sessions.items():
            for _ in range(per_round):
                t0 = time.perf_counter()
                sess.run(None, dict(feeds))
                times[label].append((time.perf_counter() - t0) * 1000.0)
    for label, values in times.items():
        values.sort()
        result[label] = {
            "median_ms": round(statistics.median(values), 3),
            "p10_ms": round(float(np.percentile(values, 10)), 3),
            "p90_ms": round(float(np.percentile(values, 90)), 3),
            "runs": len(values),
            "warmup": warmup,
        }
    return result


# ----------------------------------------------------------------------------- the floor

def floor_pass(model: os.PathLike, paths: Sequence[os.PathLike], threads: int = 0) -> dict:
    """One plain float inference pass over ``paths`` (npz samples read one by one), default threads.

    The session is created before the clock starts; its creation time is
    returned apart as ``session_s``.
    """
    import onnxruntime as ort

    t0 = time.perf_counter()
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    t1 = time.perf_counter()
    for p in paths:
        sess.run(None, load_sample(p))
    t2 = time.perf_counter()
    return {"floor_s": round(t2 - t1, 4), "session_s": round(t1 - t0, 4), "samples": len(paths),
            "threads": threads or "default"}


# ----------------------------------------------------------------------------- machine

def machine_info() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                # Without VNNI, onnxruntime's uint8 x int8 kernels add products in saturating int16.
                flags = set(line.split(":", 1)[1].split())
                info["cpu_isa"] = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
                                   if f in flags]
            if "cpu" in info and "cpu_isa" in info:
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    try:
        import importlib.metadata as md
        for pkg in ("onnx", "onnxruntime", "numpy", "nncf", "torch", "rewriter"):
            try:
                info[pkg] = md.version(pkg)
            except md.PackageNotFoundError:
                info[pkg] = "not installed"
    except ImportError:
        pass
    return info


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="benchmark measurements run in a child process")
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("floor", help="one float onnxruntime pass over the samples listed in a file")
    f.add_argument("model")
    f.add_argument("sample_list", help="a text file, one .npz path a line")
    f.add_argument("out_json")
    f.add_argument("--threads", type=int, default=0)
    a = ap.parse_args(argv)
    paths = [p for p in Path(a.sample_list).read_text().splitlines() if p]
    res = floor_pass(a.model, paths, a.threads)
    res["rss_mb"] = rss_mb()
    # This process's own peak: the parent's view of it (ru_maxrss) starts from the parent's peak.
    res["vm_hwm_mb"] = rss_mb(key="VmHWM")
    Path(a.out_json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
