"""The self-check and the fidelity guard of one quantize run, as the pipeline calls them.

``check_and_guard`` measures the emitted model on held-out samples; if its worst output SQNR is below
the threshold and the guard is on, it runs the guard (``rewriter.tuning.guard``), whose every attempt
re-plans through ``replan``, takes the ranges the calibration already gave, re-emits and measures.
It returns what the run writes: the final plan, ranges, emitted model, and the report's ``fidelity``
section.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

from rewriter.algorithms.minmax import activation_ranges, weight_ranges
from rewriter.errors import RuntimeRefused
from rewriter.emit.runtime_check import OPENVINO_PRECISION, SIMULATED, runtime_for
from rewriter.match.planner import RevertRequest
from rewriter.options import QuantizeOptions
from rewriter.plan import FakeQuantizePoint, NodeDecision, QuantPlan
from rewriter.tuning.damage import DAMAGE_SAMPLES, DamageRanking, measure_damage
from rewriter.tuning.guard import Attempt, GuardSettings, guard_candidates, run_guard, worst_tensors
from rewriter.tuning.self_check import CLEAR_MARGIN_DB, HeldOut, SelfCheck

__all__ = ["CheckedOutput", "Emitter", "Reverted", "check_and_guard", "revert_through_plan", "sample_fields",
           "with_revert_details"]


@dataclass(frozen=True)
class CheckedOutput:
    plan: QuantPlan
    ranges: Mapping[str, Any]
    emitted: Any  # EmitResult
    errors: Mapping[str, float]
    fidelity: dict  # the report's section
    warning: str | None  # one line when the output stays below the threshold
    check: SelfCheck | None = None  # the self-check that measured it (None: skipped); its float runs serve a re-check


@dataclass(frozen=True)
class Emitter:
    """How the pipeline plans, emits and measures errors; the guard's attempts go through the same."""

    replan: Callable[[tuple[RevertRequest, ...]], QuantPlan]
    emit: Callable[[QuantPlan, Mapping[str, Any]], Any]  # plan, ranges -> EmitResult (checked against the plan)
    errors: Callable[[QuantPlan, Mapping[str, Any]], dict[str, float]]
    stats: Mapping[str, Mapping[str, Any]]
    weights: Mapping[str, Any]


