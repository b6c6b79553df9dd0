"""Benchmark: `rewriter audit` end to end (load, normalize, plan, write the JSON) on synthetic graphs.

The graph is a chain of conv/residual blocks and transformer attention blocks
(with a LayerNorm written as elementary ops). Each size is written once as an
.onnx file (kept in --workdir), then audited by the command line in a fresh
process that reports its own wall time and peak RSS; the table ends with the
growth between consecutive sizes. The bars (issue 15, 2-core machine): 100,000
nodes under 5 s, 1,000,000 under 50 s, at most 11x from 100k to 1M, peak RSS
growing linearly.

    python tools/bench_match.py [--sizes 10000 100000 1000000] [--target CPU] [--workdir DIR]
    python tools/bench_match.py --planner-only [--sizes ...]   # matching and planning alone, in memory
    python tools/bench_match.py --stages [--sizes ...] [--workdir DIR]   # CPU seconds of each audit stage
    python tools/bench_match.py --against OLD [--rounds 3] [--sizes 100000]   # in turns with another revision
    python tools/bench_match.py --floor [--rounds 3] [--sizes 100000 1000000]   # growth against a linear floor
    python tools/bench_match.py --bars ISSUE_CODE [--rounds 3]   # the bars, against the issue's code in turns
    python tools/bench_match.py --instructions [--against OLD] [--sizes 10000 100000]   # instructions (valgrind)
    python tools/bench_match.py --instructions --stages [--sizes 10000 100000]   # instructions of each stage
        (with --against, the other revision's package runs this revision's stage script: it needs its APIs)
    python tools/bench_match.py [--stages] --models FILE...   # model files instead (tools/export_decoder.py)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple, Sequence, cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from rewriter.ir.graph import GraphView, NodeInfo, TensorInfo  # noqa: E402

# Conv channels of the ONNX models: small, so that a million-node model stays a few hundred MB of weights.
ONNX_CHANNELS = 8

# onnx's own checker and shape inference, timed wherever the audit calls them (user and system seconds
# apart): the part of the audit's time spent in the library (its C++ passes, and for inference the model
# serialized for it and its answer parsed back), apart from the package's own. Shared by the children below.
_LIBRARY_TIMING = """
import resource
import onnx.checker, onnx.shape_inference
library_user = {"onnx checker": 0.0, "onnx inference": 0.0}
library_system = dict.fromkeys(library_user, 0.0)
calls = dict.fromkeys(library_user, 0)
def _library_timed(name, run):
    def call(*args, **kwargs):
        calls[name] += 1
        start = resource.getrusage(resource.RUSAGE_SELF)
        try:
            return run(*args, **kwargs)
        finally:
            end = resource.getrusage(resource.RUSAGE_SELF)
            library_user[name] += end.ru_utime - start.ru_utime
            library_system[name] += end.ru_stime - start.ru_stime
    return call
onnx.checker.check_model = _library_timed("onnx checker", onnx.checker.check_model)
onnx.shape_inference.infer_shapes = _library_timed("onnx inference", onnx.shape_inference.infer_shapes)
"""

# The child's own peak RSS in kB: its high-water mark from /proc (this process's memory since its exec), not
# ru_maxrss, which Linux carries over from the parent across fork and exec (a parent grown large by writing a
# big model would hide the child's peak). ru_maxrss where /proc is missing.
_PEAK_RSS = """
def peak_rss_kb():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
"""

# Runs in the child: the command line's own main, then this process's peak RSS (kB), CPU seconds,
# user seconds, the CPU and user seconds of onnx's passes within them, and how often the less called of the
# two was called, on stderr. CPU time is the figure
# to compare on a shared machine, where wall time depends on load.
_CHILD = (_LIBRARY_TIMING + _PEAK_RSS
          + "import os, sys\n"
          "import rewriter.cli\n"
          "from rewriter.cli import main\n"
          # As the `rewriter` command runs it (console_main), where the revision has that: what the command
          # keeps until its process ends is not freed inside main.
          "if hasattr(rewriter.cli, '_kept_until_exit'):\n"
          "    rewriter.cli._kept_until_exit = []\n"
          "code = main(sys.argv[1:])\n"
          "usage = resource.getrusage(resource.RUSAGE_SELF)\n"
          "onnx_user = sum(library_user.values())\n"
          "print('usage', peak_rss_kb(), usage.ru_utime + usage.ru_stime, usage.ru_utime,\n"
          "      onnx_user + sum(library_system.values()), onnx_user, min(calls.values()), file=sys.stderr)\n"
          "sys.stdout.flush(); sys.stderr.flush()\n"
          # The process ends as the command's does: at once where the command keeps its plan to the end.
          "os._exit(code) if hasattr(rewriter.cli, '_kept_until_exit') else sys.exit(code)\n")


# Runs in the child for --stages: the audit's stages one by one (as rewriter.api's audit runs them), the CPU
# seconds of each printed as JSON, with the system part and the page faults apart: at a million nodes the
# system time of faulting in gigabytes of fresh memory is a cost of its own. Imports are timed too: they are
# part of every run of the command. Each stage ends with a call of os.getppid, which does nothing here: it is
# the mark at which --instructions --stages has callgrind write the counts so far (--dump-before).
_STAGES_CHILD = """
import functools, gc, io, json, os, resource, sys
def times():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime, usage.ru_minflt
start = times()
""" + _LIBRARY_TIMING + """
from pathlib import Path
from rewriter.api import plan_graph
from rewriter.ir.load import load_model
from rewriter.ir.normalize import normalize_taken
from rewriter.ir.view import graph_view
from rewriter.match.planner import PlanOptions
from rewriter.report.plan_report import write_plan_json
from rewriter.targets import load_plan_inputs
gc.disable()  # as the audit command runs
seconds, system, faults = {}, {}, {}
def record(name, start):
    end = times()
    seconds[name] = end[0] - start[0] + end[1] - start[1]
    system[name] = end[1] - start[1]
    faults[name] = end[2] - start[2]
    os.getppid()  # the end of a stage, for callgrind
record("imports", start)
def stage(name, run, *args):
    start = times()
    result = run(*args)
    record(name, start)
    return result
