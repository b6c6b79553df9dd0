"""The main job: float model + calibration data -> quantized model + report.

    load -> normalize -> plan -> [activation smoothing, plan again] -> [channel alignment] -> calibrate
         -> MinMax ranges -> [bias correction] -> [layer-wise tuning] -> emit -> report

Each stage is called once, in that order; this module only passes values
from one to the next and times them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from rewriter.algorithms.fq_math import fake_quantize
from rewriter.algorithms.minmax import (SAMPLE_REDUCER, activation_ranges, activation_reducers,
                                        sqnr_db, weight_ranges)
from rewriter.algorithms.bias_correction import (FAST_THRESHOLD, THRESHOLD, bias_constants, bias_correction,
                                                 bias_correction_subset, bias_reducers, bias_targets,
                                                 fast_bias_correction)
from rewriter.algorithms.channel_alignment import align_channels, alignment_pairs, alignment_reducers
from rewriter.algorithms.layerwise import float_layer_values, layerwise_subset, layerwise_tuning
from rewriter.algorithms.smoothing import smooth, smoothing_groups, smoothing_reducers
from rewriter.algorithms.types import TensorRange
from rewriter.targets import load_plan_inputs
from rewriter.calibrate.collect import collect_statistics
from rewriter.calibrate.data import model_inputs, open_data
from rewriter.calibrate.layer_runner import LayerRunner
from rewriter.emit.fakequantize import emit_fakequantize
from rewriter.emit.qdq import EmitResult, emit_qdq
from rewriter.errors import UserError
from rewriter.ir.edit import apply_weight_updates, insert_scales
from rewriter.ir.graph import GraphView
from rewriter.ir.load import load_model, save_model
from rewriter.ir.normalize import normalize
from rewriter.ir.tensors import initializer_arrays, slicing_axis
from rewriter.ir.view import graph_view
from rewriter.match.planner import PlanOptions, build_plan
from rewriter.options import QuantizeOptions
from rewriter.plan import Decision, FakeQuantizePoint, QuantPlan
from rewriter.report.plan_report import plan_dict

REPORT_SCHEMA = "rewriter.pipeline/1"
#: Weights larger than this have their SQNR measured on evenly spaced slices.
ERROR_SAMPLE_VALUES = 1 << 20


@dataclass(frozen=True)
class QuantizeResult:
    model: Any  # onnx.ModelProto
    plan: QuantPlan
    ranges: Mapping[str, TensorRange]
    report: dict

    def __iter__(self):
        """``model, report = rewriter.quantize(...)``."""
        return iter((self.model, self.report))


def quantize(model: str | Path | Any, data: Any, options: QuantizeOptions = QuantizeOptions()) -> QuantizeResult:
    """Quantize ``model`` (a path or an onnx.ModelProto) with calibration ``data``.

    ``data`` is a folder (.npy, .npz, images), a loader "module:function", or
    any iterable of input dicts.
    """
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(now - clock, 4)
        clock = now

    source = load_model(model) if isinstance(model, (str, Path)) else model
    normalized = normalize(source).model
    lap("load_normalize")
    inputs = load_plan_inputs(options.target, options.rules, options.model_type)
    model_name = Path(model).name if isinstance(model, (str, Path)) else (normalized.graph.name or "model")

    def make_plan(float_model: Any, pass_nodes: tuple[tuple[str, str], ...] = ()) -> QuantPlan:
        return build_plan(graph_view(float_model), inputs.spec, inputs.rules,
                          PlanOptions(options.preset, options.ignore_scope, options.ignore_ops, pass_nodes,
                                      options.quantizer_overrides),
                          model_name)

    plan = make_plan(normalized)
    lap("plan")

    calibration = open_data(data, model_inputs(normalized), image_options=options.image_options)
    ids = calibration.select(options.subset_size, options.seed)
    passes: dict[str, Any] = {}

    if options.smoothing is not None:
        normalized, pass_nodes, passes["smoothing"] = _smooth(normalized, plan, calibration, ids, options)
        plan = make_plan(normalized, pass_nodes)  # the inserted Muls are new nodes: plan them (float)
        lap("smoothing")

    graph = graph_view(normalized)

    if options.channel_alignment:
        normalized, passes["channel_alignment"] = _align(normalized, graph, plan, calibration, ids, options)
        lap("channel_alignment")

    reducers = activation_reducers(plan, options.ranges)
    targets = bias_targets(graph, plan) if options.bias_method else ()
    for tensor, extra in bias_reducers(targets).items():
        reducers.setdefault(tensor, []).extend(extra)
    collected = collect_statistics(normalized, sorted(reducers), reducers, calibration.iter_samples(ids),
                                   batch_size=options.batch_size, progress=options.progress,
                                   total=len(ids))
    lap("statistics")

    weight_names = [p.tensor for p in plan.points if p.role == "weight"]
    weights = initializer_arrays(normalized, weight_names + bias_constants(targets))
    ranges = {**weight_ranges(plan, {n: weights[n] for n in weight_names}, options.ranges),
              **activation_ranges(plan, collected.stats, options.ranges)}
    lap("ranges")

    float_model = normalized  # the float reference of layer-wise tuning (bias correction changes biases)
    if targets:
        normalized, passes["bias_correction"] = _correct_biases(
            normalized, graph, plan, targets, collected, ranges, weights, calibration, ids, options)
        lap("bias_correction")

    if options.layerwise_tuning:
        normalized, ranges, passes["layerwise_tuning"] = _tune_layers(
            normalized, float_model, plan, ranges, calibration, ids, options)
        lap("layerwise_tuning")

    emit = emit_fakequantize if options.output_format == "fakequantize" else emit_qdq
    try:
        emitted = emit(normalized, plan, ranges)
    except ValueError as error:
        raise UserError(f"cannot emit the quantized model: {error}") from None
    lap("emit")

    errors = _errors(plan, ranges, weights, collected.stats)
    lap("errors")
    report = _report(plan, ranges, emitted, errors, timings, collected.num_samples, options)
    report["passes"] = passes
    return QuantizeResult(emitted.model, plan, ranges, report)


def _smooth(model: Any, plan: QuantPlan, calibration: Any, ids: list[int],
            options: QuantizeOptions) -> tuple[Any, tuple[tuple[str, str], ...], dict]:
    """Activation smoothing: its own statistics pass, then rescaled weights and inserted Muls."""
    groups = smoothing_groups(graph_view(model), plan)
    if not groups:
        return model, (), {"alpha": options.smoothing, "smoothed": [],
                           "note": "no quantized MatMul/Gemm with a per-tensor activation input"}
    reducers = smoothing_reducers(groups)
    stats = collect_statistics(model, sorted(reducers), reducers, calibration.iter_samples(ids),
                               batch_size=options.batch_size, progress=options.progress, total=len(ids))
    weights = initializer_arrays(model, sorted({r.weight for g in groups for r in g.readers}))
    result = smooth(groups, stats.stats, weights, options.smoothing)  # type: ignore[arg-type]
    smoothed = insert_scales(apply_weight_updates(model, result.updates), result.insertions)
    return smoothed, tuple((name, "ActivationSmoothing") for name in result.inserted_nodes), result.report()


def _align(model: Any, graph: GraphView, plan: QuantPlan, calibration: Any, ids: list[int],
           options: QuantizeOptions) -> tuple[Any, dict]:
    """ActivationChannelAlignment: its own statistics pass, then new weights (float results unchanged)."""
    pairs = alignment_pairs(graph, plan)
    if not pairs:
        return model, {"aligned": [], "skipped": [], "note": "no Conv/MatMul pair qualifies"}
    reducers = alignment_reducers(pairs)
    stats = collect_statistics(model, sorted(reducers), reducers, calibration.iter_samples(ids),
                               batch_size=options.batch_size, progress=options.progress, total=len(ids))
    names = sorted({n for p in pairs for n in (p.w_in, p.b_in, p.w_out, p.b_out) if n})
    result = align_channels(pairs, stats.stats, initializer_arrays(model, names))
    return apply_weight_updates(model, result.updates), result.report()


def _correct_biases(model: Any, graph: GraphView, plan: QuantPlan, targets: Any, collected: Any,
                    ranges: Mapping[str, TensorRange], weights: Mapping[str, np.ndarray], calibration: Any,
                    ids: list[int], options: QuantizeOptions) -> tuple[Any, dict]:
    """FastBiasCorrection (default) or BiasCorrection: new biases, applied to a model copy."""
    runner = LayerRunner(model)
    try:
        if options.bias_correction == "fast":
            result = fast_bias_correction(targets, collected.stats, ranges, weights, collected.observed_shapes,
                                          runner.run, threshold=options.bias_threshold or FAST_THRESHOLD)
        else:
            subset = ids[:bias_correction_subset(len(ids))]
            all_weights = {**weights, **initializer_arrays(model, [p.tensor for p in plan.points
                                                                   if p.role == "weight" and p.tensor not in weights])}
            result = bias_correction(graph, plan, targets, collected.stats, ranges, all_weights,
                                     calibration.iter_samples(subset), runner.run,
                                     threshold=options.bias_threshold or THRESHOLD)
    finally:
        runner.clear()
    return apply_weight_updates(model, result.updates, result.new_biases), result.to_dict()


def _tune_layers(model: Any, float_model: Any, plan: QuantPlan, ranges: Mapping[str, TensorRange],
                 calibration: Any, ids: list[int], options: QuantizeOptions) -> tuple[Any, dict, dict]:
    """Layer-wise tuning: new weight ranges and biases, from the float model's layer inputs and outputs."""
    graph = graph_view(model)  # after bias correction: its added biases are the layers' biases now
    targets = bias_targets(graph, plan)
    if not targets:
        return model, dict(ranges), {"layers": [], "note": "no Conv/ConvTranspose/Gemm/MatMul with a quantized "
                                                           "constant weight"}
    values = initializer_arrays(model, sorted({t.weight for t in targets}) + bias_constants(targets))
    subset = ids[:layerwise_subset(len(ids), options.layerwise_samples)]
    float_runner, runner = LayerRunner(float_model), LayerRunner(model)
    try:
        reference = float_layer_values(graph_view(float_model), targets, calibration.iter_samples(subset),
                                       float_runner.run)
        result = layerwise_tuning(graph, plan, targets, ranges, values, reference, runner.run, options.ranges)
    finally:
        float_runner.clear()
        runner.clear()
    return (apply_weight_updates(model, result.updates, result.new_biases), {**ranges, **result.ranges},
            result.to_dict())


