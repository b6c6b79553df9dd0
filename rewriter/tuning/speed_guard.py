"""The speed guard: return to float the quantized groups that make onnxruntime slower, measured, through the plan.

A QDQ model is only worth having if onnxruntime runs it at least as fast as the float one. Where a quantized
node does not fuse into a faster integer kernel (no kernel for it, a kernel slower than float for its shape,
or Q/DQ work around it), int8 only adds time. The guard:

1. asks onnxruntime whether it would run any integer kernel for the model at all: with none, every Q/DQ
   pair is work on top of the float kernels, so every quantized node returns to float, untimed;
2. times the float and the quantized model in turns, whole runs without the profiler
   (``rewriter.emit.runtime_profile.PairTimer``), at each of the settings' thread counts, after a few runs
   of both with onnxruntime's per-node profiler on, in the same sessions (not when the time budget could
   pay for no revert attempt after them: ``first_timing_estimate``);
3. gives each quantized node (a *unit*, as for the fidelity guard) the time of its group in both profiles:
   its own kernel and the float nodes onnxruntime fuses into it (an activation, a bias Add), and in the
   quantized model the QuantizeLinear/DequantizeLinear nodes whose values it reads (shared ones split
   evenly between their readers);
4. takes as candidates the units whose quantized group costs more than their float group (by more than
   the margin), most costly first, and runs ``revert_search`` on them, all in one batch: the score is the
   model's speed-up over float (float time / quantized time, the lowest over the thread counts), each
   measurement a re-plan with the reverts (``RevertRequest``, decided by ``SPEED_SOURCE``), re-emit and
   timing; then each kept one is quantized again alone, least costly first, while the budget lasts.

The pipeline runs the guard before the self-check. A revert only returns a node to float, so it never lowers
fidelity; the timed runs of the model the guard ends on are on the self-check's samples, so their outputs
(``SpeedChecked.outputs``) spare the check those runs, and a model returned to float whole is the float
model the timer ran, whose outputs the timer kept. When the fidelity guard reverts nodes afterwards, the
pipeline runs this guard again on the result, with the fidelity section to re-measure after its reverts.
``optimize_for="size"`` accepts a slower model to keep it small: only units that hold
no weights (whose revert keeps the file as small) are candidates. The guard stops at its measurement budget
or its time budget (one plain float pass over the calibration subset, estimated from its first timing, and
never more than the statistics pass took); its cost is in the report.

Timings are measurements, so on a real machine two runs may revert different nodes; the report and
``audit --report`` show which, with the times measured. Tests replace ``PairTimer`` with deterministic
timings.
"""
from __future__ import annotations

import functools
import hashlib
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from rewriter.emit.ort_check import integer_kernels
from rewriter.errors import RuntimeRefused
from rewriter.emit.runtime_profile import (NoIntegerKernel, PairTimer, RunProfile, TimedPair, machine_fingerprint,
                                           profiled_node, qdq_readers)
from rewriter.ir.graph import GraphView
from rewriter.ir.load import is_large, model_digest
from rewriter.match.planner import RevertRequest
from rewriter.options import OptimizeFor, QuantizeOptions
from rewriter.plan import QuantPlan
from rewriter.tuning.check_run import (Emitter, Reverted, revert_through_plan, reverts_in_plan, sample_fields,
                                       with_revert_details)
from rewriter.tuning.revert_search import SearchResult, revert_search
from rewriter.tuning.self_check import CLEAR_MARGIN_DB, SelfCheck
from rewriter.tuning.speed_cache import SpeedCache, StoredDecision, default_cache_dir
from rewriter.tuning.speed_decisions import SPEED_SOURCE, speed_revert_companion

__all__ = ["SpeedChecked", "SpeedSettings", "UnitTime", "attribute", "first_timing_estimate", "group_owners",
           "guard_speed", "names_of", "revert_closure", "speed_guard_applies"]

#: Float nodes onnxruntime fuses into the kernel of the node before them (Conv+Relu, MatMul+Add, ...).
_FUSED_FOLLOWERS = frozenset({"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "Tanh", "HardSwish", "Add",
                              "Mul", "BatchNormalization"})
#: A group whose quantized time exceeds its float time by less than this (microseconds) is noise.
_MIN_EXCESS_US = 2.0
#: The most timed runs per model in one measurement.
_MAX_RUNS = 200
#: Profiled runs per model for the per-node times: they only rank the groups (each revert is then timed),
#: and each costs a run with the profiler's overhead plus reading its trace.
_PROFILE_RUNS = 3
#: The largest model whose attempts are kept in memory for the final plan (bytes, serialized).
_MAX_KEPT_MODEL_BYTES = 64 << 20