model, target = sys.argv[1], sys.argv[2]
inputs = stage("spec and rules", load_plan_inputs, target, (), None)
box = [stage("load", load_model, model)]
normalized = stage("normalize", normalize_taken, box)  # as the audit hands it over: no copy
# As the audit takes the view: normalize's node order on trust, where this revision's graph_view can (an older
# one, measured with --against, checks it).
if "in_order" in graph_view.__code__.co_varnames:
    graph = stage("graph view", functools.partial(graph_view, in_order=True), normalized.model, normalized.rows)
else:
    graph = stage("graph view", graph_view, normalized.model, normalized.rows)
del normalized  # as the audit lets it go
plan = stage("plan", plan_graph, graph, inputs, PlanOptions(), Path(model).name, None)
stage("JSON", write_plan_json, plan, io.StringIO())
library = {name: library_user[name] + library_system[name] for name in library_user}
print(json.dumps({"nodes": len(graph), **seconds, "system": system, "faults": faults, "library": library,
                  "library calls": calls}))
"""


# Runs in the child for --floor: the least any tool does with a model, a cost linear beyond doubt: parse it
# with onnx, index which node writes each value, and find the writer of every node input. On a machine
# where memory gets slower to touch as a process grows, a linear cost grows by more than the ratio of the
# sizes; this one's growth, measured beside the audit's, says by how much. Timed from the process's start,
# as the audit is (its imports included).
_FLOOR_CHILD = _PEAK_RSS + """
import gc, resource, sys
import onnx
gc.disable()
model = onnx.load(sys.argv[1])
rows = [(tuple(n.input), tuple(n.output)) for n in model.graph.node]
writer = {name: k for k, (_, outputs) in enumerate(rows) for name in outputs}
edges = sum(1 for inputs, _ in rows for name in inputs if name in writer)
usage = resource.getrusage(resource.RUSAGE_SELF)
print(len(rows), edges, peak_rss_kb(), usage.ru_utime + usage.ru_stime, usage.ru_utime)
"""


class _Builder:
    def __init__(self, channels: int = 16) -> None:
        self.channels = channels
        self.nodes: list[NodeInfo] = []
        self.tensors: dict[str, TensorInfo] = {}

    def const(self, name: str, shape: tuple[int, ...]) -> str:
        self.tensors[name] = TensorInfo(name, "float32", shape, is_constant=True)
        return name

    def op(self, op_type: str, inputs: list[str], shape: tuple[int, ...], attrs: dict | None = None) -> str:
        index = len(self.nodes)
        out = f"t{index}"
        self.tensors[out] = TensorInfo(out, "float32", shape)
        self.nodes.append(NodeInfo(f"{op_type.lower()}_{index}", op_type, tuple(inputs), (out,),
                                   attrs or {}, index=index))
        return out

    def conv_block(self, x: str) -> str:
        k, c = len(self.nodes), self.channels
        shape = (1, c, 8, 8)
        same = {"pads": [1, 1, 1, 1]}
        a = self.op("Conv", [x, self.const(f"w{k}a", (c, c, 3, 3)), self.const(f"b{k}a", (c,))], shape, same)
        a = self.op("Relu", [a], shape)
        b = self.op("Conv", [a, self.const(f"w{k}b", (c, c, 3, 3)), self.const(f"b{k}b", (c,))], shape, same)
        s = self.op("Add", [b, x], shape)
        s = self.op("Relu", [s], shape)
        p = self.op("MaxPool", [s], shape, {"kernel_shape": [1, 1]})
        cat = self.op("Concat", [p, s], (1, 2 * c, 8, 8), {"axis": 1})
        return self.op("Conv", [cat, self.const(f"w{k}c", (c, 2 * c, 1, 1))], shape)

    def attention_block(self, x: str) -> str:
        k = len(self.nodes)
        shape = (1, 8, 16)
        proj = {}
        for name in "qkv":
            m = self.op("MatMul", [x, self.const(f"w{k}{name}", (16, 16))], shape)
            proj[name] = self.op("Add", [m, self.const(f"b{k}{name}", (16,))], shape)
        kt = self.op("Transpose", [proj["k"]], (1, 16, 8), {"perm": [0, 2, 1]})
        scores = self.op("MatMul", [proj["q"], kt], (1, 8, 8))
        scores = self.op("Div", [scores, self.const(f"s{k}", ())], (1, 8, 8))
        probs = self.op("Softmax", [scores], (1, 8, 8), {"axis": -1})
        ctx = self.op("MatMul", [probs, proj["v"]], shape)
        res = self.op("Add", [ctx, x], shape)
        return self.layer_norm(res, shape, k)

    def layer_norm(self, x: str, shape: tuple[int, ...], k: int) -> str:
        mean = self.op("ReduceMean", [x], (1, 8, 1), {"axes": [-1]})
        d = self.op("Sub", [x, mean], shape)
        sq = self.op("Pow", [d, self.const(f"two{k}", ())], shape)
        var = self.op("ReduceMean", [sq], (1, 8, 1), {"axes": [-1]})
        eps = self.op("Add", [var, self.const(f"eps{k}", ())], (1, 8, 1))
        std = self.op("Sqrt", [eps], (1, 8, 1))
        y = self.op("Div", [d, std], shape)
        y = self.op("Mul", [y, self.const(f"g{k}", (16,))], shape)
        return self.op("Add", [y, self.const(f"beta{k}", (16,))], shape)


def _build(target_nodes: int, channels: int) -> tuple[_Builder, list[str]]:
    """Alternate conv and attention sections until the graph has ``target_nodes`` nodes."""
    b = _Builder(channels)
    b.tensors["image"] = TensorInfo("image", "float32", (1, channels, 8, 8), is_graph_input=True)
    b.tensors["tokens"] = TensorInfo("tokens", "float32", (1, 8, 16), is_graph_input=True)
    image, tokens = "image", "tokens"
    while len(b.nodes) < target_nodes:
        image = b.conv_block(image)
        tokens = b.attention_block(tokens)
    return b, [image, tokens]


def synthetic_graph(target_nodes: int) -> GraphView:
    """The synthetic graph as a GraphView (no ONNX, no normalization): what the planner alone sees."""
    b, _ = _build(target_nodes, 16)
    return GraphView(b.nodes, b.tensors, name=f"synthetic_{target_nodes}")


def synthetic_model(target_nodes: int) -> onnx.ModelProto:
    """The synthetic graph as an opset-17 ONNX model with small constant weights (onnxruntime runs it)."""
    b, outputs = _build(target_nodes, ONNX_CHANNELS)
    nodes = [helper.make_node(n.op_type, list(n.inputs), list(n.outputs), name=n.name, **n.attrs) for n in b.nodes]
    # The synthetic graph's constants all have static shapes (the builder gives them int dimensions only).
    inits = [numpy_helper.from_array(np.full(cast("tuple[int, ...]", t.shape), 2.0 if not t.shape else 0.01,
                                             np.float32), name)
             for name, t in b.tensors.items() if t.is_constant and t.shape is not None]

    def value(name: str) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(b.tensors[name].shape or ()))

    graph = helper.make_graph(nodes, f"synthetic_{target_nodes}", [value("image"), value("tokens")],
                              [value(t) for t in outputs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _model_file(size: int, workdir: Path) -> Path:
    path = workdir / f"synthetic_{size}.onnx"
    if not path.exists():
        start = time.perf_counter()
        model = synthetic_model(size)
        onnx.save(model, str(path))
        print(f"wrote {path} ({len(model.graph.node)} nodes, {path.stat().st_size / 1e6:.1f} MB) in "
              f"{time.perf_counter() - start:.1f} s", flush=True)
    return path


def _child_env(root: Path) -> dict[str, str]:
    """The environment of a child process that imports the package in ``root`` first."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}


