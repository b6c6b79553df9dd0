"""AccuracyAwareQuantization around a quantize run: the float and quantized metrics, then reverts through
the plan until the drop is within the limit (``rewriter.tuning.accuracy_aware``).

    float metric -> quantize (base algorithm, with its self-check and guard) -> metric
        [-> mixed preset, when asked and the drop is too large] -> search: rank, revert, re-measure
        [-> cheaper substitutes for the costly reverts, by multiply-accumulates, each measured]
        -> the final plan made again with each revert's measured reason -> report

Every metric evaluation is a trial in the report (``search.trials``): what was evaluated, the metric, its
drop and the wall time of the trial (re-plan, re-emit and the metric).
"""
from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from rewriter.errors import RuntimeRefused
from rewriter.ir.graph import GraphView
from rewriter.ir.work import node_work
from rewriter.match.planner import RevertRequest
from rewriter.options import QuantizeOptions
from rewriter.pipeline import QuantizeResult, SearchHooks, quantize
from rewriter.search.metric import Metric, MetricValue
from rewriter.tuning.accuracy_aware import (ACCURACY_AWARE_SOURCE, AccuracyAwareOutcome, AccuracyAwareSettings,
                                            accuracy_aware_search)
from rewriter.tuning.check_run import revert_through_plan, reverts_in_plan
from rewriter.tuning.guard import guard_candidates
from rewriter.tuning.revert_search import Revert

__all__ = ["SEARCH_SCHEMA", "TrialLog", "quantize_accuracy_aware", "remeasured_fidelity", "revert_costs"]

SEARCH_SCHEMA = "rewriter.search/1"


class TrialLog:
    """The metric evaluations of one search, in order, as the report lists them."""

    def __init__(self, metric: Metric, baseline: float | None = None, settings: AccuracyAwareSettings | None = None):
        self.metric, self.baseline, self.settings = metric, baseline, settings
        self.trials: list[dict[str, Any]] = []

    def add(self, kind: str, configuration: dict[str, Any], value: MetricValue | None, seconds: float,
            latency_ms: float | None = None) -> dict[str, Any]:
        entry: dict[str, Any] = {"trial": len(self.trials), "kind": kind, "configuration": configuration,
                                 "metric": None if value is None else value.value, "drop": None,
                                 "latency_ms": latency_ms, "seconds": round(seconds, 4)}
        if value is not None and self.baseline is not None and self.settings is not None:
            entry["drop"] = _round(self.settings.drop(self.metric.oriented(self.baseline),
                                                      self.metric.oriented(value.value)))
        self.trials.append(entry)
        return entry


