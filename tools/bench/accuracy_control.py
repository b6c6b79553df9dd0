"""AccuracyAwareQuantization against NNCF's quantize_with_accuracy_control on one corpus entry: the same
float model, calibration samples, eval samples and metric (top-1 accuracy against the true labels), the
same limit. Writes one JSON line per tool: final drop, speed-up over float (onnxruntime, one thread, this
machine), metric evaluations, wall and CPU time.

    /work/benchvenv/bin/python tools/bench/accuracy_control.py --entry DIR --max-drop 0.001 \\
        [--target ORT] [--tools ours nncf] [--out-dir OUT]

`ours` runs `rewriter quantize --accuracy-aware` in a child process (this checkout, the project's
python given by --python); `nncf` runs in this process. Latency is timed for each output afterwards,
serially, as the search itself does.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
METRIC_FILE = HERE / "accuracy_control_metric.py"


def _samples(folder: Path) -> list[dict[str, np.ndarray]]:
    return [dict(np.load(p)) for p in sorted(folder.glob("*.npz"))]


def _latency_ms(model_path: Path, samples: list[dict[str, np.ndarray]], repeats: int = 7) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    for s in samples:
        session.run(None, s)
    passes = []
    for _ in range(repeats):
        start = time.perf_counter()
        for s in samples:
            session.run(None, s)
        passes.append((time.perf_counter() - start) / len(samples))
    return statistics.median(passes) * 1000


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_ours(entry: Path, out: Path, args: argparse.Namespace) -> dict:
    report = out.with_suffix(".json")
    command = [args.python, "-m", "rewriter.cli", "quantize", str(entry / "model.onnx"), "-o", str(out),
               "--data", str(entry / "calib"), "--target", args.target, "--report", str(report), "--quiet",
               "--accuracy-aware", "--metric", f"{METRIC_FILE}:top1", "--max-drop", str(args.max_drop),
               *args.ours_extra]
    env = {**os.environ, "PYTHONPATH": str(REPO), "ACCURACY_CONTROL_ENTRY": str(entry)}
    start, cpu = time.perf_counter(), _cpu()
    subprocess.run(command, check=True, env=env)
    wall, cpu = time.perf_counter() - start, _cpu() - cpu
    search = json.loads(report.read_text())["search"]
    return {"tool": "ours", "float": search["baseline"], "initial": search["initial"], "final": search["final"],
            "final_drop": search["final_drop"], "met": search["met"], "reverted": len(search["reverts"]),
            "metric_evaluations": search["metric_evaluations"],
            "samples_evaluated": search["metric_evaluations"] * args.eval_count,
            "ranking_measurements": search["ranking_measurements"], "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2)}


def run_nncf(entry: Path, out: Path, args: argparse.Namespace) -> dict:
    import nncf
    import onnx

    sys.path.insert(0, str(HERE))
    os.environ["ACCURACY_CONTROL_ENTRY"] = str(entry)
    from accuracy_control_metric import accuracy_of_session

    calls = {"full": 0, "items": 0}
    calibration = nncf.Dataset(_samples(entry / "calib"))
    labels = np.load(entry / "eval_labels.npy")
    eval_items = [(s, int(y)) for s, y in zip(_samples(entry / "eval"), labels)]
    validation = nncf.Dataset(eval_items)

    def validation_fn(model, items):
        items = list(items)
        calls["full" if len(items) > 1 else "items"] += 1
        calls.setdefault("samples", 0)
        calls["samples"] += len(items)
        session = model if hasattr(model, "run") else ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"])
        return accuracy_of_session(session, items)

    start, cpu = time.perf_counter(), _cpu()
    quantized = nncf.quantize_with_accuracy_control(
        onnx.load(entry / "model.onnx"), calibration, validation, validation_fn, max_drop=args.max_drop,
        drop_type=nncf.DropType.ABSOLUTE, subset_size=300)
    wall, cpu = time.perf_counter() - start, _cpu() - cpu
    onnx.save(quantized, out)
    final = validation_fn(ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]), eval_items)[0]
    base = validation_fn(ort.InferenceSession(str(entry / "model.onnx"), providers=["CPUExecutionProvider"]),
                         eval_items)[0]
    calls["full"] -= 2  # the two checks above are the benchmark's, not NNCF's
    calls["samples"] -= 2 * len(eval_items)
    return {"tool": "nncf", "nncf_version": nncf.__version__, "float": base, "final": final,
            "final_drop": round(base - final, 6), "met": base - final <= args.max_drop + 1e-12,
            "metric_evaluations": calls["full"], "single_item_evaluations": calls["items"],
            "samples_evaluated": calls["samples"], "wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entry", type=Path, required=True, help="a built corpus entry with eval_labels.npy")
    parser.add_argument("--max-drop", type=float, default=0.01)
    parser.add_argument("--target", default="ORT")
    parser.add_argument("--tools", nargs="+", default=["ours", "nncf"])
    parser.add_argument("--python", default="/work/venv/bin/python", help="the project's python, for ours")
    parser.add_argument("--ours-extra", action="append", default=[], metavar="ARG",
                        help="one more `rewriter quantize` argument (repeatable: --ours-extra=--config --ours-extra=F)")
    parser.add_argument("--out-dir", type=Path, default=Path("/tmp/accuracy_control"))
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    args.eval_count = len(list((args.entry / "eval").glob("*.npz")))
    timing = _samples(args.entry / "eval")[:32]
    float_ms = _latency_ms(args.entry / "model.onnx", timing)
    results = []
    for tool in args.tools:
        out = args.out_dir / f"{tool}.onnx"
        results.append((run_ours if tool == "ours" else run_nncf)(args.entry, out, args))
    for result in results:  # timed serially, after every search
        ms = _latency_ms(args.out_dir / f"{result['tool']}.onnx", timing)
        result.update(latency_ms=round(ms, 4), float_latency_ms=round(float_ms, 4),
                      speedup=round(float_ms / ms, 3), max_drop=args.max_drop, target=args.target)
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
