"""The main job: float model + calibration data -> quantized model + report.

    load -> normalize -> plan -> [float passes: activation smoothing (plan again), channel alignment]
         -> statistics -> MinMax ranges -> [quantized passes: bias correction, layer-wise tuning] -> emit
         -> self-check [-> fidelity guard: re-plan with reverts, re-emit, re-measure]
         [-> speed guard (QDQ for onnxruntime): profile, re-plan with reverts, re-emit, re-profile] -> report

Each stage is called once, in that order; this module only passes values
from one to the next and times them. The numeric passes keep one contract
(``rewriter.passes.base``); the report is assembled in
``rewriter.report.quantize_report``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from rewriter.algorithms.minmax import activation_ranges, activation_reducers, population_ranges, weight_ranges
from rewriter.algorithms.types import TensorRange
from rewriter.targets import load_plan_inputs
from rewriter.calibrate.branches import inline_taken_branches
from rewriter.calibrate.collect import collect_statistics
from rewriter.calibrate.data import model_inputs, open_data
from rewriter.emit.fakequantize import emit_fakequantize
from rewriter.emit.provenance import provenance_problems
from rewriter.emit.qdq import emit_qdq
from rewriter.emit.qdq_params import check_qdq_float_types
from rewriter.io_utils import check_outputs
from rewriter.ir.edit import restore_initializers
from rewriter.ir.graph import GraphView
from rewriter.ir.load import load_model, save_model
from rewriter.ir.normalize import normalize, normalize_taken
from rewriter.ir.tensors import initializer_arrays
from rewriter.ir.view import graph_view
from rewriter.match.planner import PlanOptions, RevertRequest, build_plan
from rewriter.match.saturation import fix_saturation
from rewriter.options import QuantizeOptions
from rewriter.passes import InsertedNode, PassContext, enabled_passes
from rewriter.plan import QuantPlan
from rewriter.report.quantize_report import quantization_errors, quantize_report
from rewriter.tuning.check_run import Emitter, check_and_guard
from rewriter.tuning.self_check import SelfCheck, held_out_ids
from rewriter.tuning.speed_guard import SpeedChecked, guard_speed, speed_guard_applies

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuantizeResult:
    """What ``rewriter.quantize`` returns; it unpacks as ``model, report = rewriter.quantize(...)``.

    Attributes:
        model: the quantized onnx.ModelProto (``onnx.save`` it, or ``rewriter.ir.load.save_model`` for
            the command line's atomic, byte-identical write; a model read from a file with 1.8 GB or more
            of external data may still refer to that file for float weights: ``save_model`` copies them).
        plan: the ``QuantPlan`` the model was emitted from: every FakeQuantize, requantized output and
            int32 bias, and every node's status and reason with the trail (file:line:column) that decided
            it; after the fidelity guard's reverts, if any.
        ranges: tensor name -> its FakeQuantize range (``input_low``/``input_high``, levels, axis).
        report: the report the command line's ``--report`` writes (schema ``rewriter.pipeline/1``,
            docs/report-schema.md): the plan as JSON plus ranges, scales, per-tensor SQNR, timings, each
            pass's results and the self-check's figures.
        inserted: nodes the numeric passes added to the graph, each with the pass that made it.
    """

    model: Any  # onnx.ModelProto; typed Any because this layer does not import onnx
    plan: QuantPlan
    ranges: Mapping[str, TensorRange]
    report: dict[str, Any]
    inserted: tuple[InsertedNode, ...] = ()
    search: SearchHooks | None = None  # for the accuracy-driven searches (rewriter.search)

    def __iter__(self) -> Iterator[Any]:
        """``model, report = rewriter.quantize(...)``."""
        return iter((self.model, self.report))


def quantize(model: str | Path | Any, data: Any, options: QuantizeOptions = QuantizeOptions(),
             search_hooks: bool = False) -> QuantizeResult:
    """Quantize ``model`` (a path or an onnx.ModelProto) with calibration ``data``.

    ``data`` is any source ``rewriter.calibrate.data.open_data`` takes: a folder (.npy, .npz, images, one
    ``<input>.npy`` per input), a .npy/.npz file, a loader "module:function", a stacked array or dict of
    them, a list or any iterable of samples (docs/calibration-data.md). ``search_hooks``: keep in the result
    what a measured search needs to revert nodes afterwards (``SearchHooks``; it holds the float model and
    the statistics, so only when asked).
    """
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(now - clock, 4)
        _log.info("%s: %.2f s", stage, now - clock)
        clock = now

    # A model loaded here is normalized in place, not copied (over 2 GB, a second copy of the weights
    # counts), and let go early where onnx's inferred model replaces it. A caller's model is copied, never
    # changed.
    normalized = (normalize_taken([load_model(model)]) if isinstance(model, (str, Path)) else normalize(model)).model
    calibration = open_data(data, model_inputs(normalized), image_options=options.image_options)
    ids = calibration.select(options.subset_size, options.seed)
    _log.info("calibration: %d sample(s) of %s, seed %d", len(ids),
              calibration.size if calibration.size is not None else "an unsized source", options.seed)
    # A top-level If that every sample sends one way is quantized inside that branch; restored at the end.
    branches = inline_taken_branches(normalized, lambda: calibration.iter_samples(ids))
    working = branches.model
    lap("load_normalize")
    inputs = load_plan_inputs(options.target, options.rules, options.model_type)
    model_name = Path(model).name if isinstance(model, (str, Path)) else (normalized.graph.name or "model")

    def make_plan(float_model: Any, pass_nodes: tuple[tuple[str, str], ...] = (),
                  reverted: tuple[RevertRequest, ...] = ()) -> QuantPlan:
        graph = graph_view(float_model)
        planned = build_plan(graph, inputs.spec, inputs.rules,
                             PlanOptions(options.preset, options.ignore_scope, options.ignore_ops, pass_nodes,
                                         options.quantizer_overrides, reverted, options.ignore_scope_sources),
                             model_name)
        # After the config file's quantizer overrides (applied by the planner): they may set the full 8-bit
        # range the fix narrows.
        return fix_saturation(planned, graph, inputs.spec, options.saturation_fix)

    plan = make_plan(working)
    if options.output_format == "qdq":  # before calibration: a model no QDQ pair fits costs no data pass
        check_qdq_float_types(working, [p.tensor for p in plan.points])
    lap("plan")

    passes = enabled_passes(options)
    reports: dict[str, dict] = {}
    inserted: list[InsertedNode] = []
    context = PassContext(working, graph_view(working), plan, calibration, tuple(ids), options)

    for step in (p for p in passes if p.phase == "float"):
        result = step(context)
        context = context.after(result)
        reports[step.name] = result.report
        if result.inserted:  # new nodes: plan them, kept float
            inserted.extend(result.inserted)
            context = replace(context, plan=make_plan(context.model, tuple((n.node, n.made_by) for n in inserted)))
        lap(step.name)

    float_pass_nodes = tuple((n.node, n.made_by) for n in inserted)  # what the plan was made with
    plan, quantized_passes = context.plan, [p for p in passes if p.phase == "quantized" and p.applies(context)]
    reducers = activation_reducers(plan, options.ranges)
    served = ["ranges"]  # named on the progress line
    for step in quantized_passes:
        extras = step.reducers(context)
        for tensor, extra in extras.items():
            reducers.setdefault(tensor, []).extend(extra)
        if extras:
            served.append(step.name.replace("_", " "))
    # The samples the branch count kept in memory, else read again.
    samples = branches.samples if branches.samples is not None else calibration.iter_samples(ids)
    held_out = held_out_ids(calibration.size or len(ids), ids, options.check_samples, options.seed)
    # Check samples that are calibration samples: the statistics pass gives the float outputs the self-check
    # compares with, unless a float pass changed the model it runs.
    reuse = options.self_check and not held_out.held_out and context.model is working
    positions = {sample_id: i for i, sample_id in enumerate(sorted(set(ids)))}
    collected = collect_statistics(context.model, sorted(reducers), reducers, samples,
                                   batch_size=options.batch_size, progress=options.progress, total=len(ids),
                                   keep_outputs=[positions[i] for i in held_out.ids] if reuse else False,
                                   label="statistics: " + ", ".join(served))
    lap("statistics")

    weight_names = [p.tensor for p in plan.points if p.role == "weight"]
    weights = initializer_arrays(context.model, weight_names)
    # Model inputs and tensors with few values per sample: their range covers the calibration population.
    population = population_ranges(plan, collected.sample_shapes(),
                                   {spec.name for spec in model_inputs(context.model)}, options.ranges)
    ranges = {**weight_ranges(plan, {n: weights[n] for n in weight_names}, options.ranges),
              **activation_ranges(plan, collected.stats, options.ranges, population)}
    lap("ranges")

    # The float reference of the quantized passes: the model as the statistics pass measured it.
    context = replace(context, statistics=collected, ranges=ranges, float_model=context.model)
    for step in quantized_passes:
        result = step(context)
        context = context.after(result)
        reports[step.name] = result.report
        inserted.extend(result.inserted)
        lap(step.name)

    assert context.ranges is not None
    emit = emit_fakequantize if options.output_format == "fakequantize" else emit_qdq
    # Emission sees only the plan and ranges made above: a ValueError from it is a bug, so it reaches the
    # CLI's internal-error path (exit 1) instead of posing as bad input.
    plan = context.plan  # the biases the quantized passes added are named in its int32-bias entries
    final_model = context.model
    # The model the plan was made on (before the quantized passes): reverts re-plan from it.
    planned_on = context.float_model

    def emit_checked(emit_plan: QuantPlan, emit_ranges: Mapping[str, TensorRange]) -> Any:
        # A node a search returned to float computes what it did before the quantized passes made up for its
        # quantization error (their bias shifts and tuned weights would now be an error of their own).
        reverted = [n.node for n in emit_plan.nodes if n.status == "reverted"]
        # (No quantized pass changed the model when it is the one the plan was made on: nothing to restore.)
        source = (restore_initializers(final_model, planned_on, reverted)
                  if reverted and final_model is not planned_on else final_model)
        emitted = emit(source, emit_plan, emit_ranges)
        # The output is exactly the plan, or this run stops: a mismatch is a bug, reported as one (exit 1).
        problems = provenance_problems(source, emit_plan, emitted.model, options.output_format)
        if problems:
            raise RuntimeError("the quantized model does not match its plan: " + "; ".join(problems[:5]))
        return emitted

    emitted = emit_checked(plan, context.ranges)
    lap("emit")

    errors = quantization_errors(plan, context.ranges, weights, collected.stats)
    lap("errors")
    final_ranges: Mapping[str, TensorRange] = context.ranges
    errors_out: Mapping[str, float] = errors
    fidelity = None
    # The model the plan was made on (before the quantized passes), and that plan: reverts re-plan from them.
    base_plan = plan
    emitter = Emitter(
        replan=lambda reverts: _carry_added_biases(make_plan(planned_on, float_pass_nodes, reverts), base_plan),
        emit=emit_checked, errors=lambda p, r: quantization_errors(p, r, weights, collected.stats),
        stats=collected.stats, weights=weights)
    check: SelfCheck | None = None
    speed: dict | None = None
    if options.self_check:
        check_samples: list[Mapping[str, Any]] = list(calibration.iter_samples(held_out.ids))
        # The speed guard comes first: its reverts only raise fidelity, its timed runs give the outputs of the
        # model it ends on for the check's first samples, and a model it returns to float whole needs no check
        # of its quantized form. (Its time budget: one plain float pass over the calibration subset, at most
        # the statistics pass.)
        def speed_guarded(fidelity_so_far: dict | None, check_so_far: SelfCheck | None) -> SpeedChecked:
            """The speed guard on the run's current plan, ranges, emitted model and errors."""
            return guard_speed(working, graph_view(planned_on), check_samples, plan, final_ranges, emitted,
                               errors_out, options, emitter, fidelity_so_far, timings.get("statistics"),
                               check_so_far, pass_samples=collected.num_samples)

        timed_outputs: tuple[Mapping[str, Any], ...] = ()
        speed_reverted = False
        if speed_guard_applies(options):
            sped = speed_guarded(None, None)
            speed_reverted = sped.plan is not plan
            plan, final_ranges, emitted, errors_out = sped.plan, sped.ranges, sped.emitted, sped.errors
            speed, timed_outputs = sped.section, sped.outputs
            lap("speed_guard")
        checked = check_and_guard(working, check_samples, held_out, plan, final_ranges, emitted, errors_out,
                                  options, emitter, collected.outputs if reuse else None, timed_outputs)
        guarded = checked.plan is not plan  # the fidelity guard reverted nodes
        plan, final_ranges, emitted = checked.plan, checked.ranges, checked.emitted
        errors_out, fidelity = checked.errors, checked.fidelity
        check = checked.check
        if speed_reverted:
            fidelity = {**fidelity, "measured_after": "the speed guard's reverts"}
        lap("self_check")
        if speed is not None and guarded and any(n.status == "quantized" for n in plan.nodes):
            # The fidelity guard's reverts change what onnxruntime fuses: the model is timed again from there.
            again = speed_guarded(fidelity, checked.check)
            plan, final_ranges, emitted, errors_out = again.plan, again.ranges, again.emitted, again.errors
            fidelity = again.fidelity or fidelity
            speed = {**again.section, "before_fidelity_guard": speed}
            lap("speed_guard_after_fidelity_guard")

    def finish(out_plan: QuantPlan, out_ranges: Mapping[str, TensorRange], out_emitted: Any,
               out_errors: Mapping[str, float], out_fidelity: dict | None, hooks: SearchHooks | None) -> QuantizeResult:
        report = quantize_report(out_plan, out_ranges, out_emitted, out_errors, timings, collected.num_samples,
                                 options, reports, population, context.graph)
        report["control_flow"] = branches.entries()
        if out_fidelity is not None:
            report["fidelity"] = out_fidelity
        if speed is not None:
            report["speed"] = speed
        # The check compared the model with a taken If branch inlined against the float model inlined the
        # same way; the branch goes back into its If only now.
        return QuantizeResult(restore(out_emitted.model), out_plan, out_ranges, report, tuple(inserted), hooks)

    def restore(out_model: Any) -> Any:
        return branches.restore(out_model) if branches.rounds else out_model

    hooks = SearchHooks(plan, final_ranges, emitted, errors_out, fidelity, emitter, check, finish, restore,
                        context.graph) \
        if search_hooks else None
    return finish(plan, final_ranges, emitted, errors_out, fidelity, hooks)


