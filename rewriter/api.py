"""The Python API: thin functions that chain the stages.

    >>> from rewriter import audit, quantize
    >>> plan = audit("examples/tiny_cnn.onnx", target="CPU")   # doctest: +SKIP
    >>> model, report = quantize("examples/tiny_cnn.onnx", target="CPU",
    ...                          data="examples/calib")         # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rewriter.choices import (DEFAULT_TARGETS, BiasCorrection, ModelType, OptimizeFor, OutputFormat, Preset,
                              SaturationFix)
from rewriter.errors import UserError
from rewriter.ir.graph import GraphView
from rewriter.ir.load import load_model
from rewriter.ir.normalize import normalize_taken
from rewriter.ir.view import graph_view
from rewriter.io_utils import read_utf8
from rewriter.match.planner import IgnoredOperation, PlanOptions, RevertRequest, build_plan
from rewriter.match.saturation import fix_saturation
from rewriter.plan import QuantPlan
from rewriter.targets import PlanInputs, load_plan_inputs

# What only quantize, why or a report's reverts need is imported where they run: an audit, which runs none
# of them, would otherwise load the config reader, the calibration and tuning modules and onnxruntime
# (a third of its start-up).
if TYPE_CHECKING:
    from rewriter.algorithms.minmax import RangeOptions
    from rewriter.calibrate.data import ImageOptions
    from rewriter.match.explain import NodeExplanation
    from rewriter.pipeline import QuantizeResult
    from rewriter.tuning.accuracy_aware import AccuracyAwareSettings
    from rewriter.tuning.tpe_settings import TpeSettings

_log = logging.getLogger(__name__)

__all__ = ["PlanInputs", "audit", "load_plan_inputs", "plan_graph", "quantize", "reverts_in_report", "why"]


def plan_graph(graph: GraphView, inputs: PlanInputs, options: PlanOptions, model_name: str = "",
               saturation_fix: str | None = None) -> QuantPlan:
    """The plan for ``graph``: placement by the rules, then the target's (or the given) saturation fix."""
    return fix_saturation(build_plan(graph, inputs.spec, inputs.rules, options, model_name), graph, inputs.spec,
                          saturation_fix)


def audit(model: str | Path, target: str = DEFAULT_TARGETS["qdq"], rules: Sequence[str | Path] = (),
          ignore_scope: Sequence[str] = (), ignore_ops: Sequence[str | IgnoredOperation] = (),
          preset: str = "performance", model_type: str | None = None,
          saturation_fix: str | None = None, reverted: Sequence[RevertRequest] = ()) -> QuantPlan:
    """Plan where FakeQuantize goes in ``model`` for ``target``, without touching any data.

    Args:
        model: path to an .onnx file.
        target: a built-in target name (CPU, GPU, VPU, GNA, ANY, ORT) or a spec file path; default ORT, the
            placement of quantize's default QDQ output.
        rules: extra rule files, applied after the target's own.
        ignore_scope: node names to keep in float.
        ignore_ops: op types (or IgnoredOperation with attribute filters) to keep in float.
        preset: performance, mixed or accuracy.
        model_type: "transformer" adds the transformer rule set.
        saturation_fix: first_layer, all or no: which layers get 7-bit weights (default: the target's).
        reverted: nodes a measured search returned to float, with their reasons (``reverts_in_report``).
    """
    return _audit(model, target, rules, ignore_scope, ignore_ops, preset, model_type, saturation_fix, reverted)[2]


