"""AccuracyAwareQuantization: keep a user's metric within a stated drop of the float model's, returning
the most harmful quantized nodes to float, measured, through the plan.

The search is the fidelity guard's (``revert_search``) with the user's metric as its score: grow the set
of reverted nodes one step (``batch`` nodes, 1 by default as in the original tool) at a time, most harmful
first, undoing a step that made the drop larger (``use_prev_if_drop_increase``; a step that leaves it
unchanged stays, since damage several nodes do together shows only once all are reverted), until the drop is within
the limit; if every candidate was tried and the limit is still not met, revert the undone steps together
once more (each looked harmful alone; together they may be all that separates the model from float); then
quantize each reverted node again alone, so that what stays reverted is what the limit
needs, each with its measured contribution.

Several reverts may meet the limit, and they do not cost the same speed: a large convolution returned to
float gives up far more of the integer kernels' gain than a small matrix product. So when the limit is met
and a ``cost`` of each node is given (the search passes its multiply-accumulates, ``rewriter.ir.work``), the
kept reverts, most costly first, are offered substitutes: candidates not reverted that cost at most half as
much (a smaller saving is within what the estimate can tell), most harmful first, each measured in the
revert's place; the first that still meets the limit takes it (a ``substitute`` step). At most
``SUBSTITUTE_TRIES`` are measured in one search: they are metric evaluations, and the most costly reverts
come first. A substitute's contribution is exact: the model without either was measured when the costly
one was quantized again alone. The other reverts keep the figures measured before the substitution.

"Most harmful" is measured without the user's metric, which is the expensive part: a candidate's harm is
the output SQNR (against the float model, on the self-check's samples, at most ``ranking_subset_size``)
of the model with that candidate alone reverted on top of those already kept. The ranking is made once for
every candidate, and after each kept step the next ``RERANK_WINDOW`` candidates are ranked again in the new
context. Without a ranking measurement (no self-check samples) the order is the per-tensor SQNR one.

Every user-metric evaluation is a *trial*: the caller logs what it evaluated, the value and its wall time.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, replace
from typing import Callable, Literal, Mapping, Sequence

from rewriter.errors import UserError
from rewriter.tuning.revert_search import Measurement, Revert, SearchResult, by_contribution, revert_search

__all__ = ["ACCURACY_AWARE_SOURCE", "AccuracyAwareOutcome", "AccuracyAwareSettings", "DropType", "RERANK_WINDOW",
           "SUBSTITUTE_TRIES", "accuracy_aware_search", "rank_by_score"]

#: The decision source of the search's reverts in plans, reports and ``audit``.
ACCURACY_AWARE_SOURCE = "accuracy-aware-search"
#: Cheaper candidates measured in place of kept reverts, once the limit is met, in one search.
SUBSTITUTE_TRIES = 3
#: Candidates ranked again after each kept step (the next ones in the current order): ranking all of them
#: again costs one re-plan, re-emit and run on the ranking samples per candidate, each step.
RERANK_WINDOW = 8

DropType = Literal["absolute", "relative"]


@dataclass(frozen=True)
class AccuracyAwareSettings:
    """The original tool's AccuracyAwareQuantization parameters, with its defaults.

    ``ranking_subset_size`` None: every self-check sample (the original tool: up to 300 of the data set).
    ``max_iter_num`` None: no bound (the original tool's sys.maxsize); it bounds the metric evaluations
    after the first two (float and quantized). ``batch`` (this tool's): nodes reverted per growing step.
    ``metric_subset_ratio``, ``tune_hyperparams``, ``annotation_free``: accepted, not run (docs).
    """

    maximal_drop: float = 0.01
    drop_type: DropType = "absolute"
    base_algorithm: str = "DefaultQuantization"
    ranking_subset_size: int | None = None
    max_iter_num: int | None = None
    metric_subset_ratio: float = 0.5
    convert_to_mixed_preset: bool = False
    use_prev_if_drop_increase: bool = True
    tune_hyperparams: bool = False
    batch: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.maximal_drop < math.inf:  # also refuses NaN
            raise UserError(f"the maximal accuracy drop must be 0 or more, got {self.maximal_drop}")
        if self.drop_type not in ("absolute", "relative"):
            raise UserError(f"unknown drop type {self.drop_type!r}; choose absolute or relative")
        for name, value in (("ranking_subset_size", self.ranking_subset_size), ("max_iter_num", self.max_iter_num),
                            ("batch", self.batch)):
            if value is not None and value < 1:
                raise UserError(f"{name} must be at least 1, got {value}")

    def allowed_drop(self, baseline: float) -> float:
        """The largest drop allowed, in metric units (relative: a share of the baseline's magnitude)."""
        return self.maximal_drop * abs(baseline) if self.drop_type == "relative" else self.maximal_drop

    def drop(self, baseline: float, value: float) -> float:
        """The drop of ``value`` (both oriented: higher is better), as ``maximal_drop`` counts it."""
        lost = baseline - value
        if self.drop_type == "relative":
            return lost / abs(baseline) if baseline else (0.0 if lost == 0 else math.copysign(math.inf, lost))
        return lost

    def describe(self) -> str:
        share = f"{self.maximal_drop:g}" + (" of the baseline" if self.drop_type == "relative" else "")
        return f"drop at most {share}"


@dataclass(frozen=True)
class AccuracyAwareOutcome:
    """The search's result in oriented metric values (higher is better)."""

    search: SearchResult
    baseline: float
    ranking_measurements: int

    @property
    def reverted(self) -> tuple[Revert, ...]:
        return self.search.reverted


def rank_by_score(pool: Sequence[str], reverted: tuple[str, ...],
                  score: Callable[[tuple[str, ...]], float | None]) -> list[str]:
    """``pool`` ordered by ``score`` with each candidate reverted alone on top of ``reverted``, highest first;
    candidates the score cannot measure last; ties keep ``pool``'s order."""
    measured = []
    for i, unit in enumerate(pool):
        value = score(tuple(reverted) + (unit,))
        measured.append((value is None, -(value if value is not None else 0.0), i, unit))
    return [unit for *_, unit in sorted(measured)]


def accuracy_aware_search(candidates: Sequence[str], metric: Callable[[tuple[str, ...]], float | None],
                          baseline: float, initial: float, settings: AccuracyAwareSettings,
                          rank_score: Callable[[tuple[str, ...]], float | None] | None = None,
                          cost: Mapping[str, float] | None = None) -> AccuracyAwareOutcome:
    """Revert candidates until the drop of ``metric`` is within ``settings`` (module docstring).

    Args:
        candidates: the quantized nodes, most suspect first by a free measure (per-tensor SQNR).
        metric: the user's metric (oriented: higher is better) with the given nodes reverted; None when the
            revert cannot be carried out.
        baseline: the float model's metric (oriented).
        initial: the quantized model's metric (oriented), nothing reverted.
        rank_score: the ranking's measure with the given nodes reverted (higher is better: output SQNR);
            None keeps ``candidates``' order.
        cost: what returning each candidate to float costs in speed (any unit); None: no substitutes are
            tried (module docstring).
    """
    ranked = 0

    def counted(units: tuple[str, ...]) -> float | None:
        nonlocal ranked
        ranked += 1
        assert rank_score is not None
        return rank_score(units)

    order = list(candidates)
    rerank = None
    if rank_score is not None:
        order = rank_by_score(order, (), counted)

        def rerank(reverted: tuple[str, ...], pool: list[str]) -> list[str]:
            return rank_by_score(pool[:RERANK_WINDOW], reverted, counted) + pool[RERANK_WINDOW:]

    budget = settings.max_iter_num if settings.max_iter_num is not None else sys.maxsize
    target = baseline - settings.allowed_drop(baseline)
    # The relative limit is a share of the baseline; a small tolerance keeps a drop that equals the limit in
    # decimal (0.01 of 0.9) from failing on its binary rounding.
    target -= 1e-12 * max(1.0, abs(baseline))
    search = revert_search(order, metric, initial, target, budget, settings.batch,
                           keep="not worse" if settings.use_prev_if_drop_increase else "always", rerank=rerank,
                           retry_undone=True)
    if cost is not None and search.met:
        search = substitute_cheaper(search, order, metric, cost, budget)
    return AccuracyAwareOutcome(search, baseline, ranked)


def substitute_cheaper(search: SearchResult, order: Sequence[str], metric: Callable[[tuple[str, ...]], float | None],
                       cost: Mapping[str, float], budget: int) -> SearchResult:
    """``search`` (the limit met) with its costly reverts replaced by cheaper ones that also meet it, measured
    (module docstring); ``order``: the candidates, most harmful first; ``budget``: the most ``metric`` calls
    of the whole search."""
    position = {u: i for i, u in enumerate(order)}
    reverted = list(search.reverted)
    measurements = list(search.measurements)
    current = search.final
    tried: set[str] = set()
    for revert in sorted(search.reverted, key=lambda r: (-cost.get(r.unit, 0.0), position.get(r.unit, 0))):
        if revert.score_quantized is None:  # not measured alone: the model without it is not known
            continue
        held = {r.unit for r in reverted}
        cheaper = [u for u in order if u not in held and u not in tried
                   and cost.get(u, 0.0) <= cost.get(revert.unit, 0.0) / 2]
        for unit in cheaper:
            if len(measurements) >= budget or len(tried) >= SUBSTITUTE_TRIES:
                break
            tried.add(unit)
            trial = tuple(sorted(held - {revert.unit} | {unit}, key=lambda u: position.get(u, len(order))))
            value = metric(trial)
            kept = value is not None and value >= search.target
            # The units: the substitute, then the revert it would replace.
            measurements.append(Measurement("substitute", (unit, revert.unit), value, kept))
            if kept:
                assert value is not None
                # The model without either was measured when ``revert.unit`` was quantized again alone.
                reverted = [Revert(unit, value, revert.score_quantized) if r.unit == revert.unit else r
                            for r in reverted]
                current = value
                break
    if len(measurements) == len(search.measurements):
        return search
    reverted.sort(key=by_contribution(position))
    return replace(search, final=current, reverted=tuple(reverted), measurements=tuple(measurements))