@dataclass(frozen=True)
class SpeedSettings:
    optimize_for: OptimizeFor = "latency"
    budget: int = 8  # measurements after the first (each one re-plan, re-emit and profile)
    # Candidates reverted per growing step; None: all at once. One re-plan may take as long as the whole time
    # budget (a MobileNetV3 of 20 losing groups), so the guard first tries the revert that gains most if the
    # profile is right, then quantizes the groups again one at a time while the budget lasts.
    batch: int | None = None
    margin: float = 0.05  # a change of speed-up (in units of the float speed) that counts
    runs: int = 9  # timed runs per model and thread count in one measurement, at least
    seconds_per_model: float = 0.1  # ... and more for a fast model, up to this time per model and thread count
    threads: tuple[int, ...] = (1,)  # intra-op threads; 0: onnxruntime's default (slow and noisy on a shared machine)
    seconds: float | None = None  # the time budget; None: none
    # Re-plans and measurements made even past the time budget. 0: the budget holds from the first (an
    # attempt it cannot afford is not made; a model measured slower than float then returns to float whole).
    min_attempts: int = 0


@dataclass(frozen=True)
class UnitTime:
    """A quantized node's group: its median time per run in the float and in the quantized model (µs)."""

    unit: str
    float_us: float
    quantized_us: float

    @property
    def excess_us(self) -> float:
        return self.quantized_us - self.float_us


@dataclass(frozen=True)
class SpeedChecked:
    plan: QuantPlan
    ranges: Mapping[str, Any]
    emitted: Any  # EmitResult
    errors: Mapping[str, float]
    section: dict  # the report's ``speed`` section
    fidelity: dict | None  # the fidelity section, re-measured on the final model (None: unchanged or none given)
    # The final model's outputs on the first samples, from runs the guard made of it in onnxruntime (the
    # self-check takes them instead of running it again); empty when it did not run that model.
    outputs: tuple[Mapping[str, Any], ...] = ()


def speed_guard_applies(options: QuantizeOptions) -> bool:
    """On by default for QDQ output on the onnxruntime target; ``speed_guard`` True or False decides."""
    if options.output_format != "qdq":
        return False
    if options.speed_guard is not None:
        return options.speed_guard
    return options.target.upper() == "ORT"


def group_owners(graph: GraphView, units: set[str]) -> dict[str, str]:
    """Node -> the unit whose group it is in: each unit itself, and the float nodes after it that read only
    its result, alone, of the kinds onnxruntime fuses into the kernel before them (up to two in a chain)."""
    owners = {u: u for u in units}
    by_name = {n.name: n for n in graph.nodes}
    for unit in units:
        node = by_name.get(unit)
        for _ in range(2):
            if node is None or not node.outputs:
                break
            readers = graph.consumers_of(node.outputs[0])
            if len(readers) != 1:
                break
            follower = readers[0][0]
            variable = [t for t in follower.inputs if t and not graph.is_constant(t)]
            if follower.op_type not in _FUSED_FOLLOWERS or follower.name in units or variable != [node.outputs[0]]:
                break
            owners.setdefault(follower.name, unit)
            node = follower
    return owners


def revert_closure(graph: GraphView, units: set[str], start: str, hops: int = 4) -> tuple[str, ...]:
    """``start`` and the units that would lose their integer kernel with it: reverting a unit takes away the
    quantizers on its inputs, so a unit before it (through up to ``hops`` other nodes) whose result no other
    quantized unit reads would have no QuantizeLinear after it, and would run a float kernel behind Q/DQ
    work (onnxruntime fuses a Conv only with one). Those go too, and the same for theirs. In graph order."""
    by_name = {n.name: n for n in graph.nodes}
    order = {n.name: i for i, n in enumerate(graph.nodes)}

    def upstream(tensor: str) -> str | None:
        node = graph.producer_of(tensor)
        for _ in range(hops):
            if node is None or node.name in units:
                break
            variable = [t for t in node.inputs if t and not graph.is_constant(t)]
            node = graph.producer_of(variable[0]) if len(variable) == 1 else None
        return node.name if node is not None and node.name in units else None

    def downstream(name: str) -> set[str]:
        found: set[str] = set()
        frontier, seen = [by_name[name]], {name}
        for _ in range(hops + 1):
            following = []
            for node in frontier:
                for tensor in node.outputs:
                    for reader, _port in graph.consumers_of(tensor):
                        if reader.name in seen:
                            continue
                        seen.add(reader.name)
                        if reader.name in units:
                            found.add(reader.name)
                        else:
                            following.append(reader)
            frontier = following
        return found

    chosen, queue = {start}, [start]
    while queue:
        node = by_name.get(queue.pop())
        for tensor in node.inputs if node is not None else ():
            if not tensor or graph.is_constant(tensor):
                continue
            before = upstream(tensor)
            if before is not None and before not in chosen and downstream(before) <= chosen:
                chosen.add(before)
                queue.append(before)
    return tuple(sorted(chosen, key=lambda n: order.get(n, 0)))