def quantize_file(model: str | Path, output: str | Path, data: Any,
                  options: QuantizeOptions = QuantizeOptions()) -> QuantizeResult:
    """Quantize a model file and write the result atomically; the input is never touched."""
    if Path(output).resolve() == Path(model).resolve():
        raise UserError(f"refusing to overwrite the input model {model}; give another -o path")
    result = quantize(model, data, options)
    save_model(result.model, output)
    return result


def _errors(plan: QuantPlan, ranges: Mapping[str, TensorRange], weights: Mapping[str, np.ndarray],
            stats: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, float]:
    """Per tensor, the SQNR (dB) of its FakeQuantize on the weights or on the calibration subsample."""
    result = {}
    for point in plan.points:
        rng = ranges[point.tensor]
        if point.role == "weight":
            values, axis = _weight_sample(np.asarray(weights[point.tensor]), rng.axis), rng.axis
        else:
            values = stats.get(point.tensor, {}).get(SAMPLE_REDUCER)
            if values is None:
                continue
            axis = 1 if rng.axis is not None and values.ndim == 3 else None
        fq = fake_quantize(np.asarray(values, np.float32), rng.input_low, rng.input_high, rng.levels,
                           axis=axis if np.ndim(rng.input_low) else None)
        result[point.tensor] = round(sqnr_db(values, fq), 3)
    return result


