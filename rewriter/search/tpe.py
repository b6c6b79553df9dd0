"""TPE: the fastest configuration that keeps the metric within a stated drop, searched with optuna's
Tree-structured Parzen Estimator.

Each trial chooses a preset, the range estimator preset, the activations' max aggregator and, for each of
the ``groups`` most suspect quantized nodes of the base run (lowest per-tensor SQNR), whether it stays
float. A trial quantizes with its preset and estimators (one pipeline run per distinct pair, kept for the
trials that share it), reverts its float nodes through the plan, and runs the user's metric.

What the sampler maximises is a *speed proxy*, the share of the base run's quantized work (its quantized
nodes' multiply-accumulates, estimated from the graph's shapes by ``rewriter.ir.work``) that stays quantized,
subject to the constraint drop <= allowed (optuna's constrained TPE). A proxy, not the measured latency,
because the sampler's next choices depend on every value it was told: a timing that differs run to run would
make the search differ for the same seed. The latency is measured afterwards, serially, for every
configuration that met the limit (and the float model), in one process on one thread, with no trial running
(``rewriter.emit.latency``); the report lists it per trial, and the chosen configuration is the one of highest
proxy that met the limit (ties: smaller drop, then lower measured latency is *not* used, so that the choice
stays reproducible; then trial order).

Trials are asked ``batch`` at a time (the same for any number of workers), then evaluated, by ``workers``
local processes when more than one, and told in order: the search is the same for --workers 1 and N.
A study file (``storage``) keeps every finished trial; a run on the same file resumes, counting those
toward ``max_trials``.
"""
from __future__ import annotations

import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from rewriter.errors import RuntimeRefused, UserError
from rewriter.match.planner import RevertRequest
from rewriter.options import QuantizeOptions
from rewriter.pipeline import QuantizeResult, quantize
from rewriter.search.accuracy_aware import SEARCH_SCHEMA, TrialLog, remeasured_fidelity, revert_costs
from rewriter.search.metric import Metric
from rewriter.tuning.accuracy_aware import AccuracyAwareSettings, rank_by_score
from rewriter.tuning.tpe_settings import TPE_SOURCE, TpeSettings
from rewriter.tuning.check_run import revert_through_plan, reverts_in_plan
from rewriter.tuning.guard import guard_candidates

__all__ = ["TPE_SOURCE", "TpeSettings", "quantize_tpe"]

STUDY_NAME = "rewriter-tpe"
AGGREGATORS = {"default": None, "max": {"max": {"aggregator": "max"}}}