def names_of(nodes: Iterable[tuple[str, Sequence[str]]]) -> dict[str, str]:
    """Node name, and each tensor a node writes -> the node's name (the names onnxruntime's profile uses)."""
    listed = list(nodes)
    names = {tensor: name for name, outputs in reversed(listed) for tensor in outputs}
    names.update({name: name for name, _ in listed})  # a node's own name wins over a tensor of that name
    return names


def attribute(units: Sequence[str], owners: Mapping[str, str], float_nodes: Mapping[str, str],
              quantized_nodes: Mapping[str, str],
              readers: Mapping[str, tuple[str, ...]], float_profile: RunProfile,
              quantized_profile: RunProfile) -> tuple[dict[str, UnitTime], float, float]:
    """Each unit's group time in both profiles, and the time given to no unit (float, quantized).

    ``float_nodes`` and ``quantized_nodes`` map each model's node names and written tensors to node names
    (``names_of``)."""
    float_us = dict.fromkeys(units, 0.0)
    quantized_us = dict.fromkeys(units, 0.0)
    loose = [0.0, 0.0]
    for name, us in float_profile.nodes.items():
        owner = owners.get(profiled_node(name, float_nodes) or "")
        if owner in float_us:
            float_us[owner] += us
        else:
            loose[0] += us
    for name, us in quantized_profile.nodes.items():
        node = profiled_node(name, quantized_nodes)
        if node is not None and node in readers:  # a Q/DQ node: its readers' groups share it
            shares = sorted({owners[r] for r in readers[node] if owners.get(r) in quantized_us})
        else:
            shares = [owners[node]] if node is not None and owners.get(node) in quantized_us else []
        for owner in shares:
            quantized_us[owner] += us / len(shares)
        if not shares:
            loose[1] += us
    return ({u: UnitTime(u, float_us[u], quantized_us[u]) for u in units}, loose[0], loose[1])