def quantize_accuracy_aware(model: str | Path | Any, data: Any, options: QuantizeOptions,
                            settings: AccuracyAwareSettings, metric: Metric) -> QuantizeResult:
    """Quantize ``model`` so that ``metric`` drops at most ``settings.maximal_drop`` (module docstring).

    Raises:
        UserError: bad input, or the metric fails on a trial (named in the message).
    """
    started = time.perf_counter()
    log = TrialLog(metric)
    clock = time.perf_counter()
    if isinstance(model, (str, Path)):
        float_value = metric.evaluate_file(model, "the float model")
    else:
        float_value = metric.evaluate(model, "the float model")
    log.baseline, log.settings = float_value.value, settings
    log.add("float", {"model": "float"}, float_value, time.perf_counter() - clock)
    baseline = metric.oriented(float_value.value)

    def base_run(run_options: QuantizeOptions, kind: str) -> tuple[QuantizeResult, MetricValue]:
        clock = time.perf_counter()
        run = quantize(model, data, run_options, search_hooks=True)
        value = metric.evaluate(run.model, f"the quantized model ({settings.base_algorithm}, preset "
                                           f"{run_options.preset})")
        log.add(kind, {"preset": run_options.preset, "reverted": _guard_nodes(run)}, value,
                time.perf_counter() - clock)
        return run, value

    result, value = base_run(options, "base")
    chosen = len(log.trials) - 1
    allowed = settings.allowed_drop(baseline)
    preset = options.preset
    if settings.drop(baseline, metric.oriented(value.value)) > settings.maximal_drop \
            and settings.convert_to_mixed_preset and options.preset == "performance":
        mixed, mixed_value = base_run(replace(options, preset="mixed"), "mixed preset")
        if metric.oriented(mixed_value.value) > metric.oriented(value.value):
            result, value, preset, chosen = mixed, mixed_value, "mixed", len(log.trials) - 1
    hooks = result.search
    assert hooks is not None
    initial = metric.oriented(value.value)
    section: dict[str, Any] = {
        "schema": SEARCH_SCHEMA, "algorithm": "AccuracyAwareQuantization", "metric": metric.name,
        "lower_is_better": metric.lower_is_better, **_settings_dict(settings), "allowed_drop": _round(allowed),
        "preset": preset, "baseline": float_value.value, "initial": value.value}
    if settings.drop(baseline, initial) <= settings.maximal_drop:
        section.update(final=value.value, final_drop=_round(settings.drop(baseline, initial)), met=True,
                       stopped="target met", reverts=[], metric_evaluations=metric.calls, ranking_measurements=0)
        return _finish(result, hooks, section, log, chosen, started)

    guard_reverts = _guard_reverts(hooks)
    reverter = revert_through_plan(hooks.emitter, hooks.plan, hooks.ranges, options)
    trial_of: dict[frozenset[str], int] = {}

    def carry_out(units: tuple[str, ...], details: dict[str, str] | None = None) -> Any:
        return reverter(guard_reverts + tuple(RevertRequest(u, ACCURACY_AWARE_SOURCE, (details or {}).get(u, ""))
                                              for u in units))

    def score(units: tuple[str, ...]) -> float | None:
        clock = time.perf_counter()
        made = carry_out(units)
        configuration = {"preset": preset, "reverted": sorted(_nodes(guard_reverts)) + list(units)}
        if made is None:
            log.add("revert", configuration, None, time.perf_counter() - clock)
            return None
        trial = f"trial {len(log.trials)} (reverted: {', '.join(units) or 'none'})"
        measured = metric.evaluate(hooks.restore(made.emitted.model), trial)
        log.add("revert", configuration, measured, time.perf_counter() - clock)
        trial_of[frozenset(units)] = len(log.trials) - 1
        return metric.oriented(measured.value)

    rank_score = None
    if hooks.check is not None and hooks.check.samples:
        ranking = hooks.check.first(settings.ranking_subset_size or len(hooks.check.samples))

        def rank_score(units: tuple[str, ...]) -> float | None:
            made = carry_out(units)
            if made is None:
                return None
            try:
                return ranking.measure(made.emitted.model).worst_sqnr_db
            except RuntimeRefused:
                return None

    candidates = guard_candidates(hooks.plan, hooks.errors)
    costs = revert_costs(hooks.graph, candidates)
    outcome = accuracy_aware_search(candidates, score, baseline, initial, settings, rank_score, costs)
    search = outcome.search
    for measurement, trial in zip(search.measurements, log.trials[-len(search.measurements):]):
        trial["kind"], trial["kept"] = measurement.action, measurement.kept
    final_units = tuple(sorted((r.unit for r in search.reverted), key=candidates.index))
    if final_units:
        chosen = trial_of.get(frozenset(final_units), chosen)
    details = {r.unit: _reason(r, outcome, settings, metric, costs) for r in search.reverted}
    section.update(final=metric.oriented(search.final), final_drop=_round(settings.drop(baseline, search.final)),
                   met=search.met, stopped=search.stopped, metric_evaluations=metric.calls,
                   ranking_measurements=outcome.ranking_measurements,
                   reverts=[_revert_entry(r, details[r.unit], hooks, metric, costs) for r in search.reverted])
    if not search.met:
        section["message"] = _not_met(section, settings, metric)
    if not final_units:
        return _finish(result, hooks, section, log, chosen, started)
    made = carry_out(final_units, details)
    if made is None:
        raise RuntimeError("the accuracy-aware search's final plan could not be made again")
    fidelity = remeasured_fidelity(hooks, made.emitted.model, "the accuracy-aware search")
    final = hooks.finish(made.plan, made.ranges, made.emitted, hooks.emitter.errors(made.plan, made.ranges),
                         fidelity, None)
    return _finish(final, hooks, section, log, chosen, started)


def revert_costs(graph: GraphView, nodes: Sequence[str]) -> dict[str, float]:
    """What returning each node to float costs in speed: the multiply-accumulates its integer kernel would
    run (``rewriter.ir.work``); 0 for a node the graph does not hold."""
    return {n: float(node_work(graph, graph.nodes[graph.by_name[n]])) if n in graph.by_name else 0.0
            for n in nodes}


def _finish(result: QuantizeResult, hooks: SearchHooks, section: dict[str, Any], log: TrialLog, chosen: int,
            started: float) -> QuantizeResult:
    section["chosen_trial"] = chosen
    section["trials"] = log.trials
    section["seconds"] = round(time.perf_counter() - started, 3)
    section["summary"] = _summary(section)
    result.report["search"] = section
    return replace(result, search=None)


def _summary(section: dict[str, Any]) -> str:
    reverts = section.get("reverts") or []
    verdict = "within" if section["met"] else "NOT within"
    return (f"accuracy-aware search: {section['metric']} {section['final']:.4g} (float {section['baseline']:.4g}, "
            f"drop {section['final_drop']:.4g} {verdict} the limit {section['allowed_drop']:.4g}), "
            f"{len(reverts)} node(s) reverted, trial {section['chosen_trial']} of {len(section['trials'])} chosen, "
            f"{section['metric_evaluations']} metric evaluations")


