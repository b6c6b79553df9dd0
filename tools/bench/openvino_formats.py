"""The two output formats in OpenVINO: file size, latency and top-1 agreement, with the baselines named.

    python tools/bench/openvino_formats.py --entry resnet50 --out /tmp/ovformats

Quantizes one corpus entry (default 300 calibration samples, seed 0) as QDQ and as FakeQuantize for the
same target (CPU by default, so both files carry one plan), then, in OpenVINO's CPU plugin at batch 1:

- latency of the float model and of both outputs, each compiled twice: with the f32 inference precision
  hint and with OpenVINO's default precision (bf16 on CPUs that have it, f32 elsewhere; the precision the
  plugin resolved is printed), all ten timed in interleaved rounds so that a slow spell of the shared
  machine hits them alike; median of the per-run wall times, and the process CPU time per run;
- the convolutions and matrix products the plugin runs in u8/i8 (its runtime model);
- top-1 agreement of each output with the float model on the entry's eval split (f32 hint).

Needs the project's dependencies and openvino (``pip install -e '.[openvino]'``); run from a checkout, it
imports that checkout's rewriter. Writes ``docs/benchmarks_openvino.json`` (tools/bench/report.py turns it
into a section of docs/benchmarks.md) and prints that section.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for path in (str(HERE), str(ROOT)):
    if path not in sys.path:
        sys.path.insert(0, path)

from metrics import load_sample  # noqa: E402
from report import OPENVINO_RESULTS, openvino_section  # noqa: E402

_LAYERS = ("Convolution", "GroupConvolution", "FullyConnected", "MatMul")


def quantize(model: Path, calib: Path, out: Path, target: str, output_format: str, subset: int) -> dict:
    from rewriter.options import QuantizeOptions
    from rewriter.pipeline import quantize_file

    start = time.perf_counter()
    result = quantize_file(model, out, str(calib), QuantizeOptions(target=target, output_format=output_format,
                                                                    subset_size=subset))
    fidelity = result.report.get("fidelity", {})
    return {"path": str(out), "bytes": out.stat().st_size, "quantize_s": round(time.perf_counter() - start, 1),
            "self_check": fidelity.get("summary") or fidelity.get("skipped")}


def compile_model(core, path: Path, threads: int, f32: bool):  # noqa: ANN001, ANN201
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    if f32:
        config["INFERENCE_PRECISION_HINT"] = "f32"
    return core.compile_model(core.read_model(str(path)), "CPU", config)


def integer_layers(compiled) -> str:  # noqa: ANN001
    """"<u8/i8 layers>/<layers>" over the convolutions and matrix products of the plugin's runtime model."""
    kinds = [(op.get_rt_info()["layerType"].astype(str), op.get_rt_info()["runtimePrecision"].astype(str))
             for op in compiled.get_runtime_model().get_ordered_ops()]
    layers = [p for kind, p in kinds if kind in _LAYERS]
    return f"{sum(p in ('u8', 'i8') for p in layers)}/{len(layers)}"


def time_interleaved(compiled: dict, feeds: dict, runs: int, rounds: int, warmup: int) -> dict[str, dict]:
    requests = {label: c.create_infer_request() for label, c in compiled.items()}
    for request in requests.values():
        for _ in range(warmup):
            request.infer(feeds)
    wall: dict[str, list[float]] = {label: [] for label in requests}
    cpu: dict[str, list[float]] = {label: [] for label in requests}
    per_round = max(1, -(-runs // rounds))
    for _ in range(rounds):
        for label, request in requests.items():
            for _ in range(per_round):
                w0, c0 = time.perf_counter(), time.process_time()
                request.infer(feeds)
                wall[label].append((time.perf_counter() - w0) * 1000.0)
                cpu[label].append((time.process_time() - c0) * 1000.0)
    return {label: {"median_ms": round(statistics.median(wall[label]), 2),
                    "p10_ms": round(float(np.percentile(wall[label], 10)), 2),
                    "p90_ms": round(float(np.percentile(wall[label], 90)), 2),
                    "cpu_ms_per_run": round(statistics.mean(cpu[label]), 2), "runs": len(wall[label])}
            for label in requests}


def top1_agreement(compiled, samples: list[dict], reference: np.ndarray) -> float:  # noqa: ANN001
    request = compiled.create_infer_request()
    hits = [int(np.argmax(np.asarray(request.infer(s)[compiled.output(0)]))) == int(np.argmax(ref))
            for s, ref in zip(samples, reference)]
    return float(np.mean(hits))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=ROOT / ".bench-cache" / "corpus")
    parser.add_argument("--entry", default="resnet50")
    parser.add_argument("--out", type=Path, required=True, help="where the quantized models go")
    parser.add_argument("--json", type=Path, default=OPENVINO_RESULTS,
                        help="where the results go (default docs/benchmarks_openvino.json, which report.py reads)")
    parser.add_argument("--target", default="CPU")
    parser.add_argument("--subset-size", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)

    import openvino as ov

    entry = args.cache / args.entry
    args.out.mkdir(parents=True, exist_ok=True)
    files = {"float": {"path": str(entry / "model.onnx"), "bytes": (entry / "model.onnx").stat().st_size}}
    for fmt in ("qdq", "fakequantize"):
        out = args.out / f"{args.entry}.{fmt}.onnx"
        if out.exists():
            out.unlink()
        files[fmt] = quantize(entry / "model.onnx", entry / "calib", out, args.target, fmt, args.subset_size)
        print(f"{fmt}: {files[fmt]}", file=sys.stderr)

    core = ov.Core()
    compiled, precision, integer = {}, {}, {}
    for name, info in files.items():
        for f32 in (True, False):
            label = f"{name} {'f32 hint' if f32 else 'default'}"
            compiled[label] = compile_model(core, Path(info["path"]), args.threads, f32)
            resolved = compiled[label].get_property("INFERENCE_PRECISION_HINT")
            precision[label] = resolved.get_type_name() if hasattr(resolved, "get_type_name") else str(resolved)
            integer[label] = integer_layers(compiled[label])
    feeds = load_sample(sorted((entry / "eval").glob("*.npz"))[0])
    load_before = os.getloadavg()
    timings = time_interleaved(compiled, feeds, args.runs, args.rounds, args.warmup)
    load_after = os.getloadavg()
    eval_samples = [load_sample(p) for p in sorted((entry / "eval").glob("*.npz"))]
    reference = np.load(entry / "eval_reference.npy")
    agreement = {name: top1_agreement(compiled[f"{name} f32 hint"], eval_samples, reference) for name in files}

    results = {"command": " ".join(["python", "tools/bench/openvino_formats.py", *sys.argv[1:]]),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "entry": args.entry,
               "target": args.target, "subset_size": args.subset_size, "threads": args.threads,
               "runs": args.runs, "rounds": args.rounds, "warmup": args.warmup, "openvino": ov.__version__,
               "cpu_count": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": load_after,
               "files": files, "precision": precision, "integer_layers": integer, "latency": timings,
               "top1_agreement_openvino_f32": agreement}
    path = args.json
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(openvino_section(results)))
    print(f"wrote {path}; python tools/bench/report.py puts it into docs/benchmarks.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