def guard_speed(float_model: Any, graph: GraphView, samples: Sequence[Mapping[str, Any]], plan: QuantPlan,
                ranges: Mapping[str, Any], emitted: Any, errors: Mapping[str, float], options: QuantizeOptions,
                emitter: Emitter, fidelity: dict | None, seconds: float | None, check: SelfCheck | None = None,
                clock: Callable[[], float] | None = None, pass_samples: int | None = None) -> SpeedChecked:
    """Check for integer kernels, time, profile, attribute, revert and re-time (module docstring); ``graph``
    is the model the plan was made on, ``samples`` the self-check's, ``seconds`` the time budget (the
    statistics pass's time), ``pass_samples`` the samples of that pass (with them the budget is at most one
    plain float pass: ``_float_pass_budget``). ``fidelity`` and ``check``: the fidelity section and the
    self-check that measured ``emitted``, when the check ran first (the section is then re-measured after the
    reverts, with the check's float runs); None when the guard runs before the check."""
    clock = clock or time.perf_counter
    start = clock()
    settings = SpeedSettings(optimize_for=options.optimize_for, seconds=seconds)
    feeds = [dict(s) for s in samples[:settings.runs]]
    if not feeds:
        return SpeedChecked(plan, ranges, emitted, errors, {"skipped": "no samples to time"}, None)
    cache = _cache(options)
    key = cache.key(_key_parts(settings, options), (model_digest(float_model), model_digest(emitted.model))) \
        if cache else ""
    stored = cache.load(key) if cache else None
    prior = tuple(reverts_in_plan(plan))
    reverter = revert_through_plan(emitter, plan, ranges, options)
    if stored is not None and cache is not None:
        replayed = _replay(stored, prior, reverter, emitter, fidelity, check, float_model, samples, plan, ranges,
                           emitted, errors, str(cache.path(key)), round(clock() - start, 3))
        if replayed is not None:
            return replayed

    def finished(chosen: tuple[RevertRequest, ...], final: Reverted | None, section: dict,
                 fidelity_after: dict | None, outputs: tuple[Mapping[str, Any], ...] = ()) -> SpeedChecked:
        if cache is not None:
            cache.store(key, StoredDecision(tuple((r.node, r.detail) for r in chosen[len(prior):]), section))
        if final is None:
            return SpeedChecked(plan, ranges, emitted, errors, section, None, outputs)
        return SpeedChecked(final.plan, final.ranges, final.emitted, emitter.errors(final.plan, final.ranges),
                            section, fidelity_after, outputs)

    # A model onnxruntime refuses is not timed: the self-check, run after the guard, reports it as such.
    def not_timed(refusal: RuntimeRefused) -> SpeedChecked:
        return SpeedChecked(plan, ranges, emitted, errors, {"skipped": f"not timed: {refusal}"}, None)

    timers = [PairTimer(float_model, feeds, t) for t in settings.threads]
    runs = [settings.runs]
    not_profiled: list[str] = []  # why the first timing was not profiled, when it was not

    def timed(model: Any, profile_runs: int = 0, require_integer_kernels: bool = False) -> list[TimedPair]:
        """Each thread count's timing; the first thread count's sessions profiled first when asked and worth
        it (``worth_profiling``), and its quantized session checked for integer kernels first when asked
        (``NoIntegerKernel``). A timing stops early once the two models are apart by more than the margin
        in every run: the comparisons the guard makes need no more."""
        return [timer.time(model, runs[0], profile_runs if k == 0 else 0, require_integer_kernels and k == 0,
                           worth_profiling if k == 0 else None, clear_margin=settings.margin)
                for k, timer in enumerate(timers)]

    def worth_profiling(float_s: float, quantized_s: float) -> bool:
        """Whether to profile the first timing, given its warm-up runs' seconds (``first_timing_estimate``)."""
        if settings.seconds is None or settings.min_attempts > 0:
            return True
        budget, first = first_timing_estimate(clock() - start, float_s, quantized_s, settings.seconds,
                                              pass_samples, runs[0])
        if 3 * first <= budget:
            return True
        not_profiled.append(f"the time budget ({budget:.3g} s) leaves no room for a revert attempt after a "
                            f"first timing of about {first:.3g} s: not profiled")
        return False

    # A fast model's runs are short and scatter most: run it more often, up to the settings' time per model
    # (at most an eighth of the time budget: the first timing and one attempt time both models, so their runs
    # take at most half of it). The statistics pass gives a first guess of the float run time and of the
    # budget (over-estimates: it also reduces the tensors it exposes); the first timing is taken again with
    # more runs only when it shows the guess was far off.
    if seconds and pass_samples:
        settings = _timing_share(settings)
        runs[0] = _runs_for(settings, seconds / pass_samples)
    weighted = {c.node for p in plan.points if p.role == "weight" for c in p.consumers}
    units = [n.node for n in plan.nodes if n.status == "quantized"
             and (settings.optimize_for == "latency" or n.node not in weighted)]
    # The per-node profile only ranks the groups (a few runs); the speed-ups compared come from timed runs.
    # With no integer kernel, every Q/DQ pair only adds work: no timing can say otherwise, and none is made.
    # The quantized session that would time the model counts its kernels first, opened before the float
    # session. For a model of gigabytes that order would put the float session's load on top of the
    # quantized session (1.58x to 1.76x the weights at peak on a 2.4 GB model), so the count then takes a
    # session of its own before the timing, as ``integer_kernels`` does (it does not look at a model too
    # large to hand to onnxruntime in memory).
    quantized_now = tuple(n.node for n in plan.nodes if n.status == "quantized")
    wants_count = settings.optimize_for == "latency" and bool(quantized_now)
    in_session = wants_count and not is_large(float_model) and not is_large(emitted.model)
    try:
        if wants_count and not in_session and integer_kernels(emitted.model) == 0:
            raise NoIntegerKernel("onnxruntime runs no integer kernel for the quantized model")
        first = timed(emitted.model, _PROFILE_RUNS if units else 0, require_integer_kernels=in_session)
    except RuntimeRefused as refusal:
        return not_timed(refusal)
    except NoIntegerKernel:
        untimed = prior + tuple(RevertRequest(u, SPEED_SOURCE, NO_INTEGER_KERNEL) for u in quantized_now)
        as_float = _final(reverter, untimed)
        fidelity_after = _remeasure(fidelity, check, float_model, samples, as_float.emitted.model)
        return finished(untimed, as_float, _untimed_section(settings, "no_integer_kernel", quantized_now,
                                                            round(clock() - start, 3)), fidelity_after)
    profiled = first[0].profiles or (RunProfile(0.0, {}, 0), RunProfile(0.0, {}, 0))
    settings = _timing_share(_float_pass_budget(settings, _pairs(first), pass_samples))
    wanted = _runs_for(settings, max(p.float.total_us for p in first) / 1e6)
    if wanted > 2 * runs[0]:
        runs[0] = wanted
        first = timed(emitted.model)
    initial = _speedup(_pairs(first))
    times: dict[str, UnitTime] = {}
    loose_float = loose_quantized = 0.0
    if not not_profiled:  # (profiled, or nothing to profile: every unit's time is then 0)
        owners = group_owners(graph, set(units))
        readers = qdq_readers(emitted.model)
        times, loose_float, loose_quantized = attribute(
            units, owners, names_of((n.name, n.outputs) for n in graph.nodes),
            names_of((n.name, tuple(n.output)) for n in emitted.model.graph.node), readers, profiled[0],
            profiled[1])
    candidates = sorted((u for u in times if _costs_more(times[u], settings.margin)),
                        key=lambda u: (-times[u].excess_us, units.index(u)))
    closures = {u: revert_closure(graph, set(units), u) for u in candidates}
    # A revert is kept only when it raises the speed-up by more than the margin. If the profile gives the
    # candidates together less excess than that, no measurement of their revert can be kept (the profiler's
    # overhead makes each group's excess, if anything, larger than it is): none is made.
    predicted = _predicted_speedup(first[0], times, candidates)
    searched = candidates if predicted >= initial + settings.margin else []
    log: list[dict] = []
    out_of_time = False

    def requests(reverted: Sequence[str], details: Mapping[str, str]) -> tuple[RevertRequest, ...]:
        """Each reverted candidate and its closure, once, with the decision's detail."""
        made: dict[str, RevertRequest] = {}
        for unit in reverted:
            for member in closures[unit]:
                detail = details.get(unit, "") if member == unit else speed_revert_companion(unit)
                if member not in made or member == unit:
                    made[member] = RevertRequest(member, SPEED_SOURCE, detail)
        return prior + tuple(made.values())

    last_cost = [clock() - start]
    # Each attempt's plan and model, by the units it reverted, and its outputs on the check's first samples:
    # the search ends on one of them, which then needs only its decisions' reasons, not another re-plan,
    # emission and check run. Kept for models small enough that a few copies cost little memory.
    attempts: dict[tuple[str, ...], tuple[Reverted, tuple[Mapping[str, Any], ...]]] = {}
    keep_attempts = not is_large(emitted.model, _MAX_KEPT_MODEL_BYTES)

    def score(reverted: tuple[str, ...]) -> float | None:
        nonlocal out_of_time
        began = clock()
        # Room for this measurement and the final re-plan and check, each about as long as the last one;
        # the first attempts are made whatever the budget (a re-plan alone may take longer than it).
        if (settings.seconds is not None and len(log) >= settings.min_attempts
                and began - start + 2 * last_cost[0] > settings.seconds):
            out_of_time = True
            return None
        made = reverter(requests(reverted, {}))
        if made is None:
            return None
        try:
            pairs = timed(made.emitted.model)
        except RuntimeRefused:  # as for the fidelity guard's attempts: a plan that cannot be had
            return None
        if keep_attempts:
            attempts[reverted] = (made, pairs[0].outputs)
        log.append(_pairs_dict(_pairs(pairs), settings))
        last_cost[0] = clock() - began
        return _speedup(_pairs(pairs))

    search = revert_search(searched, score, initial, math.inf, settings.budget,
                           settings.batch or max(1, len(candidates)), margin=settings.margin)
    final: Reverted | None = None
    final_outputs: tuple[Mapping[str, Any], ...] = ()
    details: dict[str, str] = {}
    chosen: tuple[RevertRequest, ...] = ()
    if search.reverted:
        details = {r.unit: _reason(times[r.unit], r.score_quantized, search, settings) for r in search.reverted}
        order = {u: i for i, u in enumerate(candidates)}
        units_reverted = tuple(sorted((r.unit for r in search.reverted), key=order.__getitem__))
        chosen = requests(units_reverted, details)
        measured = attempts.get(units_reverted)
        if measured is not None:
            final = Reverted(with_revert_details(measured[0].plan, chosen), measured[0].ranges, measured[0].emitted)
            final_outputs = measured[1]
        else:
            final = _final(reverter, chosen)
    # (Without a revert the model is the one whose kernels were counted above.)
    why_float, whole_float = _whole_float(settings, search.final, final.plan if final else plan,
                                          final.emitted.model if final else None)
    if whole_float:
        reason = (NO_INTEGER_KERNEL if why_float == "no_integer_kernel"
                  else _still_slower_reason(search.final, measured=bool(log)))
        chosen = (chosen or prior) + tuple(RevertRequest(u, SPEED_SOURCE, reason) for u in whole_float)
        details.update(dict.fromkeys(whole_float, reason))
        final = _final(reverter, chosen)
        # A model with every node back to float is, node for node, the float model the first timing ran: its
        # outputs there are this model's outputs in the runtime, and no session need be opened again for them.
        final_outputs = first[0].float_outputs if _same_model(final.emitted.model, float_model) else ()
    section = _section(plan, settings, runs[0], _pairs(first), search, times, candidates, closures, details, log,
                       loose_float, loose_quantized, out_of_time, round(clock() - start, 3))
    section["predicted_speedup"] = round(predicted, 3) if candidates else None
    if candidates and not searched:
        section["stopped"] = (f"the profile predicts {predicted:.2f}x with every candidate reverted, not more than "
                              f"the margin above {initial:.2f}x: no revert measured")
    if not_profiled:
        section["stopped"] = "time budget spent"
        section["not_profiled"] = not_profiled[0]
    if whole_float:
        section[why_float] = list(whole_float)
        # No quantized node is left: the output runs the float model's kernels (not timed again).
        section.update(final_speedup=1.0, as_fast_as_float=True, measured_final_speedup=round(search.final, 3))
    fidelity_after = None if final is None else _remeasure(fidelity, check, float_model, samples,
                                                          final.emitted.model, final_outputs)
    section["cost_s"] = round(clock() - start, 3)
    # Without a revert the model is the one the first timing ran.
    return finished(chosen, final, section, fidelity_after, final_outputs if final is not None else first[0].outputs)