class AuditRun(NamedTuple):
    """One audit in a fresh process, as its child measured it."""

    seconds: float  # wall
    cpu: float  # user and system
    rss_kb: int  # peak
    user: float
    onnx_cpu: float  # of ``cpu``, in onnx's checker and shape inference
    onnx_user: float  # of ``user``, in the same
    onnx_calls: int  # calls of the less called of the two (0: the code calls one some other way, untimed)


def audit_once(model: Path, output: Path, target: str, root: Path = ROOT) -> AuditRun:
    """One `rewriter audit --format json` in a fresh process, of the code in ``root`` (run from that folder, so
    its package is the one imported)."""
    env = _child_env(root)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _CHILD, "audit", str(model), "--target", target,
                           "--format", "json", "-o", str(output)], env=env, capture_output=True, text=True,
                          cwd=root)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"audit of {model} failed ({done.returncode}):\n{done.stderr}")
    usage = [line.split()[1:] for line in done.stderr.splitlines() if line.startswith("usage ")][-1]
    return AuditRun(seconds, float(usage[1]), int(usage[0]), float(usage[2]), float(usage[3]), float(usage[4]),
                    int(usage[5]))


def _model_path(item: int | Path, workdir: Path) -> Path:
    """A model file: the synthetic graph of ``item`` nodes (written to ``workdir`` once), or ``item`` itself."""
    return item if isinstance(item, Path) else _model_file(item, workdir)


def run_audits(sizes: Sequence[int | Path], target: str, workdir: Path) -> None:
    """The audit of each model (a size of the synthetic graph, or a model file) in a fresh process."""
    rows = []
    for item in sizes:
        model = _model_path(item, workdir)
        output = workdir / f"{model.stem}.plan.json"
        seconds, cpu, rss_kb = audit_once(model, output, target)[:3]
        with output.open() as f:
            nodes = json.load(f)["summary"]["nodes"]
        rows.append((nodes, seconds, cpu, rss_kb, output.stat().st_size))
        print(f"audited {nodes} nodes in {seconds:.2f} s", flush=True)
    print()
    print(f"{'nodes':>9}  {'wall s':>7}  {'CPU s':>7}  {'CPU us/node':>11}  {'peak RSS MB':>11}  {'kB/node':>7}  "
          f"{'JSON MB':>7}  {'wall x':>6}  {'CPU x':>6}  {'RSS x':>6}")
    previous = None
    for nodes, seconds, cpu, rss_kb, size in rows:
        growth = "" if previous is None else (f"{seconds / previous[1]:>6.2f}  {cpu / previous[2]:>6.2f}  "
                                              f"{rss_kb / previous[3]:>6.2f}")
        print(f"{nodes:>9}  {seconds:>7.2f}  {cpu:>7.2f}  {cpu / nodes * 1e6:>11.1f}  {rss_kb / 1024:>11.0f}  "
              f"{rss_kb / nodes:>7.2f}  {size / 1e6:>7.1f}  {growth}")
        previous = (nodes, seconds, cpu, rss_kb)
    print("x: growth over the previous row (a linear cost grows by the ratio of the node counts); wall time "
          f"depends on the machine's load (now {os.getloadavg()[0]:.2f}), CPU time much less")
    note = cache_note([(nodes, rss_kb) for nodes, _, _, rss_kb, _ in rows], _last_level_cache_bytes())
    if note:
        print(note)


