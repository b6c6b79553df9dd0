"""Intel Neural Compressor's accuracy-driven tuning on one corpus entry, for tools/bench/accuracy_control.py.

    /work/incvenv/bin/python tools/bench/inc_accuracy_control.py --entry DIR --max-drop 0.001 \\
        --out OUT.onnx --result OUT.json [--calib DIR] [--drop-type absolute] [--max-trials 100] \\
        [--quant-format default] [--weights-per-tensor]

Runs in its own venv (tools/bench/requirements-inc.txt): neural-compressor 3.7.1, the last release with
the ONNX Runtime backend, pins numpy below 2, which the bench venv cannot take. The parent process starts
this script, so one benchmark invocation runs every tool on the same entry.

The tuning is Neural Compressor's 2.x API: `PostTrainingQuantConfig` (static, the given ONNX format),
`AccuracyCriterion` with the same limit as the other tools and `TuningCriterion(strategy="basic")`. The
calibration set is every sample in `--calib` (default: the entry's `calib/`) at batch 1; the other tools
take up to 300, which is all of it on the corpus entries. The metric is the benchmark's own
(accuracy_control_metric.py: top-1 on `eval/`); every call of the eval function is one metric
evaluation, the float model's included, as the other tools count theirs.

`--weights-per-tensor` restricts the weight granularity of every op type whose weights Neural
Compressor's ONNX Runtime capability lets it quantize per channel (Conv, FusedConv, MatMul, Gemm and the
Gather family) to per_tensor, through the config's op-type-wise constraints; the tuning still chooses
everything else (which ops stay float, the activation algorithm).

The result JSON has the float metric, every metric value in call order, the final metric (measured again
on the saved file, not counted) and, when no configuration met the limit, `met: false` and no model.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy_control_metric import accuracy_of_session, eval_labels  # noqa: E402  (numpy and onnxruntime only)


# The op types whose weights the ONNX Runtime capability (neural_compressor/adaptor/onnxrt.yaml, static
# int8) offers per_channel as well as per_tensor; the other ops' weights are per_tensor already.
PER_CHANNEL_WEIGHT_OPS = ("Conv", "FusedConv", "MatMul", "Gemm", "Gather", "GatherElements", "GatherND")


def _samples(folder: Path) -> list[dict[str, np.ndarray]]:
    return [dict(np.load(p)) for p in sorted(folder.glob("*.npz"))]


class _CalibrationLoader:
    """The shape Neural Compressor's ONNX calibration reads: `batch_size` and (inputs, label) pairs.

    Batch 1 with the inputs as a dict by name, so models with several inputs or a fixed batch dim work
    unchanged; the label is never used by calibration."""

    def __init__(self, samples: list[dict[str, np.ndarray]]) -> None:
        self.samples = samples
        self.batch_size = 1

    def __iter__(self) -> Iterator[tuple[dict[str, np.ndarray], int]]:
        for sample in self.samples:
            yield sample, 0


def _session(model: Any) -> ort.InferenceSession:
    """Neural Compressor hands the eval function a ModelProto, or a path for models over 2 GB."""
    source = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(source, providers=["CPUExecutionProvider"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entry", type=Path, required=True)
    parser.add_argument("--calib", type=Path, help="calibration samples (default: the entry's calib/)")
    parser.add_argument("--max-drop", type=float, required=True)
    parser.add_argument("--drop-type", choices=["absolute", "relative"], default="absolute")
    parser.add_argument("--max-trials", type=int, default=100, help="TuningCriterion.max_trials (its default)")
    parser.add_argument("--quant-format", choices=["default", "QDQ", "QOperator"], default="default",
                        help="PostTrainingQuantConfig.quant_format; default is QOperator for ONNX Runtime")
    parser.add_argument("--weights-per-tensor", action="store_true",
                        help="one weight scale per tensor: op-type-wise weight granularity per_tensor for "
                             + ", ".join(PER_CHANNEL_WEIGHT_OPS))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()

    import neural_compressor
    from neural_compressor import PostTrainingQuantConfig, quantization
    from neural_compressor.config import AccuracyCriterion, TuningCriterion

    calib = _samples(args.calib or args.entry / "calib")
    labels = eval_labels(args.entry)
    eval_items = [(s, int(y)) for s, y in zip(_samples(args.entry / "eval"), labels)]
    values: list[float] = []

    def eval_func(model: Any) -> float:
        value = accuracy_of_session(_session(model), eval_items)[0]
        values.append(value)
        return value

    # None: the capability's own choices (per_channel first where offered)
    op_type_dict = ({op: {"weight": {"granularity": ["per_tensor"]}} for op in PER_CHANNEL_WEIGHT_OPS}
                    if args.weights_per_tensor else None)
    config = PostTrainingQuantConfig(
        approach="static", quant_format=args.quant_format, device="cpu", backend="default",
        calibration_sampling_size=[len(calib)], op_type_dict=op_type_dict,
        accuracy_criterion=AccuracyCriterion(higher_is_better=True, criterion=args.drop_type,
                                             tolerable_loss=args.max_drop),
        tuning_criterion=TuningCriterion(strategy="basic", max_trials=args.max_trials))
    start = time.perf_counter()
    quantized = quantization.fit(onnx.load(args.entry / "model.onnx"), config,
                                 calib_dataloader=_CalibrationLoader(calib), eval_func=eval_func)
    seconds = time.perf_counter() - start
    base = values[0]  # the tuning measures the float model first
    allowed = args.max_drop * (abs(base) if args.drop_type == "relative" else 1.0)
    result: dict[str, Any] = {
        "tool": "inc", "inc_version": neural_compressor.__version__, "float": base,
        "initial": values[1] if len(values) > 1 else None, "metric_evaluations": len(values),
        "samples_evaluated": len(values) * len(eval_items), "trials": values, "fit_s": round(seconds, 2),
        "quant_format": args.quant_format, "max_trials": args.max_trials, "allowed_drop": allowed,
        "weights": "per_tensor" if args.weights_per_tensor else "default"}
    if quantized is None:
        # Neural Compressor returns nothing when no trial met the limit: there is no model to time. It also
        # logs and skips a trial whose quantization raised, so a run with the float evaluation alone means
        # no configuration could be quantized at all (the reason is in its log).
        result.update(final=None, final_drop=None, met=False, model=None,
                      note="no quantized model: no trial met the limit" if len(values) > 1
                      else "no quantized model: every quantization attempt failed (see the log)")
    else:
        quantized.save(str(args.out))
        final = accuracy_of_session(_session(str(args.out)), eval_items)[0]
        result.update(final=final, final_drop=round(base - final, 6), met=base - final <= allowed + 1e-12,
                      model=str(args.out))
    args.result.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