def first_timing_estimate(elapsed: float, float_s: float, quantized_s: float, seconds: float,
                          pass_samples: int | None, runs: int) -> tuple[float, float]:
    """The time budget and the seconds a profiled first timing would take since the guard began, from the
    warm-up runs' seconds (``elapsed`` so far; ``seconds``: the statistics pass's time, the budget's cap).

    The profile only chooses what to revert: when the budget cannot pay for a revert attempt after the
    first timing, its profiled rounds would be spent for nothing (on every real model of the benchmark, they
    were). An attempt needs room for itself and the final re-plan, each about as long as everything before
    it (``guard_speed``'s ``score``): it is affordable when three times the first timing fits the budget.
    A first run is slower than the next ones, and the statistics pass gives another over-estimate of a float
    run: the smaller is taken, the quantized run scaled alike."""
    per_float = min(float_s, seconds / pass_samples) if pass_samples else float_s
    per_quantized = quantized_s * (per_float / float_s if float_s > 0 else 1.0)
    budget = _within_one_float_pass(seconds, per_float, pass_samples)
    return budget, elapsed + (_PROFILE_RUNS + runs) * (per_float + per_quantized)


def _predicted_speedup(first: TimedPair, times: Mapping[str, UnitTime], candidates: Sequence[str]) -> float:
    """The speed-up the first timing would show with every candidate's excess (profiled) taken off the
    quantized run; the first timing's own speed-up when there is no candidate."""
    excess = sum(times[u].excess_us for u in candidates)
    quantized = max(first.quantized.total_us - excess, 1e-9)
    return first.float.total_us / quantized if first.quantized.total_us > 0 else 0.0