class TrialEvaluator:
    """Evaluates trials' parameters: quantize (cached per preset and estimators), revert, run the metric.
    Returns plain values, so that it can run in worker processes."""

    def __init__(self, model: Any, data: Any, options: QuantizeOptions, metric: Metric, baseline: float,
                 limit: AccuracyAwareSettings) -> None:
        self.model, self.data, self.options, self.metric = model, data, options, metric
        self.baseline, self.limit = baseline, limit
        self.runs: dict[tuple[str, str, str], QuantizeResult] = {}
        self.candidates: list[str] = []
        self.total_work = 1.0

    def run(self, preset: str, estimator: str, aggregator: str) -> QuantizeResult:
        key = (preset, estimator, aggregator)
        if key not in self.runs:
            ranges = replace(self.options.ranges, estimator_preset=estimator,
                             activations=AGGREGATORS[aggregator] or self.options.ranges.activations)
            self.runs[key] = quantize(self.model, self.data,
                                      replace(self.options, preset=preset, ranges=ranges),  # type: ignore[arg-type]
                                      search_hooks=True)
        return self.runs[key]

    def prepare(self, groups: int) -> None:
        """The nodes whose float/quantized choice is searched, and the proxy's denominator (the base run).

        The nodes are the accuracy-aware search's ranking (``rank_by_score``): each quantized node of the
        base run reverted alone, the output SQNR measured on the self-check samples, highest first.
        """
        base = self.run(self.options.preset, self.options.ranges.estimator_preset, "default")
        hooks = base.search
        assert hooks is not None
        order = guard_candidates(hooks.plan, hooks.errors)
        check = hooks.check
        if check is not None and check.samples and len(order) > groups:
            reverter = revert_through_plan(hooks.emitter, hooks.plan, hooks.ranges, self.options)

            def output_sqnr(units: tuple[str, ...]) -> float | None:
                made = reverter(tuple(RevertRequest(u, TPE_SOURCE) for u in units))
                if made is None:
                    return None
                try:
                    return check.measure(made.emitted.model).worst_sqnr_db
                except RuntimeRefused:
                    return None

            order = rank_by_score(order, (), output_sqnr)
        self.candidates = order[:groups]
        self.total_work = max(1.0, _quantized_work(base, hooks.plan))

    def made(self, params: dict[str, Any], details: dict[str, str] | None = None) -> tuple[Any, tuple[str, ...]]:
        run = self.run(params["preset"], params["range_estimator"], params["aggregator"])
        hooks = run.search
        assert hooks is not None
        quantized = {n.node for n in hooks.plan.nodes if n.status == "quantized"}
        floats = tuple(n for n in self.candidates if params.get(f"float:{n}") and n in quantized)
        guard = tuple(reverts_in_plan(hooks.plan))  # the fidelity and speed guards' reverts stay
        reverts = guard + tuple(RevertRequest(n, TPE_SOURCE, (details or {}).get(n, "")) for n in floats)
        if not reverts:
            return (hooks.plan, hooks.ranges, hooks.emitted), floats
        made = revert_through_plan(hooks.emitter, hooks.plan, hooks.ranges, self.options)(reverts)
        return (None if made is None else (made.plan, made.ranges, made.emitted)), floats

    def evaluate(self, number: int, params: dict[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        made, floats = self.made(params)
        result: dict[str, Any] = {"params": params, "float_nodes": list(floats), "metric": None, "drop": None,
                                  "proxy": 0.0, "feasible": False}
        if made is not None:
            plan, _, emitted = made
            run = self.run(params["preset"], params["range_estimator"], params["aggregator"])
            assert run.search is not None
            value = self.metric.evaluate(run.search.restore(emitted.model),
                                         f"TPE trial {number} ({_describe(params, floats)})")
            drop = self.limit.drop(self.metric.oriented(self.baseline), self.metric.oriented(value.value))
            result.update(metric=value.value, drop=drop, feasible=drop <= self.limit.maximal_drop + 1e-12,
                          proxy=round(_quantized_work(run, plan) / self.total_work, 6))
        result["seconds"] = time.perf_counter() - start
        return result


_WORKER: TrialEvaluator | None = None


def _evaluate_in_worker(number: int, params: dict[str, Any]) -> dict[str, Any]:
    assert _WORKER is not None
    return _WORKER.evaluate(number, params)


class _RayTrials:
    """Trials as Ray tasks: ``workers`` actors, each with its own evaluator made from the same recipe (the
    base run made again there), given the batch's trials in turn; results come back in trial order."""

    def __init__(self, address: str | None, workers: int, evaluator: TrialEvaluator) -> None:
        try:
            import ray
        except ImportError:
            raise UserError("--ray needs ray: pip install 'rewriter[distributed]'") from None
        self.ray = ray
        try:
            ray.init(address=address or None, ignore_reinit_error=True, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        except Exception as error:  # noqa: BLE001 - ray's connection errors have no common public base
            raise UserError(f"cannot reach the Ray cluster {address or '(a new local one)'}: {error}") from None
        metric = evaluator.metric
        # A metric loaded from a file is loaded again in each worker by its name; a callable goes as it is.
        recipe = (evaluator.model, evaluator.data, evaluator.options, metric.spec or metric.function, metric.name,
                  metric.lower_is_better, evaluator.baseline, evaluator.limit, evaluator.candidates,
                  evaluator.total_work)
        actor: Any = ray.remote(_RayTrialActor)
        self.actors: list[Any] = [actor.remote(recipe) for _ in range(workers)]

    def evaluate(self, asked: list[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
        calls = [self.actors[i % len(self.actors)].evaluate.remote(number, params)
                 for i, (number, params) in enumerate(asked)]
        try:
            return list(self.ray.get(calls))
        except self.ray.exceptions.RayTaskError as error:
            cause = error.cause if isinstance(getattr(error, "cause", None), UserError) else None
            if cause is not None:
                raise UserError(cause.message) from None
            raise

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)


class _RayTrialActor:
    def __init__(self, recipe: tuple) -> None:
        from rewriter.search.metric import load_metric

        model, data, options, function, name, lower, baseline, limit, candidates, total_work = recipe
        metric = Metric(load_metric(function) if isinstance(function, str) else function, name, lower)
        self.evaluator = TrialEvaluator(model, data, options, metric, baseline, limit)
        self.evaluator.candidates, self.evaluator.total_work = candidates, total_work

    def evaluate(self, number: int, params: dict[str, Any]) -> dict[str, Any]:
        return self.evaluator.evaluate(number, params)


def quantize_tpe(model: str | Path | Any, data: Any, options: QuantizeOptions, settings: TpeSettings,
                 metric: Metric) -> QuantizeResult:
    """The fastest configuration within the drop limit, by TPE (module docstring).

    Raises:
        UserError: optuna is not installed, bad input, or the metric fails on a trial.
    """
    global _WORKER
    try:
        import optuna
    except ImportError:
        raise UserError("--tpe needs optuna: pip install 'rewriter[tpe]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    limit = settings.limit
    log = TrialLog(metric)
    clock = time.perf_counter()
    float_value = (metric.evaluate_file(model, "the float model") if isinstance(model, (str, Path))
                   else metric.evaluate(model, "the float model"))
    log.baseline, log.settings = float_value.value, limit
    log.add("float", {"model": "float"}, float_value, time.perf_counter() - clock)
    evaluator = TrialEvaluator(model, data, options, metric, float_value.value, limit)
    evaluator.prepare(settings.groups)

    distributions: dict[str, optuna.distributions.BaseDistribution] = {
        "preset": optuna.distributions.CategoricalDistribution(list(settings.presets)),
        "range_estimator": optuna.distributions.CategoricalDistribution(list(settings.estimators)),
        "aggregator": optuna.distributions.CategoricalDistribution(list(settings.aggregators)),
        **{f"float:{n}": optuna.distributions.CategoricalDistribution([False, True]) for n in evaluator.candidates}}
    # The accuracy limit as optuna's constraint (excess drop <= 0): set on each trial where optuna has
    # Trial.set_constraint (5.0 on), through constraints_func before.
    set_constraint = hasattr(optuna.trial.Trial, "set_constraint")
    constraint: dict[str, Any] = {} if set_constraint else {
        "constraints_func": lambda trial: (trial.user_attrs.get("excess", math.inf),)}
    sampler = optuna.samplers.TPESampler(seed=options.seed, n_startup_trials=min(8, settings.max_trials),
                                         **constraint)
    storage = f"sqlite:///{Path(settings.storage).resolve()}" if settings.storage else None
    try:
        study = optuna.create_study(study_name=STUDY_NAME, storage=storage, sampler=sampler, direction="maximize",
                                    load_if_exists=True)
    except Exception as error:  # noqa: BLE001 - optuna's storage errors have no common public base
        raise UserError(f"the TPE study file {settings.storage} cannot be opened: {error}") from None
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    deadline = None if settings.max_minutes is None else started + 60.0 * settings.max_minutes
    pool = None
    remote = _RayTrials(settings.ray_address, settings.workers, evaluator) if settings.ray else None
    if settings.workers > 1 and remote is None:
        _WORKER = evaluator  # inherited by the forked workers, with the base run already made
        pool = ProcessPoolExecutor(settings.workers, mp_context=multiprocessing.get_context("fork"))
    stopped = "max_trials"
    evaluated = 0  # metric evaluations of this run's trials, wherever they ran
    try:
        while len(finished) < settings.max_trials:
            if deadline is not None and time.perf_counter() > deadline:
                stopped = "max_minutes"
                break
            count = min(settings.batch, settings.max_trials - len(finished))
            asked = [study.ask(distributions) for _ in range(count)]
            if remote is not None:
                results = remote.evaluate([(t.number, t.params) for t in asked])
            elif pool is None:
                results = [evaluator.evaluate(t.number, t.params) for t in asked]
            else:
                results = list(pool.map(_evaluate_in_worker, [t.number for t in asked], [t.params for t in asked]))
            evaluated += sum(result["metric"] is not None for result in results)
            for trial, result in zip(asked, results):
                excess = math.inf if result["drop"] is None else result["drop"] - limit.maximal_drop
                for key in ("float_nodes", "metric", "drop", "feasible", "seconds", "proxy"):
                    trial.set_user_attr(key, result[key])
                trial.set_user_attr("excess", excess)
                if set_constraint:
                    trial.set_constraint("drop_over_limit", excess)
                study.tell(trial, result["proxy"])
            finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    finally:
        if pool is not None:
            pool.shutdown()
        if remote is not None:
            remote.close()
        _WORKER = None

    # Latency: serially, now that no trial runs; once per distinct configuration that met the limit.
    from rewriter.emit.latency import latency_ms  # onnxruntime: only when timing

    base_hooks = evaluator.run(options.preset, options.ranges.estimator_preset, "default").search
    assert base_hooks is not None
    timing_samples = (base_hooks.check.samples if base_hooks.check is not None else [])[:8]
    latencies: dict[tuple, float] = {}
    float_latency = None
    if timing_samples:
        float_model = model if not isinstance(model, (str, Path)) else None
        if float_model is None:
            from rewriter.ir.load import load_model
            float_model = load_model(model)
        float_latency = latency_ms(float_model, timing_samples)
        for done in finished:
            if done.user_attrs.get("feasible"):
                timed = _key(done.params, done.user_attrs["float_nodes"])
                if timed not in latencies:
                    made, _ = evaluator.made(done.params)
                    run = evaluator.run(done.params["preset"], done.params["range_estimator"],
                                        done.params["aggregator"])
                    assert made is not None and run.search is not None
                    latencies[timed] = latency_ms(run.search.restore(made[2].model), timing_samples)

    entries = []
    for done in finished:
        attrs = done.user_attrs
        timed = _key(done.params, attrs["float_nodes"])
        configuration = {"preset": done.params["preset"], "range_estimator": done.params["range_estimator"],
                         "aggregator": done.params["aggregator"], "float_nodes": attrs["float_nodes"]}
        entry = log.add("tpe", configuration, None, attrs["seconds"],
                        None if timed not in latencies else round(latencies[timed], 4))
        entry.update(metric=attrs["metric"], drop=None if attrs["drop"] is None else round(attrs["drop"], 6),
                     feasible=attrs["feasible"], speed_proxy=attrs["proxy"], study_trial=done.number)
        entries.append((done, entry))
    if not entries:
        raise UserError("the TPE search ran no trial: raise max_trials or max_minutes")
    feasible = [(t, e) for t, e in entries if e["feasible"]]
    if feasible:
        best_trial, best = min(feasible, key=lambda te: (-te[1]["speed_proxy"], te[1]["drop"], te[0].number))
    else:
        best_trial, best = min(entries, key=lambda te: (math.inf if te[1]["drop"] is None else te[1]["drop"],
                                                        te[0].number))
    allowed = limit.allowed_drop(metric.oriented(float_value.value))
    described = _describe(best_trial.params, best["configuration"]["float_nodes"])
    reason = (f"kept float by TPE trial {best_trial.number} ({described}): {metric.name} {best['metric']}, drop "
              f"{best['drop']} (allowed {allowed:g}), speed proxy {best['speed_proxy']}")
    made, floats = evaluator.made(best_trial.params, {n: reason for n in best["configuration"]["float_nodes"]})
    if made is None:
        raise RuntimeError("the TPE search's chosen plan could not be made again")
    run = evaluator.run(best_trial.params["preset"], best_trial.params["range_estimator"],
                        best_trial.params["aggregator"])
    hooks = run.search
    assert hooks is not None
    plan, ranges, emitted = made
    fidelity = remeasured_fidelity(hooks, emitted.model, "the TPE search") if floats else hooks.fidelity
    final = hooks.finish(plan, ranges, emitted, hooks.emitter.errors(plan, ranges), fidelity, None)
    ops = {n.node: n.op_type for n in plan.nodes}
    section: dict[str, Any] = {
        "schema": SEARCH_SCHEMA, "algorithm": "TPE", "metric": metric.name,
        "lower_is_better": metric.lower_is_better,
        "maximal_drop": limit.maximal_drop, "drop_type": limit.drop_type,
        "allowed_drop": allowed, "max_trials": settings.max_trials,
        "max_minutes": settings.max_minutes, "seed": options.seed, "batch": settings.batch,
        "workers": settings.workers, "ray": settings.ray, "storage": settings.storage, "groups": evaluator.candidates,
        "stopped": stopped, "baseline": float_value.value, "final": best["metric"], "final_drop": best["drop"],
        "met": bool(feasible), "speed_proxy": best["speed_proxy"], "float_latency_ms":
            None if float_latency is None else round(float_latency, 4),
        "latency_ms": best["latency_ms"], "metric_evaluations": 1 + evaluated,
        "reverts": [{"node": n, "op_type": ops.get(n), "reason": reason} for n in floats],
        "chosen_trial": best["trial"], "trials": log.trials, "seconds": round(time.perf_counter() - started, 3)}
    speed = ("" if best["latency_ms"] is None or not float_latency
             else f", {float_latency / best['latency_ms']:.2f}x the float model's speed")
    section["summary"] = (f"TPE: {metric.name} {best['metric']:.4g} (float {float_value.value:.4g}, drop "
                          f"{best['drop']:.4g} {'within' if feasible else 'NOT within'} the limit "
                          f"{section['allowed_drop']:.4g}), preset {best_trial.params['preset']}, "
                          f"{len(floats)} node(s) float{speed}, trial {best['trial']} of {len(log.trials)} chosen, "
                          f"{1 + evaluated} metric evaluations")
    if not feasible:
        section["message"] = (f"no TPE trial met the accuracy limit in {len(entries)} trial(s); the one of smallest "
                              "drop is written. Raise max_trials (--tpe-trials), allow a larger drop, or search "
                              "more nodes (--tpe-groups)")
    final.report["search"] = section
    return replace(final, search=None)


def _key(params: dict[str, Any], float_nodes: list[str]) -> tuple:
    return (params["preset"], params["range_estimator"], params["aggregator"], tuple(float_nodes))


def _describe(params: dict[str, Any], floats: Any) -> str:
    kept = ", ".join(floats) or "none"
    return (f"preset {params['preset']}, estimator {params['range_estimator']}, aggregator {params['aggregator']}, "
            f"float: {kept}")


def _quantized_work(run: QuantizeResult, plan: Any) -> float:
    """The multiply-accumulates of ``plan``'s quantized nodes: what the integer kernels run (a matrix product
    reads the same small weights many times, so its work, not its weights' size, is what int8 speeds up)."""
    hooks = run.search
    assert hooks is not None
    return sum(revert_costs(hooks.graph, [n.node for n in plan.nodes if n.status == "quantized"]).values())
