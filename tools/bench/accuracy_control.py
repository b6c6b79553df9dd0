"""AccuracyAwareQuantization against NNCF's quantize_with_accuracy_control and Intel Neural Compressor's
accuracy-driven tuning on one corpus entry: the same float model, calibration samples, eval samples and
metric (top-1 accuracy against the true labels, or top-1 agreement with the float model on an entry
without labels), the same absolute limit. Writes one JSON line per tool: final drop, speed-up over float
(onnxruntime, batch 1, one thread, this machine), metric evaluations, wall and CPU time (also kept in
OUT/results.jsonl).

    /work/benchvenv/bin/python tools/bench/accuracy_control.py --entry DIR --max-drop 0.001 \\
        [--target ORT] [--tools ours nncf inc] [--calib DIR] [--weights-per-tensor] [--out-dir OUT]

`ours` runs `rewriter quantize --accuracy-aware` in a child process (this checkout, the project's
python given by --python); `nncf` runs in this process; `inc` runs tools/bench/inc_accuracy_control.py
in a child process with --inc-python (a venv of its own: tools/bench/requirements-inc.txt). Latency is
timed after every search, serially: the float model and each output in turn, round after round, so a
change in the machine's load falls on all of them alike; the speed-up is the median of the per-round
ratios, of the timing thread's CPU time (`speedup`) and of wall time (`speedup_wall`).

`--weights-per-tensor` gives every tool the same harder setting, one scale per weight tensor instead of
one per output channel: rewriter through a config file (DefaultQuantization params weights.granularity
pertensor), NNCF through AdvancedQuantizationParameters(weights_quantization_params=
QuantizationParameters(per_channel=False)), Neural Compressor through its op-type-wise weight
granularity per_tensor (inc_accuracy_control.py). The activations stay per-tensor, as by default.
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


def _timing_session(model_path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def _pass_ms(session: ort.InferenceSession, samples: list[dict[str, np.ndarray]]) -> tuple[float, float]:
    """Wall and CPU milliseconds per sample. With one intra-op thread onnxruntime runs the model in the
    calling thread, so this thread's CPU time is the model's, and it does not count the time the shared
    machine's other processes hold the core (wall time does)."""
    start, cpu = time.perf_counter(), time.thread_time()
    for s in samples:
        session.run(None, s)
    return (time.perf_counter() - start) / len(samples) * 1000, (time.thread_time() - cpu) / len(samples) * 1000