def _same_model(model: Any, float_model: Any) -> bool:
    """Whether ``model`` runs exactly as ``float_model`` does: the same graph at the same opsets."""
    return list(model.opset_import) == list(float_model.opset_import) and model.graph == float_model.graph


def _pairs(timed: Sequence[TimedPair]) -> list[tuple[RunProfile, RunProfile]]:
    return [(t.float, t.quantized) for t in timed]


def _untimed_section(settings: SpeedSettings, why_float: str, whole_float: tuple[str, ...], cost: float) -> dict:
    """The report's ``speed`` section when the model was not timed: no integer kernel would run."""
    return {"optimize_for": settings.optimize_for, "runs": 0, "threads": [_threads_text(t) for t in settings.threads],
            "margin": settings.margin, "budget": settings.budget, "batch": 0, "budget_s": None, "cost_s": cost,
            "initial": None, "initial_speedup": None, "final_speedup": 1.0, "as_fast_as_float": True,
            "stopped": "no integer kernel: not timed", "groups": [], "unattributed_us": None, "measurements": [],
            "reverts": [], why_float: list(whole_float)}


#: The reason of a group returned to float because the model would run no integer kernel at all.
NO_INTEGER_KERNEL = ("onnxruntime runs no integer kernel in this model (after the measured reverts, if any): "
                     "its QuantizeLinear/DequantizeLinear pairs only add work to the float kernels")


def _final(reverter: Callable[[tuple[RevertRequest, ...]], Reverted | None],
           chosen: tuple[RevertRequest, ...]) -> Reverted:
    made = reverter(chosen)
    if made is None:
        raise RuntimeError("the speed guard's final plan could not be made again")
    return made


def _whole_float(settings: SpeedSettings, speedup: float, plan: QuantPlan,
                 model: Any | None) -> tuple[str, tuple[str, ...]]:
    """Why every node still quantized returns to float, and those nodes; ("", ()) when they stay (and always
    with optimize_for size).

    "no_integer_kernel": onnxruntime would run no integer kernel for ``model`` (a model too large to look at
    has none counted; None: not looked at), so every Q/DQ pair left is work on top of the float kernels.
    "still_slower": the model measured slower than float after the measured reverts (the groups' profiles did
    not explain the loss, or their reverts did not pay), so the float model is the fastest model known: in
    latency mode a model no faster than float is not worth its quantization error."""
    quantized = tuple(n.node for n in plan.nodes if n.status == "quantized")
    if settings.optimize_for != "latency" or not quantized:
        return "", ()
    # The measured speed-up first: it needs no session, and counting kernels opens one.
    if speedup < 1.0:
        return "still_slower", quantized
    if model is not None and integer_kernels(model) == 0:
        return "no_integer_kernel", quantized
    return "", ()


def _still_slower_reason(speedup: float, measured: bool = True) -> str:
    after = ("after the measured reverts" if measured
             else "and the time budget left no room to measure a revert of its slower groups")
    return (f"the model ran at {speedup:.2f}x the float speed in onnxruntime {after}: the float model is faster, "
            "so every quantized node returns to float")


