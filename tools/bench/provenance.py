"""Check that the plan is the whole truth on the benchmark corpus, for every target.

For each corpus model and target: quantize with a few calibration samples, then compare the output's
QuantizeLinear/DequantizeLinear nodes with the plan (their counts equal what the plan's FakeQuantizes,
requantized outputs and int32 biases call for; each names, in ``rewriter.source``, a decision found in the
plan's trails), and check that every node record of the plan has a trail. Prints one line per case and exits
1 if any case fails.

    python tools/bench/provenance.py [--cache .bench-cache/corpus] [--targets CPU,ORT] [--samples 16]
                                     [--out DIR]   # also save the quantized models there

Runs in the project venv (it needs only rewriter and onnx); the corpus comes from tools/bench/corpus.py.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import onnx

import rewriter
from rewriter.emit.provenance import expected_qdq_counts, provenance_problems
from rewriter.ir.normalize import normalize

REPO = Path(__file__).resolve().parents[2]
TARGETS = ("CPU", "GPU", "VPU", "GNA", "ANY", "ORT")


def check(model_path: Path, calib: Path, target: str, samples: int) -> tuple[bool, str, onnx.ModelProto]:
    result = rewriter.quantize(str(model_path), target=target, data=str(calib), subset_size=samples)
    out = result.model
    float_model = normalize(onnx.load(str(model_path))).model
    qdq = [n for n in out.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    counts = (sum(n.op_type == "QuantizeLinear" for n in qdq), sum(n.op_type == "DequantizeLinear" for n in qdq))
    problems = provenance_problems(float_model, result.plan, out)
    line = f"Q/DQ {counts} planned {expected_qdq_counts(float_model, result.plan)}; " + (
        "; ".join(problems[:3]) if problems else "every node names a decision of the plan")
    return not problems, line, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=str(REPO / ".bench-cache" / "corpus"))
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--out", default=None, help="save each quantized model as OUT/<model>.<target>.onnx")
    a = ap.parse_args(argv)
    entries = sorted(p.parent for p in Path(a.cache).glob("*/model.onnx"))
    if not entries:
        print(f"no corpus models under {a.cache}; build them with tools/bench/corpus.py", file=sys.stderr)
        return 2
    failed = 0
    for entry in entries:
        for target in a.targets.split(","):
            start = time.perf_counter()
            ok, line, out = check(entry / "model.onnx", entry / "calib", target, a.samples)
            failed += not ok
            took = time.perf_counter() - start
            print(f"{'ok  ' if ok else 'FAIL'} {entry.name:<12} {target:<4} {line} ({took:.1f} s)")
            if a.out:
                Path(a.out).mkdir(parents=True, exist_ok=True)
                onnx.save(out, str(Path(a.out) / f"{entry.name}.{target}.onnx"))
    print(f"{failed} of {len(entries) * len(a.targets.split(','))} cases failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