@dataclass(frozen=True)
class SearchHooks:
    """What a measured search above the pipeline (``rewriter.search``) needs to revert nodes of a finished
    run through its plan and to make the run's result again: the final plan, ranges, emitted model, errors
    and fidelity section; the emitter the guard used; the self-check (None when off); and ``finish``, which
    makes the result (report, output model) of a plan the search chose."""

    plan: QuantPlan
    ranges: Mapping[str, TensorRange]
    emitted: Any  # EmitResult
    errors: Mapping[str, float]
    fidelity: dict | None
    emitter: Emitter
    check: SelfCheck | None
    finish: Callable[..., QuantizeResult]
    restore: Callable[[Any], Any]  # an emitted model -> the output model (taken If branches back in place)
    graph: GraphView  # the quantized model's float form, with its shapes (what a revert costs is read from it)


def _carry_added_biases(plan: QuantPlan, before: QuantPlan) -> QuantPlan:
    """``plan`` re-made from the float-phase model, with the biases the quantized passes added named in its
    int32-bias entries as they were in ``before`` (the plan the passes updated)."""
    added = {b.node: b for b in before.int32_biases if b.bias}
    entries = tuple(added[b.node] if not b.bias and b.node in added else b for b in plan.int32_biases)
    return replace(plan, int32_biases=entries)


def quantize_file(model: str | Path, output: str | Path, data: Any,
                  options: QuantizeOptions = QuantizeOptions()) -> QuantizeResult:
    """Quantize a model file and write the result atomically; the input is never touched.

    Raises:
        UserError: before any work, when ``output`` is the input model, or not a regular file or
            a new path (``rewriter.io_utils.check_output_path``); and for any bad input after.
    """
    check_outputs({"": output}, {"the input model": model})
    result = quantize(model, data, options)
    save_model(result.model, output)
    return result