def _float_pass_budget(settings: SpeedSettings, first: Sequence[tuple[RunProfile, RunProfile]],
                       pass_samples: int | None) -> SpeedSettings:
    """The time budget cut to one plain float pass over the calibration subset, estimated from the first
    profile (the float model's fastest run time over the thread counts, times the samples of the pass).

    The statistics pass runs the float model with its intermediate tensors exposed and reduced, so it takes
    longer than a plain float pass (1.3x on a CRNN recognizer); the guard is meant to cost less than the
    plain pass."""
    if settings.seconds is None or not pass_samples:
        return settings
    per_float = min(f.total_us for f, _ in first) / 1e6
    return replace(settings, seconds=_within_one_float_pass(settings.seconds, per_float, pass_samples))


def _within_one_float_pass(seconds: float, per_float: float, pass_samples: int | None) -> float:
    """``seconds`` cut to one plain float pass over ``pass_samples`` samples of ``per_float`` seconds each
    (unchanged without a sample count)."""
    return min(seconds, per_float * pass_samples) if pass_samples else seconds


def _timing_share(settings: SpeedSettings) -> SpeedSettings:
    """The timed runs' time per model cut to an eighth of the time budget (none without a budget)."""
    if settings.seconds is None:
        return settings
    return replace(settings, seconds_per_model=min(settings.seconds_per_model, settings.seconds / 8))


def _cache(options: QuantizeOptions) -> SpeedCache | None:
    if options.speed_cache is False:
        return None
    return SpeedCache(default_cache_dir() if options.speed_cache is True else Path(options.speed_cache))


def _key_parts(settings: SpeedSettings, options: QuantizeOptions) -> dict[str, Any]:
    """Everything besides the two models that decides the guard's outcome (``rewriter.tuning.speed_cache``)."""
    return {"settings": {"optimize_for": settings.optimize_for, "threads": list(settings.threads),
                         "margin": settings.margin, "budget": settings.budget, "batch": settings.batch},
            "machine": machine_fingerprint(), "rewriter": _rewriter_code()}


@functools.lru_cache(maxsize=1)
def _rewriter_code() -> str:
    """A digest of the package's own source, which is what decides the guard's outcome: a checkout on
    PYTHONPATH or an editable install keeps its version number while its code changes, and a decision
    stored by other code must not be replayed. (Reading and hashing the modules takes about 4 ms; asking
    importlib.metadata for the version number took 17 ms, a sixth of the guard's cost on a small model,
    and added nothing the digest does not hold.)"""
    return _source_digest(Path(__file__).resolve().parent.parent)