def check_and_guard(float_model: Any, samples: list[Mapping[str, Any]], held_out: HeldOut, plan: QuantPlan,
                    ranges: Mapping[str, Any], emitted: Any, errors: Mapping[str, float], options: QuantizeOptions,
                    emitter: Emitter, float_runs: Sequence[Mapping[str, Any]] | None = None,
                    known_runs: Sequence[Mapping[str, Any]] = ()) -> CheckedOutput:
    """Check ``emitted`` in its runtime and, below the threshold, guard it (module docstring).

    ``float_runs``: the float model's outputs on ``samples`` when the statistics pass kept them;
    ``known_runs``: the emitted model's outputs on the first samples, when the speed guard's timed runs gave
    them. Reverts already in ``plan`` (the speed guard's) stay in every plan the guard makes.

    Raises:
        RuntimeRefused: the runtime cannot load or run the emitted model.
    """
    threshold = options.guard_threshold
    base: dict[str, Any] = {"threshold_db": threshold}
    runtime = runtime_for(options.output_format)
    if runtime is None:
        return CheckedOutput(plan, ranges, emitted, errors, {
            **base, "skipped": "self-check skipped: FakeQuantize output runs in OpenVINO, which is not installed "
                               "(onnxruntime cannot load it); install OpenVINO (pip install 'rewriter[openvino]') "
                               "to check it and run the fidelity guard", "guard": None}, None)
    if not samples:
        return CheckedOutput(plan, ranges, emitted, errors, {**base, "skipped": "self-check skipped: no samples",
                                                             "guard": None}, None)
    check = SelfCheck(float_model, samples, runtime, float_runs, held_out)
    fidelity = check.measure(emitted.model, clear_above_db=threshold + CLEAR_MARGIN_DB, known_runs=known_runs)
    section: dict[str, Any] = {**base, "runtime": runtime, **sample_fields(held_out, fidelity.samples)}
    if runtime == "openvino":
        section["inference_precision"] = OPENVINO_PRECISION
    guard_section: dict[str, Any] | None = None
    if fidelity.worst_sqnr_db < threshold and options.guard:
        settings = GuardSettings(threshold, options.guard_budget, options.guard_batch)

        reverter = revert_through_plan(emitter, plan, ranges, options)
        prior = tuple(reverts_in_plan(plan))

        def attempt(reverts: tuple[RevertRequest, ...]) -> Attempt | None:
            made = reverter(prior + reverts)
            if made is None:
                return None
            try:
                return Attempt(made.plan, made.ranges, made.emitted, check.measure(made.emitted.model))
            except RuntimeRefused:
                return None

        suspects = guard_candidates(plan, errors)
        if runtime == "onnxruntime":
            ranking = measure_damage(float_model, emitted.model, plan, check.samples[:DAMAGE_SAMPLES], suspects,
                                     errors)
        else:
            ranking = DamageRanking(skipped="FakeQuantize output runs in OpenVINO, whose tensors are not exposed "
                                            "under their ONNX names")
        outcome = run_guard(fidelity, ranking.order(suspects), settings, attempt, ranking)
        guard_section = outcome.as_dict(plan)
        if outcome.final is not None:
            plan, ranges, emitted, fidelity = (outcome.final.plan, outcome.final.ranges, outcome.final.emitted,
                                               outcome.final.fidelity)
            errors = emitter.errors(plan, ranges)
    elif fidelity.worst_sqnr_db < threshold:
        guard_section = {"threshold_db": threshold, "off": "--no-guard"}
    section.update({"outputs": [o.as_dict() for o in fidelity.outputs],
                    "worst_sqnr_db": _round(fidelity.worst_sqnr_db),
                    "below_threshold": fidelity.worst_sqnr_db < threshold,
                    "summary": fidelity.summary(held_out.held_out),
                    "guard": guard_section})
    warning = None
    if fidelity.worst_sqnr_db < threshold:
        worst = ", ".join(f"{t} ({v:.1f} dB)" for t, v in worst_tensors(errors))
        warning = (f"output fidelity ({fidelity.summary(held_out.held_out)}) is below the threshold of {threshold:g} dB"
                   f"{' after the fidelity guard' if options.guard else ''}; the worst quantized tensors: "
                   f"{worst or 'none measured'}")
        if runtime == "openvino":
            simulated = _simulated_in_float(check, emitted.model, held_out)
            section["openvino_simulated"] = simulated
            if simulated is not None and simulated["worst_sqnr_db"] >= threshold:
                warning += (f"; with OpenVINO's low-precision transformations off (every FakeQuantize computed in "
                            f"float) the output reaches {simulated['summary']}: the quantization is sound, OpenVINO's "
                            "integer execution of this model is not (compile it with LP_TRANSFORMS_MODE off, or "
                            "report the model to OpenVINO)")
    section["warning"] = warning
    return CheckedOutput(plan, ranges, emitted, errors, section, warning, check)


def _simulated_in_float(check: SelfCheck, model: Any, held_out: HeldOut) -> dict[str, Any] | None:
    """The output's fidelity in OpenVINO with every FakeQuantize computed in float (``SIMULATED``): whether a
    FakeQuantize model that fails its check fails for its quantization or for OpenVINO's integer execution.
    None when this OpenVINO cannot switch its low-precision transformations off."""
    try:
        measured = check.in_runtime(SIMULATED).measure(model)
    except RuntimeRefused:
        return None
    return {"worst_sqnr_db": _round(measured.worst_sqnr_db), "summary": measured.summary(held_out.held_out),
            "outputs": [o.as_dict() for o in measured.outputs]}


def sample_fields(held_out: HeldOut, used: int) -> dict[str, Any]:
    """The fidelity section's account of its samples: how many the figures come from, which, and what they are."""
    return {"samples": used, "held_out": held_out.held_out, "sample_ids": list(held_out.ids[:used]),
            "note": held_out.describe(used)}


@dataclass(frozen=True)
class Reverted:
    """A plan re-made with reverts, its ranges and the model emitted from them."""

    plan: QuantPlan
    ranges: Mapping[str, Any]
    emitted: Any  # EmitResult