def _interleaved_latency(models: dict[str, Path], samples: list[dict[str, np.ndarray]],
                         rounds: int = 11) -> dict[str, list[tuple[float, float]]]:
    """Per model, one pass (wall and CPU ms per sample) in each round; the models take turns in a round."""
    sessions = {name: _timing_session(path) for name, path in models.items()}
    for session in sessions.values():  # warm-up, not timed
        _pass_ms(session, samples)
    passes: dict[str, list[tuple[float, float]]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, session in sessions.items():
            # a few untimed runs first: the model run just before has evicted this one's weights from cache
            _pass_ms(session, samples[:4])
            passes[name].append(_pass_ms(session, samples))
    return passes


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# rewriter's config file for --weights-per-tensor: the POT-style granularity key of DefaultQuantization, the
# base algorithm of the accuracy-aware search
WEIGHTS_PER_TENSOR_CONFIG = {"compression": {"algorithms": [
    {"name": "DefaultQuantization", "params": {"weights": {"granularity": "pertensor"}}}]}}


def run_ours(entry: Path, out: Path, args: argparse.Namespace) -> dict:
    report = out.with_suffix(".json")
    config: list[str] = []
    if args.weights_per_tensor:
        config_file = out.with_name("ours_weights_per_tensor.json")
        config_file.write_text(json.dumps(WEIGHTS_PER_TENSOR_CONFIG))
        config = ["--config", str(config_file)]
    command = [args.python, "-m", "rewriter.cli", "quantize", str(entry / "model.onnx"), "-o", str(out),
               "--data", str(args.calib), "--target", args.target, "--report", str(report), "--quiet",
               "--accuracy-aware", "--metric", f"{METRIC_FILE}:top1", "--max-drop", str(args.max_drop),
               *config, *args.ours_extra]
    env = {**os.environ, "PYTHONPATH": str(REPO), "ACCURACY_CONTROL_ENTRY": str(entry)}
    start, cpu = time.perf_counter(), _cpu()
    # its summary goes to stderr, apart from the JSON lines on stdout
    subprocess.run(command, check=True, env=env, stdout=sys.stderr)
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
    from accuracy_control_metric import accuracy_of_session, eval_labels

    calls = {"full": 0, "items": 0}
    full_values: list[float] = []  # NNCF measures the float model, then its quantized one, then its steps
    calibration = nncf.Dataset(_samples(args.calib))
    labels = eval_labels(entry)
    eval_items = [(s, int(y)) for s, y in zip(_samples(entry / "eval"), labels)]
    validation = nncf.Dataset(eval_items)

    def validation_fn(model, items):
        items = list(items)
        calls["full" if len(items) > 1 else "items"] += 1
        calls.setdefault("samples", 0)
        calls["samples"] += len(items)
        session = model if hasattr(model, "run") else ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"])
        value, hits = accuracy_of_session(session, items)
        if len(items) > 1:
            full_values.append(value)
        return value, hits

    advanced = None  # NNCF's defaults: per-channel weights where its hardware config allows them
    if args.weights_per_tensor:
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, QuantizationParameters
        advanced = AdvancedQuantizationParameters(
            weights_quantization_params=QuantizationParameters(per_channel=False))

    start, cpu = time.perf_counter(), _cpu()
    quantized = nncf.quantize_with_accuracy_control(
        onnx.load(entry / "model.onnx"), calibration, validation, validation_fn, max_drop=args.max_drop,
        drop_type=nncf.DropType.ABSOLUTE, subset_size=300, advanced_quantization_parameters=advanced)
    wall, cpu = time.perf_counter() - start, _cpu() - cpu
    onnx.save(quantized, out)
    final = validation_fn(ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]), eval_items)[0]
    base = validation_fn(ort.InferenceSession(str(entry / "model.onnx"), providers=["CPUExecutionProvider"]),
                         eval_items)[0]
    calls["full"] -= 2  # the two checks above are the benchmark's, not NNCF's
    calls["samples"] -= 2 * len(eval_items)
    return {"tool": "nncf", "nncf_version": nncf.__version__, "float": base,
            "initial": full_values[1] if len(full_values) > 3 else None, "final": final,
            "final_drop": round(base - final, 6), "met": base - final <= args.max_drop + 1e-12,
            "metric_evaluations": calls["full"], "single_item_evaluations": calls["items"],
            "samples_evaluated": calls["samples"], "wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}


def run_inc(entry: Path, out: Path, args: argparse.Namespace) -> dict:
    result_file = out.with_suffix(".result.json")
    command = [args.inc_python, str(HERE / "inc_accuracy_control.py"), "--entry", str(entry), "--calib",
               str(args.calib), "--max-drop", str(args.max_drop), "--out", str(out), "--result", str(result_file),
               *(["--weights-per-tensor"] if args.weights_per_tensor else []), *args.inc_extra]
    log = out.with_suffix(".log")
    start, cpu = time.perf_counter(), _cpu()
    # cwd: Neural Compressor writes its nc_workspace/ folder into the working directory
    with log.open("w") as sink:
        subprocess.run(command, check=True, cwd=out.parent, stdout=sink, stderr=subprocess.STDOUT)
    wall, cpu = time.perf_counter() - start, _cpu() - cpu
    result = json.loads(result_file.read_text())
    result.update(wall_s=round(wall, 2), cpu_s=round(cpu, 2), log=str(log))
    return result


RUNNERS = {"ours": run_ours, "nncf": run_nncf, "inc": run_inc}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entry", type=Path, required=True,
                        help="a built corpus entry (scored against eval_labels.npy, else the float model's top-1)")
    parser.add_argument("--max-drop", type=float, default=0.01)
    parser.add_argument("--target", default="ORT")
    parser.add_argument("--tools", nargs="+", choices=sorted(RUNNERS), default=["ours", "nncf", "inc"])
    parser.add_argument("--calib", type=Path, help="calibration samples for every tool (default: the entry's calib/)")
    parser.add_argument("--python", default="/work/venv/bin/python", help="the project's python, for ours")
    parser.add_argument("--inc-python", default="/work/incvenv/bin/python", help="Neural Compressor's venv")
    parser.add_argument("--inc-extra", action="append", default=[], metavar="ARG",
                        help="one more inc_accuracy_control.py argument (--inc-extra=--max-trials --inc-extra=50)")
    parser.add_argument("--ours-extra", action="append", default=[], metavar="ARG",
                        help="one more `rewriter quantize` argument (repeatable: --ours-extra=--config --ours-extra=F)")
    parser.add_argument("--weights-per-tensor", action="store_true",
                        help="every tool quantizes weights with one scale per tensor, not per output channel "
                             "(rewriter: a config file with DefaultQuantization weights.granularity pertensor; "
                             "NNCF: weights_quantization_params per_channel=False; Neural Compressor: "
                             "op-type-wise weight granularity per_tensor): a harder setting, the same for all")
    parser.add_argument("--out-dir", type=Path, default=Path("/tmp/accuracy_control"))
    args = parser.parse_args()
    if args.weights_per_tensor and any(a == "--config" or a.startswith("--config=") for a in args.ours_extra):
        parser.error("--weights-per-tensor gives rewriter a config file of its own; put the weights' "
                     "granularity into your --config instead")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    # absolute: Neural Compressor's child process runs in the output folder
    args.entry, args.out_dir = args.entry.resolve(), args.out_dir.resolve()
    args.calib = (args.calib or args.entry / "calib").resolve()
    args.eval_count = len(list((args.entry / "eval").glob("*.npz")))
    load_before = os.getloadavg()
    results = []
    for tool in args.tools:
        out = args.out_dir / f"{tool}.onnx"
        results.append(RUNNERS[tool](args.entry, out, args))
    # timed serially, after every search; a tool that gave no model (Neural Compressor when no trial met
    # the limit) is not timed
    models = {"float": args.entry / "model.onnx"}
    models.update({r["tool"]: args.out_dir / f"{r['tool']}.onnx" for r in results
                   if (args.out_dir / f"{r['tool']}.onnx").exists() and r.get("model", True) is not None})
    passes = _interleaved_latency(models, _samples(args.entry / "eval")[:32])
    load_after = os.getloadavg()

    def median(tool: str, kind: int) -> float:
        return round(statistics.median(p[kind] for p in passes[tool]), 4)

    def speedup(tool: str, kind: int) -> float:
        return round(statistics.median(f[kind] / t[kind] for f, t in zip(passes["float"], passes[tool])), 3)

    for result in results:
        # the CPU-time figures are the headline: on a shared machine the wall time also counts the time
        # other processes hold the core
        timing = {"latency_ms": None, "speedup": None, "latency_wall_ms": None, "speedup_wall": None}
        if result["tool"] in passes:
            timing = {"latency_ms": median(result["tool"], 1), "speedup": speedup(result["tool"], 1),
                      "latency_wall_ms": median(result["tool"], 0), "speedup_wall": speedup(result["tool"], 0)}
        result.update(timing, float_latency_ms=median("float", 1), float_latency_wall_ms=median("float", 0),
                      max_drop=args.max_drop, target=args.target,
                      weights="per_tensor" if args.weights_per_tensor else "default",
                      calib=str(args.calib), calib_count=len(list(args.calib.glob("*.npz"))),
                      load_before=[round(x, 2) for x in load_before], load_after=[round(x, 2) for x in load_after])
        print(json.dumps(result), flush=True)
    # NNCF's progress and log lines may go to stdout too: the file holds the results alone
    (args.out_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