def reverts_in_report(path: str | Path, target: str | None = None) -> tuple[RevertRequest, ...]:
    """The reverts recorded in a quantize report (``--report``): the fidelity guard's, the speed guard's and
    the accuracy-aware search's, with their measured reasons.

    Raises:
        UserError: the file is not JSON, or not a quantize report, or (``target`` given) it was made for
            another target: the reverts belong to that target's plan.
    """
    from rewriter.tuning.accuracy_aware import ACCURACY_AWARE_SOURCE
    from rewriter.tuning.guard import GUARD_SOURCE
    from rewriter.tuning.speed_decisions import SPEED_SOURCE, speed_revert_companion
    from rewriter.tuning.tpe_settings import TPE_SOURCE

    # The decision source of each measured search's reverts, by the algorithm a report names.
    search_sources = {"AccuracyAwareQuantization": ACCURACY_AWARE_SOURCE, "TPE": TPE_SOURCE}
    text = read_utf8(path)
    try:
        report = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}:{error.lineno}:{error.colno}: not JSON: {error.msg}") from None
    if not isinstance(report, dict) or report.get("schema") != "rewriter.pipeline/1":
        raise UserError(f"{path}: not a quantize report (schema rewriter.pipeline/1); write one with "
                        "`rewriter quantize ... --report FILE`")
    made_for = str((report.get("options") or {}).get("target", ""))
    if target is not None and made_for and not _same_target(made_for, target):
        raise UserError(f"{path}: the report was made for target {made_for}, not {target}; audit with "
                        f"--target {made_for} (and the quantize run's --rules) to see its plan")
    guard = (report.get("fidelity") or {}).get("guard") or {}
    search = report.get("search") or {}
    found: list[RevertRequest] = []
    for where, section, source in (("fidelity.guard", guard, GUARD_SOURCE), ("search", search, search_sources)):
        reverts = section.get("reverts") or []
        if not all(isinstance(r, dict) and isinstance(r.get("node"), str) for r in reverts):
            raise UserError(f"{path}: {where}.reverts must be a list of objects with a node name")
        by = source if isinstance(source, str) else source.get(str(section.get("algorithm")), "search")
        found.extend(RevertRequest(r["node"], by, str(r.get("reason", ""))) for r in reverts)
    speed = (report.get("speed") or {}).get("reverts") or []
    if not all(isinstance(r, dict) and isinstance(r.get("node"), str) and isinstance(r.get("with", []), list)
               for r in speed):
        raise UserError(f"{path}: speed.reverts must be a list of objects with a node name and a 'with' list")
    for r in speed:
        found.append(RevertRequest(r["node"], SPEED_SOURCE, str(r.get("reason", ""))))
        found.extend(RevertRequest(str(m), SPEED_SOURCE, speed_revert_companion(r["node"])) for m in r.get("with", []))
    unique = {request.node: request for request in reversed(found)}  # a node's first decision wins
    return tuple(unique[r.node] for r in dict.fromkeys(found) if unique[r.node] is r)


def _same_target(a: str, b: str) -> bool:
    """Two ways of naming one target: the same built-in name (any case) or the same spec file."""
    if Path(a).is_file() and Path(b).is_file():
        return Path(a).resolve() == Path(b).resolve()
    return a.upper() == b.upper()


def why(model: str | Path, nodes: Sequence[str], target: str = DEFAULT_TARGETS["qdq"], rules: Sequence[str | Path] = (),
        ignore_scope: Sequence[str] = (), ignore_ops: Sequence[str | IgnoredOperation] = (),
        preset: str = "performance", model_type: str | None = None, saturation_fix: str | None = None,
        reverted: Sequence[RevertRequest] = ()) -> tuple[QuantPlan, tuple[NodeExplanation, ...]]:
    """Plan as ``audit`` does, and explain the named nodes: rules tried, how far each got, spec entry.

    Raises:
        UserError: a node name the (normalized) model does not have, with the closest names.
    """
    graph, inputs, plan = _audit(model, target, rules, ignore_scope, ignore_ops, preset, model_type, saturation_fix,
                                 reverted)
    from rewriter.match.explain import explain_nodes

    return plan, explain_nodes(graph, inputs.spec, inputs.rules, plan, nodes)