def _not_met(section: dict[str, Any], settings: AccuracyAwareSettings, metric: Metric) -> str:
    why = {"budget spent": f"max_iter_num ({settings.max_iter_num}) metric evaluations were spent",
           "no candidate left": "every quantized node was tried",
           "revert limit": "the revert limit was reached"}.get(section["stopped"], section["stopped"])
    return (f"the accuracy limit was not met: {metric.name} {section['final']:.6g} against the float model's "
            f"{section['baseline']:.6g} is a drop of {section['final_drop']:.6g} ({settings.drop_type}), above "
            f"{settings.maximal_drop:g}, when {why}; the most accurate model found is written. Raise max_iter_num "
            "(--max-iter), allow a larger drop, or keep more of the model float (--ignore-scope)")


def _settings_dict(settings: AccuracyAwareSettings) -> dict[str, Any]:
    return {"maximal_drop": settings.maximal_drop, "drop_type": settings.drop_type,
            "base_algorithm": settings.base_algorithm, "ranking_subset_size": settings.ranking_subset_size,
            "max_iter_num": settings.max_iter_num, "convert_to_mixed_preset": settings.convert_to_mixed_preset,
            "use_prev_if_drop_increase": settings.use_prev_if_drop_increase, "batch": settings.batch,
            "not_run": [name for name, on in (("tune_hyperparams", settings.tune_hyperparams),
                                              ("metric_subset_ratio", settings.metric_subset_ratio != 0.5)) if on]}


def _reason(revert: Revert, outcome: AccuracyAwareOutcome, settings: AccuracyAwareSettings, metric: Metric,
            costs: Mapping[str, float]) -> str:
    """The measured reason a revert's decision carries (metric values as the user's function gives them)."""
    search = outcome.search

    def shown(oriented: float) -> str:  # the user's own value: orienting twice gives it back
        return f"{metric.oriented(oriented):.6g}"

    where = (f"{metric.name} {shown(search.initial)} as quantized, {shown(search.final)} after the accuracy-aware "
             f"search (float {shown(outcome.baseline)}, {settings.describe()}, {settings.drop_type})")
    if revert.score_quantized is None:
        return f"{where}; reverted in a step that raised it, not measured alone (max_iter_num spent)"
    measured = (f"{where}; quantized again alone: {shown(revert.score_quantized)} "
                f"(contribution {revert.score_reverted - revert.score_quantized:+.6g})")
    replaced = [m.units[1] for m in search.measurements if m.action == "substitute" and m.kept
                and m.units[0] == revert.unit]
    if replaced:
        measured += (f"; kept float in place of {replaced[0]}, which also met the limit but runs "
                     f"{costs.get(replaced[0], 0.0):.4g} multiply-accumulates in int8 against "
                     f"{costs.get(revert.unit, 0.0):.4g}")
    return measured


def _revert_entry(revert: Revert, reason: str, hooks: SearchHooks, metric: Metric,
                  costs: Mapping[str, float]) -> dict[str, Any]:
    ops = {n.node: n.op_type for n in hooks.plan.nodes}
    return {"node": revert.unit, "op_type": ops.get(revert.unit),
            "multiply_accumulates": int(costs.get(revert.unit, 0)),
            "metric_reverted": metric.oriented(revert.score_reverted),
            "metric_quantized_again": None if revert.score_quantized is None
            else metric.oriented(revert.score_quantized),
            "contribution": None if revert.contribution is None else _round(revert.contribution),
            "reason": reason}


def _guard_reverts(hooks: SearchHooks) -> tuple[RevertRequest, ...]:
    """The base run's reverts (the fidelity guard's and the speed guard's): every trial keeps them."""
    return tuple(reverts_in_plan(hooks.plan))


def _guard_nodes(result: QuantizeResult) -> list[str]:
    """The nodes the run's guards returned to float (the fidelity guard's and the speed guard's), as every
    later trial's configuration lists them."""
    return sorted(r.node for r in reverts_in_plan(result.plan))


def _nodes(reverts: tuple[RevertRequest, ...]) -> list[str]:
    return [r.node for r in reverts]


def remeasured_fidelity(hooks: SearchHooks, model: Any, search: str) -> dict | None:
    """The fidelity section with the figures of ``model``, the one ``search`` chose (the guard's record kept)."""
    if hooks.fidelity is None or hooks.check is None or "outputs" not in hooks.fidelity:
        return hooks.fidelity
    measured = hooks.check.measure(model)
    section = dict(hooks.fidelity)
    held_out = bool(section.get("held_out", True))
    below = measured.worst_sqnr_db < section["threshold_db"]
    section.update(outputs=[o.as_dict() for o in measured.outputs], worst_sqnr_db=_round(measured.worst_sqnr_db),
                   below_threshold=below, summary=measured.summary(held_out), after=search)
    # The metric decided what stays quantized; the output SQNR is reported, not a second limit.
    section["warning"] = (f"output fidelity ({section['summary']}) is below the threshold of "
                          f"{section['threshold_db']:g} dB after {search}, which kept the metric as reported in its "
                          "summary") if below else None
    return section


def _round(value: float) -> float:
    return value if not math.isfinite(value) else round(value, 6)