def _source_digest(package: Path) -> str:
    """A digest of every module under ``package``: its path and its bytes."""
    digest = hashlib.sha256()
    for source in sorted(package.rglob("*.py")):
        digest.update(source.relative_to(package).as_posix().encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _replay(stored: StoredDecision, prior: tuple[RevertRequest, ...], reverter: Callable[..., Reverted | None],
            emitter: Emitter, fidelity: dict | None, check: SelfCheck | None, float_model: Any,
            samples: Sequence[Mapping[str, Any]], plan: QuantPlan, ranges: Mapping[str, Any], emitted: Any,
            errors: Mapping[str, float], entry: str, cost: float) -> SpeedChecked | None:
    """The stored decision applied through the plan, untimed; None when its plan cannot be made (then the
    guard measures again)."""
    section = {**stored.section, "replayed_from": entry, "cost_s": cost}
    if not stored.reverts:
        return SpeedChecked(plan, ranges, emitted, errors, section, None)
    final = reverter(prior + tuple(RevertRequest(node, SPEED_SOURCE, detail) for node, detail in stored.reverts))
    if final is None:
        return None
    out_errors = emitter.errors(final.plan, final.ranges)
    remeasured = _remeasure(fidelity, check, float_model, samples, final.emitted.model)
    return SpeedChecked(final.plan, final.ranges, final.emitted, out_errors, section, remeasured)


def _runs_for(settings: SpeedSettings, float_s: float) -> int:
    """Timed runs per model for a float run of ``float_s`` seconds: at least the settings' runs, more for a fast
    model up to the settings' time per model, at most ``_MAX_RUNS``."""
    return max(settings.runs, min(_MAX_RUNS, int(settings.seconds_per_model / max(float_s, 1e-6))))


def _costs_more(t: UnitTime, margin: float) -> bool:
    return t.excess_us > max(_MIN_EXCESS_US, margin * t.float_us)


def _speedup(pairs: Sequence[tuple[RunProfile, RunProfile]]) -> float:
    """Float time over quantized time, the lowest over the thread counts (1.0: as fast as float)."""
    return min(f.total_us / q.total_us if q.total_us > 0 else 0.0 for f, q in pairs)


def _reason(t: UnitTime, quantized_again: float | None, search: SearchResult, settings: SpeedSettings) -> str:
    """The measured reason a revert's decision carries."""
    alone = ("not measured alone (budget spent)" if quantized_again is None or math.isinf(quantized_again)
             else f"quantized again alone {quantized_again:.2f}x")
    return (f"quantized group {t.quantized_us:.0f} us against {t.float_us:.0f} us float per run (profile, "
            f"{_threads_text(settings.threads[0])}); model {search.initial:.2f}x -> {search.final:.2f}x the float "
            f"speed; {alone}")


def _threads_text(threads: int) -> str:
    return "default threads" if threads == 0 else f"{threads} thread{'s' if threads > 1 else ''}"


def _pairs_dict(pairs: Sequence[tuple[RunProfile, RunProfile]], settings: SpeedSettings) -> dict:
    return {"threads": [{"threads": _threads_text(t), "float_ms": round(f.total_us / 1000, 3),
                         "quantized_ms": round(q.total_us / 1000, 3),
                         "speedup": round(f.total_us / q.total_us, 3) if q.total_us > 0 else None}
                        for t, (f, q) in zip(settings.threads, pairs)],
            "speedup": round(_speedup(pairs), 3)}


def _remeasure(fidelity: dict | None, check: SelfCheck | None, float_model: Any,
               samples: Sequence[Mapping[str, Any]], model: Any,
               known_runs: Sequence[Mapping[str, Any]] = ()) -> dict | None:
    """The fidelity section with the final model's output fidelity (a revert only raises it); ``known_runs``:
    the model's outputs on the check's first samples, when its timed runs gave them."""
    if fidelity is None or "runtime" not in fidelity:
        return fidelity
    check = check or SelfCheck(float_model, samples, fidelity["runtime"])
    measured = check.measure(model, clear_above_db=fidelity["threshold_db"] + CLEAR_MARGIN_DB, known_runs=known_runs)
    held_out = bool(fidelity.get("held_out"))
    used = sample_fields(check.held_out, measured.samples) if check.held_out is not None else {}
    updated = {**fidelity, **used, "outputs": [o.as_dict() for o in measured.outputs],
               "worst_sqnr_db": _round(measured.worst_sqnr_db),
               "below_threshold": measured.worst_sqnr_db < fidelity["threshold_db"],
               "summary": measured.summary(held_out), "measured_after": "the speed guard's reverts"}
    if not updated["below_threshold"]:
        updated["warning"] = None
    return updated


def _section(plan: QuantPlan, settings: SpeedSettings, runs: int, first: Sequence[tuple[RunProfile, RunProfile]],
             search: SearchResult, times: Mapping[str, UnitTime], candidates: list[str],
             closures: Mapping[str, tuple[str, ...]], details: Mapping[str, str], log: list[dict], loose_float: float,
             loose_quantized: float, out_of_time: bool, cost: float) -> dict:
    ops = {n.node: n.op_type for n in plan.nodes}
    stopped = "time budget spent" if out_of_time else search.stopped
    if stopped == "no candidate left":
        stopped = "no candidate left" if search.measurements else "no group costs more than it saves"
    return {
        "optimize_for": settings.optimize_for, "runs": runs,
        "threads": [_threads_text(t) for t in settings.threads], "margin": settings.margin,
        "budget": settings.budget, "batch": settings.batch or len(candidates),
        "budget_s": None if settings.seconds is None else round(settings.seconds, 3),
        "cost_s": cost,
        "initial": _pairs_dict(first, settings), "initial_speedup": round(search.initial, 3),
        "final_speedup": round(search.final, 3),
        # Within the margin: two measurements of the float model itself differ by that much on a busy machine.
        "as_fast_as_float": search.final >= 1.0 - settings.margin, "stopped": stopped,
        "groups": [{"node": u, "op_type": ops.get(u), "float_us": round(times[u].float_us, 1),
                    "quantized_us": round(times[u].quantized_us, 1), "candidate": u in candidates}
                   for u in sorted(times, key=lambda u: -times[u].excess_us)],
        "unattributed_us": {"float": round(loose_float, 1), "quantized": round(loose_quantized, 1)},
        "measurements": [{"action": m.action, "nodes": list(m.units), "kept": m.kept,
                          **(entry if m.score is not None else {"speedup": None})}
                         for m, entry in zip(search.measurements, _aligned(search, log))],
        "reverts": [{"node": r.unit, "op_type": ops.get(r.unit), "float_us": round(times[r.unit].float_us, 1),
                     "quantized_us": round(times[r.unit].quantized_us, 1),
                     "speedup_quantized_again": None if r.score_quantized is None or math.isinf(r.score_quantized)
                     else round(r.score_quantized, 3), "reason": details[r.unit],
                     "with": [m for m in closures[r.unit] if m != r.unit]}
                    for r in search.reverted],
    }


def _aligned(search: SearchResult, log: list[dict]) -> list[dict]:
    """The profile entries of the measurements that were made (a None score made none), in order."""
    entries = iter(log)
    return [next(entries) if m.score is not None else {} for m in search.measurements]


def _round(value: float) -> float:
    return value if math.isinf(value) else round(value, 3)