def _audit(model: str | Path, target: str, rules: Sequence[str | Path], ignore_scope: Sequence[str],
           ignore_ops: Sequence[str | IgnoredOperation], preset: str,
           model_type: str | None, saturation_fix: str | None,
           reverted: Sequence[RevertRequest]) -> tuple[GraphView, PlanInputs, QuantPlan]:
    start = time.perf_counter()
    inputs = load_plan_inputs(target, rules, model_type)
    normalized = normalize_taken([load_model(model)])
    graph = graph_view(normalized.model, normalized.rows, in_order=True)
    # Planning reads the view only: the normalized protobuf and its node rows are let go now,
    # not when the plan is done.
    del normalized
    _log.info("target %s and %s (%d nodes) loaded: %.2f s", inputs.spec.name, model, len(graph.nodes),
              time.perf_counter() - start)
    options = PlanOptions(preset=preset, ignore_scope=tuple(ignore_scope),
                          ignore_ops=tuple(o if isinstance(o, IgnoredOperation) else IgnoredOperation(o)
                                           for o in ignore_ops), reverted=tuple(reverted))
    known = {n.name for n in graph.nodes}
    missing = [r.node for r in reverted if r.node not in known]
    if missing:
        raise UserError(f"the report's reverts name node(s) {', '.join(missing)}, which {model} does not have: "
                        "audit the float model the report was made from")
    start = time.perf_counter()
    plan = plan_graph(graph, inputs, options, Path(model).name, saturation_fix)
    _log.info("plan: %d FakeQuantize, %d node(s) quantized: %.2f s", len(plan.points),
              sum(1 for n in plan.nodes if n.status == "quantized"), time.perf_counter() - start)
    return graph, inputs, plan