_SIZE_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def _last_level_cache_bytes(cpu: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> int | None:
    """The size of the CPU's last-level cache as Linux reports it (a virtual machine reports its host's, which
    other guests share), or None where it does not say."""
    levels = []
    for index in cpu.glob("index*"):
        try:
            level, size = int((index / "level").read_text()), (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        if size[-1:] in _SIZE_UNITS and size[:-1].isdigit():
            levels.append((level, int(size[:-1]) * _SIZE_UNITS[size[-1]]))
        elif size.isdigit():
            levels.append((level, int(size)))
    return max(levels)[1] if levels else None


def cache_note(peaks: Sequence[tuple[int, int]], cache_bytes: int | None) -> str | None:
    """A warning for growth measured across the cache: ``peaks`` are (nodes, peak RSS in kB) of the audits
    compared. Where a smaller audit's whole memory fits in the last-level cache and a larger one's does not,
    the growth in seconds between them includes leaving the cache (on one machine, 100k nodes at 441 MB in a
    480 MB cache: 14.6x in CPU seconds for 10.0x the instructions), and says more about the machine than
    about the code."""
    if not cache_bytes:
        return None
    inside = [(nodes, kb) for nodes, kb in peaks if kb * 1024 <= cache_bytes]
    outside = [(nodes, kb) for nodes, kb in peaks if kb * 1024 > cache_bytes]
    if not inside or not outside or max(n for n, _ in inside) > min(n for n, _ in outside):
        return None
    nodes, kb = max(inside)
    return (f"note: the {nodes}-node audit's peak RSS ({kb / 1024:.0f} MB) fits in this machine's last-level "
            f"cache ({cache_bytes / 2**20:.0f} MB, shared with whatever else runs on the host), larger ones do "
            "not: their growth in seconds includes leaving the cache; --instructions counts the work alone")


def _median(values: list[float]) -> float:
    """The middle value (of an even count, the upper of the two middle ones)."""
    return sorted(values)[len(values) // 2]


def run_against(sizes: Sequence[int | Path], target: str, workdir: Path, other: Path, rounds: int) -> None:
    """This checkout's audit and ``other``'s (another revision's files, e.g. ``git archive REV | tar -x -C
    DIR``), run in turns on the same models, the order swapped every round: the ratio of their CPU seconds
    is what compares across machines, where seconds alone do not."""
    print(f"{'nodes':>9}  {'code':<5}  {'CPU s, each round':<40}  {'median':>7}  {'peak RSS MB':>11}  "
          f"{'JSON MB':>7}")
    for item in sizes:
        model = _model_path(item, workdir)
        runs: dict[str, list[tuple[float, int, int, float]]] = {"this": [], "other": []}
        for r in range(rounds):
            order = [("this", ROOT), ("other", other)]
            for name, root in order if r % 2 == 0 else reversed(order):
                output = workdir / f"{model.stem}.{name}.plan.json"
                run = audit_once(model, output, target, root)
                runs[name].append((run.cpu, run.rss_kb, output.stat().st_size, run.seconds))
        with (workdir / f"{model.stem}.this.plan.json").open() as f:
            nodes = json.load(f)["summary"]["nodes"]
        medians, walls = {}, {}
        for name, found in runs.items():
            medians[name] = _median([run[0] for run in found])
            walls[name] = _median([run[3] for run in found])
            print(f"{nodes:>9}  {name:<5}  {' / '.join(f'{run[0]:.2f}' for run in found):<40}  "
                  f"{medians[name]:>7.2f}  {max(run[1] for run in found) / 1024:>11.0f}  "
                  f"{found[-1][2] / 1e6:>7.1f}")
            # Wall seconds too: the figure a user waits for, where work runs beside the process (another
            # process of its own, say) that its CPU seconds would not show.
            wall = " / ".join(f"{run[3]:.2f}" for run in found)
            print(f"{'':>9}  {'':<5}  {wall:<40}  {walls[name]:>7.2f}  (wall s)")
        print(f"{nodes:>9}  other / this: {medians['other'] / medians['this']:.2f}x the CPU seconds, "
              f"{walls['other'] / walls['this']:.2f}x the wall seconds")
    print(f"other: {other}; load average now {os.getloadavg()[0]:.2f}")


# The bars of issue 15 as the issue measured them: its code audited the 100k-node graph in 22.6 s on its
# machine, and asked for 5 s at 100k and 50 s at 1M nodes on the same machine.
_ISSUE_SECONDS_100K = 22.6
_BAR_SECONDS = {100_000: 5.0, 1_000_000: 50.0}


def _size_name(nodes: int) -> str:
    if nodes % 1_000_000 == 0:
        return f"{nodes // 1_000_000}M"
    return f"{nodes // 1000}k" if nodes % 1000 == 0 else str(nodes)


def run_bars(issue_code: Path, target: str, workdir: Path, rounds: int) -> None:
    """The time bars judged on this machine: this code at 100k and 1M nodes and the issue's code (``issue_code``,
    e.g. ``git archive a6d68f3 | tar -x -C DIR``) at 100k, in turns, every round. Each bar is a ratio to the
    issue's code at 100k (5 / 22.6 and 50 / 22.6), so it holds on any machine as it held on the issue's, as
    long as the three run in the same hour: a shared machine's speed drifts by 10-30% within an hour, and one
    run's figure compared with another hour's is not a measurement."""
    small, large = sorted(_BAR_SECONDS)
    models = {size: _model_file(size, workdir) for size in (small, large)}
    names: dict[str | int, str] = {"issue": f"issue {_size_name(small)}", small: f"this {_size_name(small)}",
                                   large: f"this {_size_name(large)}"}
    runs: dict[str, list[AuditRun]] = {name: [] for name in names.values()}
    order = [(names["issue"], issue_code, small), (names[small], ROOT, small), (names[large], ROOT, large)]
    for r in range(rounds):
        for name, root, size in order if r % 2 == 0 else reversed(order):
            runs[name].append(audit_once(models[size], workdir / f"bars.{name.replace(' ', '_')}.plan.json",
                                         target, root))
            print(f"round {r + 1}: {name} {runs[name][-1].cpu:.2f} CPU s, {runs[name][-1].seconds:.2f} wall s "
                  f"(load {os.getloadavg()[0]:.2f})", flush=True)
    cpu = {name: _median([run.cpu for run in found]) for name, found in runs.items()}
    wall = {name: _median([run.seconds for run in found]) for name, found in runs.items()}
    print()
    print(f"{'audit':<11}  {'CPU s, each round':<28}  {'median':>7}  {'wall s median':>13}  {'peak RSS MB':>11}")
    for name, found in runs.items():
        print(f"{name:<11}  {' / '.join(f'{run.cpu:.2f}' for run in found):<28}  {cpu[name]:>7.2f}  "
              f"{wall[name]:>13.2f}  {max(run.rss_kb for run in found) / 1024:>11.0f}")
    base = cpu[names["issue"]]
    print()
    for size in (small, large):
        bar = _BAR_SECONDS[size] / _ISSUE_SECONDS_100K
        ratio = cpu[names[size]] / base
        print(f"{names[size]}: {ratio:.3f}x the issue's code at {_size_name(small)} (bar {bar:.3f}x: "
              f"{_BAR_SECONDS[size]:g} s where it took {_ISSUE_SECONDS_100K} s); on the issue's machine about "
              f"{ratio * _ISSUE_SECONDS_100K:.1f} s: {'met' if ratio <= bar else 'not met'}")
    growth = cpu[names[large]] / cpu[names[small]]
    print(f"growth {_size_name(small)} -> {_size_name(large)}: {growth:.2f}x (bar 11x): "
          f"{'met' if growth <= 11 else 'not met'}")
    print(f"CPU seconds (user and system) compared, medians of {rounds} rounds; issue's code: {issue_code}; "
          f"load average now {os.getloadavg()[0]:.2f}")


# The model whose CPU time stands for a code's fixed cost in --floor.
_FIXED_NODES = 100


def _refuse_fixed_size(sizes: Sequence[int], mode: str) -> None:
    """Stop where ``sizes`` hold the fixed cost's model, whose count each size's is taken less."""
    if _FIXED_NODES in sizes:
        raise SystemExit(f"{mode}: {_FIXED_NODES} nodes is the model of the fixed cost; give other sizes")


def floor_once(model: Path) -> tuple[int, float, int, float]:
    """Nodes, CPU seconds, peak RSS (kB) and user CPU seconds of the floor (``_FLOOR_CHILD``) on ``model``, in
    a fresh process."""
    done = subprocess.run([sys.executable, "-c", _FLOOR_CHILD, str(model)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"floor of {model} failed ({done.returncode}):\n{done.stderr}")
    nodes, _, rss_kb, cpu, user = done.stdout.split()
    return int(nodes), float(cpu), int(rss_kb), float(user)


def run_floor(sizes: list[int], target: str, workdir: Path, rounds: int) -> None:
    """The audit and the floor at each size, in turns (the order swapped every round), and the growth of each
    between consecutive sizes by the medians.

    Growth is taken on the per-node part of the CPU time: each code's fixed cost (the interpreter, the
    imports, the spec and rules; about 0.35 s of the audit, 0.25 of the floor) is its median on a model of
    ``_FIXED_NODES`` nodes, timed in the same rounds and subtracted, so that a cost paid once does not make
    either growth look smaller. The audit's growth divided by the floor's is how much faster than a plainly
    linear cost the audit grows on this machine (1.0: as fast).

    The same growth is also given for user time alone. System time is mostly the kernel handing the process
    fresh memory, whose price on a virtual machine depends on what the host did with the guest's freed pages
    in the last seconds: the 1M audit's has ranged from 9.6 to 15.9 s in one day's runs. User time is the
    code's own work, and varies far less between runs.

    And both again for the audit without onnx's checker and shape inference (timed in the child wherever the
    audit calls them): the library's C++ passes over the whole graph are a cost the package calls once and
    does not shape, and they grow faster than the floor on a large graph; what is left is the package's own.
    """
    _refuse_fixed_size(sizes, "--floor")
    models = [(_FIXED_NODES, _model_file(_FIXED_NODES, workdir))] + [(size, _model_file(size, workdir))
                                                                       for size in sizes]
    # Per run: CPU seconds, peak RSS (kB), user seconds, and the CPU and user seconds of onnx's passes.
    runs: dict[tuple[int, str], list[tuple[float, int, float, float, float]]] = {}
    counts: dict[int, int] = {}
    for r in range(rounds):
        for size, model in models:
            for step in ("audit", "floor") if r % 2 == 0 else ("floor", "audit"):
                if step == "audit":
                    run = audit_once(model, workdir / f"synthetic_{size}.plan.json", target)
                    if run.onnx_calls == 0:  # the split below would be wrong
                        raise SystemExit("--floor: the audit no longer calls onnx's checker or shape inference "
                                         "through the names timed")
                    cpu, rss_kb, user, onnx_cpu, onnx_user = run.cpu, run.rss_kb, run.user, run.onnx_cpu, run.onnx_user
                else:
                    counts[size], cpu, rss_kb, user = floor_once(model)
                    onnx_cpu = onnx_user = 0.0
                runs.setdefault((size, step), []).append((cpu, rss_kb, user, onnx_cpu, onnx_user))

    def median(size: int, step: str, user: bool = False, own: bool = False) -> float:
        """The median seconds (CPU, or user with ``user``), less onnx's passes' with ``own``."""
        return _median([(run[2] if user else run[0]) - ((run[4] if user else run[3]) if own else 0.0)
                        for run in runs[size, step]])

    print(f"{'nodes':>9}  {'code':<5}  {'CPU s, each round':<32}  {'median':>7}  {'per-node part':>13}  "
          f"{'peak RSS MB':>11}  {'user median':>11}  {'onnx passes':>11}")
    for size, _ in models:
        for step in ("audit", "floor"):
            part = "(fixed cost)" if size == _FIXED_NODES else f"{median(size, step) - median(_FIXED_NODES, step):.2f}"
            cpus = ' / '.join(f'{run[0]:.2f}' for run in runs[size, step])
            library = _median([run[3] for run in runs[size, step]])
            print(f"{counts[size]:>9}  {step:<5}  {cpus:<32}  {median(size, step):>7.2f}  {part:>13}  "
                  f"{max(run[1] for run in runs[size, step]) / 1024:>11.0f}  "
                  f"{median(size, step, user=True):>11.2f}  {library:>11.2f}")
    for before, after in zip(sizes, sizes[1:]):
        for own in (False, True):
            for user in (False, True):
                parts = {step: (median(before, step, user, own) - median(_FIXED_NODES, step, user, own),
                                median(after, step, user, own) - median(_FIXED_NODES, step, user, own))
                         for step in ("audit", "floor")}
                what = ("user time, per-node part" if user else "per-node part") + (
                    ", without onnx's passes" if own else "")
                if min(part for pair in parts.values() for part in pair) <= 0:
                    print(f"{counts[before]} -> {counts[after]} nodes, {what}: within the fixed cost's noise, no "
                          "growth to tell (use larger sizes)")
                    continue
                growth = {step: after_part / before_part for step, (before_part, after_part) in parts.items()}
                print(f"{counts[before]} -> {counts[after]} nodes ({counts[after] / counts[before]:.2f}x), {what}: "
                      f"audit {growth['audit']:.2f}x, floor {growth['floor']:.2f}x, audit / floor "
                      f"{growth['audit'] / growth['floor']:.2f}")
    print("floor: parse the model with onnx and index its node outputs, a linear cost; onnx passes: the audit's "
          f"CPU seconds in onnx's checker and shape inference (median); load average now {os.getloadavg()[0]:.2f}")
    note = cache_note([(counts[size], max(run[1] for run in runs[size, "audit"])) for size in sizes],
                      _last_level_cache_bytes())
    if note:
        print(note)


# --instructions: the shared objects whose own instructions are given apart, by a part of their file name.
_INSTRUCTION_GROUPS = (("interpreter", ("libpython", "python3")), ("onnx C++", ("onnx_cpp2py_export",)),
                       ("protobuf", ("_message.", "libprotobuf")), ("C library", ("libc.so", "libstdc++", "libm.so")))


def _callgrind_objects(path: Path) -> dict[str, int]:
    """The instructions each shared object executed in its own code (not in what it called), from a callgrind
    output file: a cost line (its positions, then its events, the first of them the instructions) adds to
    the object named by the last ``ob=`` line, except the line after a ``calls=`` line, which is the
    inclusive cost of a call. Names are given once, then by their ``(id)``."""
    names: dict[str, str] = {}
    own: dict[str, int] = {}
    current = "?"
    call_cost = False
    summary = None
    positions = 1  # "positions: line" unless the header says more
    with path.open() as f:
        for line in f:
            first = line[:1]
            if first.isdigit() or first in "+-*":
                if call_cost:
                    call_cost = False
                else:
                    own[current] = own.get(current, 0) + int(line.split()[positions])
            elif line.startswith(("ob=", "cob=")):
                ref, _, name = line.rstrip("\n").partition("=")[2].partition(" ")
                if name:
                    names[ref] = name
                if line.startswith("ob="):
                    current = names[ref]
            elif line.startswith("calls="):
                call_cost = True
            elif line.startswith("summary:"):
                summary = int(line.split()[1])
            elif line.startswith("positions:"):
                positions = len(line.split()) - 1
            elif line.startswith("events:") and line.split()[1:2] != ["Ir"]:
                raise SystemExit(f"{path}: the first event is not Ir (instructions): {line.strip()}")
    if summary != sum(own.values()):  # a format this reader does not know
        raise SystemExit(f"{path}: the objects' instructions add up to {sum(own.values())}, callgrind's summary "
                         f"says {summary}")
    return own


def _counted_env(root: Path) -> dict[str, str]:
    """The environment of a counted child: the hash seed fixed, and no bytecode cache written, so that every
    run of one code reads the same caches (a cache the first run wrote would make the fixed cost's model,
    counted first, compile the package that the later runs read, about 0.6 G instructions more). Caches
    already beside the sources, such as the standard library's, are read by every run alike; a checkout
    without them compiles the package in every run, which the fixed cost holds."""
    return {**_child_env(root), "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


def _callgrind(command: list[str], root: Path, counts: Path, what: str,
               options: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """Run ``command`` (a Python command line of the code in ``root``) under callgrind, its counts written to
    ``counts``; stop, with its error, if it fails."""
    done = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={counts}", *options, *command],
                          env=_counted_env(root), capture_output=True, text=True, cwd=root)
    if done.returncode != 0:
        raise SystemExit(f"{what} under valgrind failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


def instructions_once(model: Path, output: Path, target: str, root: Path = ROOT) -> dict[str, int]:
    """The instructions `rewriter audit --format json` of ``model`` executes, by group of shared objects
    (``_INSTRUCTION_GROUPS``, the rest as "other") and in all ("total"): valgrind's callgrind counts them in a
    fresh process of the code in ``root`` (``_counted_env``), so a count repeats to a few million instructions
    (0.2% of a small model's, 0.02% at 10k nodes). Under valgrind the C library's allocator cannot grow its
    heap by brk and maps memory instead, so its counts are not a native run's, but they are the same in every
    run."""
    with tempfile.TemporaryDirectory(prefix="bench_match_cg_") as tmp:
        counts = Path(tmp) / "callgrind.out"
        _callgrind([sys.executable, "-m", "rewriter", "audit", str(model), "--target", target, "--format", "json",
                    "-o", str(output)], root, counts, f"audit of {model}")
        own = _callgrind_objects(counts)
    groups = dict.fromkeys([name for name, _ in _INSTRUCTION_GROUPS] + ["other"], 0)
    for path, count in own.items():
        base = path.rsplit("/", 1)[-1]
        group = next((name for name, parts in _INSTRUCTION_GROUPS if any(p in base for p in parts)), "other")
        groups[group] += count
    return {"total": sum(own.values()), **groups}


# The C function behind os.getppid in CPython, at which callgrind writes its counts so far: the stages
# child calls it at the end of each stage.
_STAGE_MARK = "os_getppid"


def instruction_stages_once(model: Path, target: str, root: Path = ROOT) -> dict[str, int]:
    """The instructions of each stage of the audit (as ``--stages`` runs them, the JSON written to memory),
    and of the process's exit after them ("exit"), counted as ``instructions_once`` counts the whole audit:
    callgrind writes its counts so far each time a stage ends (``_STAGE_MARK``)."""
    with tempfile.TemporaryDirectory(prefix="bench_match_cg_") as tmp:
        counts = Path(tmp) / "callgrind.out"
        done = _callgrind([sys.executable, "-c", _STAGES_CHILD, str(model), target], root, counts,
                          f"stages of {model}", [f"--dump-before={_STAGE_MARK}"])
        row = json.loads(done.stdout.splitlines()[-1])
        names = _stage_names(row)
        dumps = sorted(Path(tmp).glob("callgrind.out.*"), key=lambda path: int(path.suffix[1:]))
        if len(dumps) != len(names):
            raise SystemExit(f"stages of {model}: {len(dumps)} counts written for {len(names)} stages (the mark "
                             f"{_STAGE_MARK} is not a function valgrind sees in this Python, or the audit calls "
                             "os.getppid itself)")
        stages = {name: sum(_callgrind_objects(dump).values()) for name, dump in zip(names, dumps)}
        stages["exit"] = sum(_callgrind_objects(counts).values())
    return {"nodes": row["nodes"], **stages}


def _counted_codes(sizes: Sequence[int], other: Path | None) -> list[tuple[str, Path]]:
    """The codes an --instructions run counts (this checkout, and ``other`` if given), once it is sure it
    can: valgrind is there and no size is the fixed cost's model."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (Debian: apt-get install valgrind)")
    _refuse_fixed_size(sizes, "--instructions")
    return [("this", ROOT)] + ([("other", other)] if other else [])


def run_instruction_stages(sizes: list[int], target: str, workdir: Path, other: Path | None) -> None:
    """Instructions of each stage of the audit at each size (``instruction_stages_once``), and the growth of
    each stage's per-node part between consecutive sizes, as ``run_instructions`` gives the whole audit's.
    Beside ``--stages``' seconds, the growth of a stage's seconds over that of its instructions is what
    memory costs it at the larger size."""
    codes = _counted_codes(sizes, other)
    counts: dict[tuple[int, str], dict[str, int]] = {}
    for size in [_FIXED_NODES, *sizes]:
        model = _model_file(size, workdir)
        for name, root in codes:
            row = instruction_stages_once(model, target, root)
            counts[size, name] = {**row, "total": sum(v for k, v in row.items() if k != "nodes")}
            print(f"counted the stages of {row['nodes']} nodes ({name}): {counts[size, name]['total'] / 1e9:.3f} G "
                  "instructions", flush=True)
    columns = [k for k in counts[_FIXED_NODES, "this"] if k != "nodes"]  # the stages, then the total
    print()
    print(f"{'nodes':>9}  {'code':<5}  " + "  ".join(f"{column:>14}" for column in columns))
    for size in [_FIXED_NODES, *sizes]:
        for name, _ in codes:
            row = counts[size, name]
            print(f"{row['nodes']:>9}  {name:<5}  " + "  ".join(f"{row[column] / 1e9:>14.3f}" for column in columns))
    for before, after in zip(sizes, sizes[1:]):
        for name, _ in codes:
            fixed, low, high = counts[_FIXED_NODES, name], counts[before, name], counts[after, name]
            growth = []
            for column in columns:
                parts = [row[column] - fixed[column] for row in (low, high)]
                # A stage that does not depend on the model (imports, spec and rules) has no part to grow.
                if parts[0] > (low["total"] - fixed["total"]) / 100:
                    growth.append(f"{column} {parts[1] / parts[0]:.2f}x")
            linear = (high["nodes"] - fixed["nodes"]) / (low["nodes"] - fixed["nodes"])
            print(f"{low['nodes']} -> {high['nodes']} nodes ({name}), per-node part (a linear cost grows "
                  f"{linear:.2f}x): " + ", ".join(growth))
    print("G instructions of each stage (valgrind --tool=callgrind, PYTHONHASHSEED=0), the JSON written to memory; "
          "exit: after the last stage")


def run_instructions(sizes: list[int], target: str, workdir: Path, other: Path | None) -> None:
    """Instructions of the audit at each size (``instructions_once``) and the growth of their per-node part
    between consecutive sizes, the count on a model of ``_FIXED_NODES`` nodes subtracted as in ``run_floor``.

    Unlike seconds, an instruction count does not depend on the machine's load or on what the memory system
    makes of a large heap: it says whether the code's work grows linearly, and compares two revisions
    (``other``, with its ratio) on a noisy machine in one run each. It says nothing of cache misses or page
    faults, which are what the growth in seconds adds to it. Under valgrind the audit runs about 35 times
    slower (a 100k-node audit: about 4 minutes; 1M: about an hour).
    """
    codes = _counted_codes(sizes, other)
    models = [(_FIXED_NODES, _model_file(_FIXED_NODES, workdir))] + [(size, _model_file(size, workdir))
                                                                       for size in sizes]
    counts: dict[tuple[int, str], dict[str, int]] = {}
    nodes: dict[tuple[int, str], int] = {}  # as each code's plan counts them
    for size, model in models:
        for name, root in codes:
            output = workdir / f"{model.stem}.{name}.plan.json"
            counts[size, name] = instructions_once(model, output, target, root)
            with output.open() as f:
                nodes[size, name] = json.load(f)["summary"]["nodes"]
            print(f"counted {nodes[size, name]} nodes ({name}): {counts[size, name]['total'] / 1e9:.3f} G "
                  "instructions", flush=True)
    groups = list(counts[_FIXED_NODES, "this"])

    def part(size: int, name: str, group: str = "total") -> int:
        """The per-node part: the count less the fixed cost's model's."""
        return counts[size, name][group] - counts[_FIXED_NODES, name][group]

    def beyond(size: int, name: str) -> int:
        """The nodes beyond the fixed cost's model's."""
        return nodes[size, name] - nodes[_FIXED_NODES, name]

    print()
    print(f"{'nodes':>9}  {'code':<5}  " + "  ".join(f"{g + ' G':>14}" for g in groups) + f"  {'per node':>12}")
    for size, _ in models:
        for name, _ in codes:
            per_node = "(fixed cost)" if size == _FIXED_NODES else f"{part(size, name) / beyond(size, name):.0f}"
            print(f"{nodes[size, name]:>9}  {name:<5}  "
                  + "  ".join(f"{counts[size, name][g] / 1e9:>14.3f}" for g in groups) + f"  {per_node:>12}")
        if other and size != _FIXED_NODES:
            total = counts[size, "other"]["total"] / counts[size, "this"]["total"]
            print(f"{nodes[size, 'this']:>9}  other / this: {total:.4f}x the instructions, "
                  f"{part(size, 'other') / part(size, 'this'):.4f}x their per-node parts")
    for before, after in zip(sizes, sizes[1:]):
        for name, _ in codes:
            growth = []
            for g in groups:
                # A group whose part is a sliver of the total's (the "other" group's varies by a few million
                # between runs) has no growth worth a ratio.
                if part(before, name, g) > part(before, name) / 100:
                    growth.append(f"{g} {part(after, name, g) / part(before, name, g):.2f}x")
            print(f"{nodes[before, name]} -> {nodes[after, name]} nodes ({name}), per-node part (a linear cost "
                  f"grows {beyond(after, name) / beyond(before, name):.2f}x): " + ", ".join(growth))
    print("instructions executed in each group's own code (valgrind --tool=callgrind, PYTHONHASHSEED=0); per "
          "node: the per-node part of the total over the nodes beyond the fixed cost's model")


def _stage_names(row: dict) -> list[str]:
    """The stages of a row the stages child printed, in the order run (its other keys are not stages)."""
    return [k for k in row if k not in ("nodes", "system", "faults", "library", "library calls")]


# Stages whose cost does not depend on the model.
_FIXED_STAGES = ("imports", "spec and rules")


def run_stages(sizes: Sequence[int | Path], target: str, workdir: Path) -> None:
    """CPU seconds of each stage of the audit, each model (a size of the synthetic graph, or a model file) in
    a fresh process (the JSON written to memory)."""
    env = _child_env(ROOT)
    rows = []
    for item in sizes:
        model = _model_path(item, workdir)
        done = subprocess.run([sys.executable, "-c", _STAGES_CHILD, str(model), target], env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"stages of {model} failed ({done.returncode}):\n{done.stderr}")
        rows.append(json.loads(done.stdout.splitlines()[-1]))
        uncalled = [name for name, count in rows[-1]["library calls"].items() if count == 0]
        if uncalled:  # the audit no longer calls it so: the split below would be wrong
            raise SystemExit(f"stages of {model}: {', '.join(uncalled)} never called through the names timed")
    names = _stage_names(rows[0])
    print(f"{'nodes':>11}  " + "  ".join(f"{n:>14}" for n in names) + f"  {'total':>9}")
    for row in rows:
        for label, cells, digits in (("CPU s", row, 2), ("system s", row["system"], 2),
                                     ("page faults", row["faults"], 0)):
            print(f"{row['nodes'] if label == 'CPU s' else label:>11}  "
                  + "  ".join(f"{cells[n]:>14.{digits}f}" for n in names)
                  + f"  {sum(cells[n] for n in names):>9.{digits}f}")
    ours = []
    for row in rows:
        library = row["library"]
        # The package's own work on the model: every stage after the imports and the spec and rules (costs
        # that do not depend on the model), less the library's part.
        ours.append(sum(row[n] for n in names if n not in _FIXED_STAGES) - sum(library.values()))
        print(f"{row['nodes']:>11}  of the total: " + ", ".join(f"{k} {v:.2f}" for k, v in library.items())
              + f", the package's own work on the model {ours[-1]:.2f}")
    for (before, after), (ours_before, ours_after) in zip(zip(rows, rows[1:]), zip(ours, ours[1:])):
        if ours_before <= 0:
            continue  # a model too small for its work to show above the clock's resolution
        total = [sum(row[n] for n in names) for row in (before, after)]
        print(f"{before['nodes']} -> {after['nodes']} nodes ({after['nodes'] / before['nodes']:.2f}x): total "
              f"{total[1] / total[0]:.2f}x, "
              + ", ".join(f"{k} {after['library'][k] / v:.2f}x" for k, v in before["library"].items() if v > 0)
              + f", the package's own work on the model {ours_after / ours_before:.2f}x")
    print(f"CPU seconds (user and system) per stage, the system part and the minor page faults below them; "
          f"onnx's checker and shape inference are within load and normalize; load average now "
          f"{os.getloadavg()[0]:.2f}")


def run_planner_only(sizes: list[int], target: str) -> None:
    from rewriter.api import load_plan_inputs
    from rewriter.match.planner import PlanOptions, build_plan

    start = time.perf_counter()
    inputs = load_plan_inputs(target)
    load_seconds = time.perf_counter() - start
    print(f"spec + rules loaded in {load_seconds:.3f} s ({len(inputs.rules.rules)} rules, "
          f"{len(inputs.rules.patterns)} patterns)")
    print(f"{'nodes':>8}  {'plan s':>8}  {'us/node':>8}  {'FQ':>7}")
    for size in sizes:
        graph = synthetic_graph(size)
        start = time.perf_counter()
        plan = build_plan(graph, inputs.spec, inputs.rules, PlanOptions())
        seconds = time.perf_counter() - start
        print(f"{len(graph):>8}  {seconds:>8.2f}  {seconds / len(graph) * 1e6:>8.1f}  {len(plan.points):>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--models", type=Path, nargs="+", metavar="FILE",
                        help="audit these model files instead of the synthetic graphs (default mode, --stages and "
                             "--against), "
                             "e.g. decoders written by tools/export_decoder.py")
    parser.add_argument("--target", default="CPU")
    parser.add_argument("--workdir", type=Path, help="where the models and plans go (kept; default: a temporary "
                                                     "folder, removed at the end)")
    parser.add_argument("--planner-only", action="store_true", help="time build_plan on in-memory graphs")
    parser.add_argument("--stages", action="store_true", help="CPU seconds of each stage of the audit")
    parser.add_argument("--against", type=Path, metavar="DIR",
                        help="also audit with the code in DIR (another revision's files), in turns, and give the "
                             "ratio of CPU seconds")
    parser.add_argument("--floor", action="store_true",
                        help="also time a plainly linear floor (parse and index the model) in turns with the audit, "
                             "and compare their growth")
    parser.add_argument("--instructions", action="store_true",
                        help="count the audit's instructions under valgrind (callgrind) instead of timing it, with "
                             "--against for both codes: a count that does not depend on the machine's load (about "
                             "35 times the audit's time: give --sizes, e.g. 10000 100000; 1M takes an hour)")
    parser.add_argument("--bars", type=Path, metavar="ISSUE_CODE",
                        help="judge the issue's time bars on this machine: this code at 100k and 1M nodes in turns "
                             "with the issue's code (a6d68f3's files in ISSUE_CODE) at 100k")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of each code with --against, --bars or --floor (default 3)")
    args = parser.parse_args()
    modes = [name for name in ("against", "bars", "floor", "planner_only", "stages") if getattr(args, name)]
    if args.instructions:
        if not set(modes) <= {"against", "stages"} or args.models:
            parser.error("--instructions works alone, with --against, --stages or both, on the synthetic graphs")
    elif len(modes) > 1:
        parser.error(f"choose one of --{', --'.join(m.replace('_', '-') for m in modes)}")
    if args.models and (args.floor or args.planner_only or args.bars):
        parser.error("--models works with the default mode, --stages and --against (the floor and the planner "
                     "alone time the synthetic graphs)")
    if args.instructions:
        with tempfile.TemporaryDirectory(prefix="bench_match_") as tmp:
            workdir = args.workdir or Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            run = run_instruction_stages if args.stages else run_instructions
            run(args.sizes, args.target, workdir, args.against.resolve() if args.against else None)
    elif args.against:
        with tempfile.TemporaryDirectory(prefix="bench_match_") as tmp:
            workdir = args.workdir or Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            run_against(args.models or args.sizes, args.target, workdir, args.against.resolve(), args.rounds)
    elif args.bars:
        with tempfile.TemporaryDirectory(prefix="bench_match_") as tmp:
            workdir = args.workdir or Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            run_bars(args.bars.resolve(), args.target, workdir, args.rounds)
    elif args.floor:
        with tempfile.TemporaryDirectory(prefix="bench_match_") as tmp:
            workdir = args.workdir or Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            run_floor(args.sizes, args.target, workdir, args.rounds)
    elif args.planner_only:
        run_planner_only(args.sizes, args.target)
    elif args.stages:
        with tempfile.TemporaryDirectory(prefix="bench_match_") as tmp:
            workdir = args.workdir or Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            run_stages(args.models or args.sizes, args.target, workdir)
    elif args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        run_audits(args.models or args.sizes, args.target, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="bench_match_") as tmp:
            run_audits(args.models or args.sizes, args.target, Path(tmp))


if __name__ == "__main__":
    main()