def revert_through_plan(emitter: Emitter, plan: QuantPlan, ranges: Mapping[str, Any],
                        options: QuantizeOptions) -> Callable[[tuple[RevertRequest, ...]], Reverted | None]:
    """How a measured search carries out reverts: re-plan with them, take the ranges ``plan`` had where a
    quantizer is unchanged (fresh from the collected statistics where it changed), re-emit.

    The returned function gives None when a changed quantizer needs a statistic the calibration pass did
    not collect. The fidelity guard measures the result with the self-check; an accuracy-driven search
    would run its metric on ``Reverted.emitted.model`` instead.
    """
    def carry_out(reverts: tuple[RevertRequest, ...]) -> Reverted | None:
        new_plan = emitter.replan(reverts)
        new_ranges = _ranges_for(new_plan, plan, ranges, emitter, options)
        if new_ranges is None:
            return None
        return Reverted(new_plan, new_ranges, emitter.emit(new_plan, new_ranges))
    return carry_out


def _ranges_for(new_plan: QuantPlan, plan: QuantPlan, ranges: Mapping[str, Any], emitter: Emitter,
                options: QuantizeOptions) -> dict[str, Any] | None:
    """The ranges of ``new_plan``: the run's own where a quantizer is unchanged (so the passes' tuned
    ranges stay), fresh from the collected statistics where it changed; None if those lack a statistic."""
    before = {p.tensor: p for p in plan.points}
    groups_before, groups_after = _group_members(plan), _group_members(new_plan)
    changed = [p for p in new_plan.points
               if not _same(p, before.get(p.tensor)) or groups_after.get(p.tensor) != groups_before.get(p.tensor)]
    result = {p.tensor: ranges[p.tensor] for p in new_plan.points if p.tensor in ranges}
    if changed:
        try:
            fresh = {**weight_ranges(new_plan, emitter.weights, options.ranges),
                     **activation_ranges(new_plan, emitter.stats, options.ranges)}
        except KeyError:
            return None
        result.update({p.tensor: fresh[p.tensor] for p in changed})
    return result


def _same(a: FakeQuantizePoint, b: FakeQuantizePoint | None) -> bool:
    return b is not None and (a.role, a.config, a.channel_axis) == (b.role, b.config, b.channel_axis)


def _group_members(plan: QuantPlan) -> dict[str, frozenset[str]]:
    groups: dict[int, set[str]] = {}
    for p in plan.points:
        if p.unify_group is not None:
            groups.setdefault(p.unify_group, set()).add(p.tensor)
    return {t: frozenset(members) for members in groups.values() for t in members}


def _round(value: float) -> float:
    return value if math.isinf(value) else round(value, 3)


def reverts_in_plan(plan: QuantPlan) -> list[RevertRequest]:
    """The reverts a plan already holds (the fidelity and speed guards'), each with its decision's source and
    detail, so that a later re-plan keeps them."""
    found = []
    for node in plan.nodes:
        if node.status == "reverted":
            decision = next((d for d in node.trail if d.action == "revert"), None)
            if decision is not None:
                found.append(RevertRequest(node.node, decision.source, decision.detail))
    return found


def with_revert_details(plan: QuantPlan, reverts: Sequence[RevertRequest]) -> QuantPlan:
    """``plan`` with the detail of each revert decision taken from ``reverts`` (same node and source).

    A search measures attempts made without reasons, and only knows a revert's reason (its measured times,
    the outcome) when it ends; the reasons change nothing the planner or the emitter does, so the attempt
    it ends on takes them here instead of being planned and emitted again. The result equals re-planning
    with ``reverts``."""
    wanted = {(r.node, r.by): r.detail for r in reverts}

    def updated(node: NodeDecision) -> NodeDecision:
        if node.status != "reverted":
            return node
        trail = tuple(replace(d, detail=wanted[(node.node, d.source)])
                      if d.action == "revert" and (node.node, d.source) in wanted else d for d in node.trail)
        return node if trail == node.trail else replace(node, trail=trail)

    return replace(plan, nodes=tuple(updated(n) for n in plan.nodes))