def quantize(model: str | Path | Any, data: Any = None, target: str | None = None,
             config: str | Path | None = None, *,
             preset: Preset | None = None, subset_size: int | None = None, seed: int | None = None,
             output_format: OutputFormat | None = None, rules: str | Path | Sequence[str | Path] | None = None,
             ignore_scope: str | Sequence[str] | None = None,
             ignore_ops: Sequence[str | IgnoredOperation] | None = None, model_type: ModelType | None = None,
             saturation_fix: SaturationFix | None = None,
             estimator_preset: Literal["default", "quantile"] | None = None, ranges: RangeOptions | None = None,
             smoothing: float | None = None, channel_alignment: bool | None = None,
             bias_correction: BiasCorrection | bool | None = None, bias_threshold: float | None = None,
             layerwise_tuning: bool | None = None, layerwise_samples: int | None = None,
             batch_size: int | None = None, image_options: ImageOptions | None = None, progress: bool | None = None,
             self_check: bool | None = None, check_samples: int | None = None, guard: bool | None = None,
             guard_threshold: float | None = None, guard_budget: int | None = None,
             guard_batch: int | None = None, speed_guard: bool | None = None,
             optimize_for: OptimizeFor | None = None, speed_cache: bool | str | Path | None = None,
             metric: Any = None,
             metric_lower_is_better: bool = False,
             accuracy_aware: AccuracyAwareSettings | dict[str, Any] | None = None,
             tpe: TpeSettings | dict[str, Any] | bool | None = None) -> QuantizeResult:
    """Quantize ``model`` for ``target`` with calibration ``data``; the model given is not modified.

    Every keyword left at None takes the config file's value when ``config`` sets it, else the default
    shown in brackets (the command line's default too; docs/api.md).

    Args:
        model: path to an .onnx file, or an onnx.ModelProto.
        data: a folder of .npy/.npz/images (or one ``<input>.npy`` per input), a .npy/.npz file, a loader
            "module:function", a bare array (single-input models) or a dict of input name -> array whose
            rows are the samples, a list of sample dicts (a seeded subset), or any other iterable,
            generator or iterator of them (its first ``subset_size`` samples); docs/calibration-data.md.
            Default: the config file's engine.data_source.
        target: CPU, GPU, VPU, GNA, ANY, ORT or a spec file path (default: the config file's target_device,
            else ORT for QDQ output and ANY for output_format="fakequantize").
        config: the original tool's configuration file (JSON or YAML, docs/config.md).
        preset: performance (symmetric activations), mixed or accuracy [performance].
        subset_size: calibration samples taken, a seeded choice [300].
        seed: the seed of that choice and of the held-out check samples [0].
        output_format: "qdq" (QuantizeLinear/DequantizeLinear) or "fakequantize" (OpenVINO) [qdq].
        rules: extra rule files (rules/*.rules syntax), applied after the target's own.
        ignore_scope: node names kept in float.
        ignore_ops: op types, or IgnoredOperation with attribute filters, kept in float.
        model_type: "transformer" adds the target's transformer rule set.
        saturation_fix: first_layer, all or no: which layers get 7-bit weights [the target's].
        estimator_preset: range estimators: "default" (min/max) or "quantile" [default].
        ranges: range estimation with per-role overrides (RangeOptions); estimator_preset replaces its preset.
        smoothing: activation smoothing (SmoothQuant) strength alpha in (0, 1) [off].
        channel_alignment: ActivationChannelAlignment before the ranges [False].
        bias_correction: "fast", "full" or "none" (False means "none") [none].
        bias_threshold: a layer's corrected bias is kept when its largest relative change is below this
            [2.0 for fast, 1000 for full, the original tool's defaults].
        layerwise_tuning: tune weight ranges and biases layer by layer after the ranges [False].
        layerwise_samples: samples the layer-wise tuning uses [16].
        batch_size: samples per inference while calibrating [up to 8, fewer when one run's tensors would
            pass 256 MiB; 1 when the model cannot take a batch].
        image_options: how image files become input tensors (rewriter.calibrate.images.ImageOptions).
        progress: draw a progress line on stderr when it is a terminal [False].
        self_check: run the output against the float model on held-out samples [True].
        check_samples: held-out samples of the self-check [32].
        guard: revert quantized nodes to float while the worst output SQNR is below the threshold [True].
        guard_threshold: that threshold, in dB [12].
        guard_budget: re-measurements the guard may spend [12].
        guard_batch: candidates the guard reverts per growing step [8].
        speed_guard: revert quantized groups onnxruntime runs slower than float [True for QDQ output on ORT].
        optimize_for: "latency" (any slower group reverts) or "size" (only groups without weights)
            [latency].
        speed_cache: where the speed guard keeps its measured decisions, so that the same run on this
            machine gives the same output again: True the user's cache folder, a folder, or False (measure
            every time) [True].
        metric: your accuracy metric, ``metric(model_path) -> float`` (or ``(float, per-sample floats)``),
            or its name "FILE.py:FUNCTION" / "module:function"; with it, AccuracyAwareQuantization runs
            (docs/accuracy-aware.md).
        metric_lower_is_better: the metric is an error, not an accuracy [False].
        accuracy_aware: its settings: an ``AccuracyAwareSettings``, or a dict of its fields (maximal_drop,
            drop_type, max_iter_num, ...) [the config file's AccuracyAwareQuantization entry, else the
            original tool's defaults: maximal_drop 0.01, absolute].
        tpe: run the TPE search instead (needs optuna): a ``TpeSettings``, a dict of its fields
            (max_trials, max_minutes, maximal_drop, drop_type, groups, storage, workers, ray, ...) or True.

    Returns:
        The ``QuantizeResult``: ``.model`` (the quantized onnx.ModelProto), ``.report`` (the report the
        command line's ``--report`` writes, schema ``rewriter.pipeline/1``, docs/report-schema.md),
        ``.plan`` and ``.ranges``; it unpacks as ``model, report = quantize(...)``.

    Raises:
        UserError: bad input (the message names the file, line:column or node).
        RuntimeRefused: onnxruntime (or OpenVINO) cannot load or run the quantized model (the self-check,
            docs/fidelity.md); its message names the node.
    """
    # Imported here so that audit and why, which never calibrate, do not pay for loading onnxruntime
    # and the numeric passes.
    from rewriter.config import load_config, merge_cli, preset_notice
    from rewriter.config.pot_keys import NOT_IMPLEMENTED
    from rewriter.pipeline import quantize as run_pipeline
    from rewriter.tuning.accuracy_aware import AccuracyAwareSettings
    from rewriter.tuning.tpe_settings import TpeSettings

    options: dict[str, Any] = {
        "preset": preset, "subset_size": subset_size, "seed": seed, "output_format": output_format,
        "rules": rules, "ignore_scope": ignore_scope, "ignore_ops": ignore_ops, "model_type": model_type,
        "saturation_fix": saturation_fix, "estimator_preset": estimator_preset, "ranges": ranges,
        "smoothing": smoothing, "channel_alignment": channel_alignment, "bias_correction": bias_correction,
        "bias_threshold": bias_threshold, "layerwise_tuning": layerwise_tuning,
        "layerwise_samples": layerwise_samples, "batch_size": batch_size, "image_options": image_options,
        "progress": progress, "self_check": self_check, "check_samples": check_samples, "guard": guard,
        "guard_threshold": guard_threshold, "guard_budget": guard_budget, "guard_batch": guard_batch,
        "speed_guard": speed_guard, "optimize_for": optimize_for,
        "speed_cache": str(speed_cache) if isinstance(speed_cache, Path) else speed_cache}
    for key in ("rules", "ignore_scope"):
        value = options[key]
        if isinstance(value, (str, Path)):
            options[key] = (str(value),)
        elif value is not None:
            options[key] = tuple(str(v) for v in value)
    if options["ignore_ops"] is not None:
        options["ignore_ops"] = tuple(o if isinstance(o, IgnoredOperation) else IgnoredOperation(o)
                                      for o in options["ignore_ops"])
    if options["bias_correction"] is False:  # the API's spelling of "none" before BiasCorrection had one
        options["bias_correction"] = "none"
    loaded = load_config(config) if config is not None else None
    for notice in (*loaded.warnings, *loaded.unsupported) if loaded else ():
        warnings.warn(notice.render(), stacklevel=2)
    overrides = {**options, "target": target}
    merged = merge_cli(loaded, overrides)
    renamed = preset_notice(loaded, overrides, merged)
    if renamed is not None:
        warnings.warn(renamed.render(), stacklevel=2)
    data = data if data is not None else (loaded.checked_data_source() if loaded else None)
    if data is None:
        raise UserError("rewriter.quantize: no calibration data; pass data=..., or engine.data_source in the config")
    if metric is None:
        if accuracy_aware is not None or tpe is not None:
            raise UserError("rewriter.quantize: accuracy_aware and tpe need metric=, a function of a model path")
        if loaded is not None and loaded.accuracy_aware is not None:
            warnings.warn(NOT_IMPLEMENTED["AccuracyAwareQuantization"].format(
                base=loaded.accuracy_aware.base_algorithm), stacklevel=2)
        return run_pipeline(model, data, merged)
    from rewriter.search.accuracy_aware import quantize_accuracy_aware
    from rewriter.search.metric import Metric, load_metric

    function = load_metric(metric) if isinstance(metric, str) else metric
    named = Metric(function, metric if isinstance(metric, str) else None, metric_lower_is_better)
    if tpe is not None and tpe is not False:
        from rewriter.search.tpe import quantize_tpe

        chosen = tpe if isinstance(tpe, TpeSettings) else dataclasses.replace(
            (loaded.tpe if loaded else None) or TpeSettings(), **(tpe if isinstance(tpe, dict) else {}))
        return quantize_tpe(model, data, merged, chosen, named)
    settings = accuracy_aware if isinstance(accuracy_aware, AccuracyAwareSettings) else dataclasses.replace(
        (loaded.accuracy_aware if loaded else None) or AccuracyAwareSettings(), **(accuracy_aware or {}))
    return quantize_accuracy_aware(model, data, merged, settings, named)