def _weight_sample(values: np.ndarray, channel_axis: int | None, limit: int = ERROR_SAMPLE_VALUES) -> np.ndarray:
    """Evenly spaced slices of a large weight, along an axis that is not its channel axis.

    The SQNR of an embedding table (MiniLM: 11.7M values) measured whole cost 250 MB of float64
    temporaries; a million values estimate it as well, and every channel keeps its values.
    """
    along = slicing_axis(values, channel_axis, limit)
    if along is None:
        return values
    step = -(-values.size // limit)
    return np.take(values, np.arange(0, values.shape[along], step), axis=along)


def _report(plan: QuantPlan, ranges: Mapping[str, TensorRange], emitted: EmitResult, errors: Mapping[str, float],
            timings: Mapping[str, float], samples: int, options: QuantizeOptions) -> dict:
    report = plan_dict(plan)
    report["schema"] = REPORT_SCHEMA
    report["options"] = {"target": options.target, "preset": options.preset, "subset_size": options.subset_size,
                         "seed": options.seed, "format": options.output_format,
                         "estimator_preset": options.ranges.estimator_preset}
    report["calibration"] = {"samples": samples}
    report["timings_s"] = dict(timings)
    emitted_by_tensor = {t.tensor: t for t in emitted.tensors if t.role in ("activation", "weight")}
    for entry in report["fakequantize"]:
        rng = ranges[entry["tensor"]]
        done = emitted_by_tensor.get(entry["tensor"])
        entry["range"] = {"input_low": _list(rng.input_low), "input_high": _list(rng.input_high),
                          "level_low": rng.level_low, "level_high": rng.level_high, "levels": rng.levels}
        if done is not None:
            entry["scale"] = list(done.scale)
            entry["zero_point"] = list(done.zero_point)
            entry["storage_dtype"] = done.storage_dtype
        entry["sqnr_db"] = errors.get(entry["tensor"])
    report["emitted_extra"] = [{"tensor": t.tensor, "role": t.role, "storage_dtype": t.storage_dtype}
                               for t in emitted.tensors if t.role not in ("activation", "weight")]
    return report


def _list(array: np.ndarray) -> list[float] | float:
    values = np.asarray(array, dtype=np.float64)
    return float(values) if values.ndim == 0 else [float(v) for v in values]


_ = (Iterable, Sequence, FakeQuantizePoint)
