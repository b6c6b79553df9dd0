"""The fidelity guard: when the output strays too far from the float model, return the most harmful
quantized nodes to float, measured, through the plan.

A revertible unit is a quantized node: reverting it re-plans the model with the node kept float
(``RevertRequest``), which takes away every FakeQuantize on its inputs (activation and weight) and lets
the planner redo what depends on it (requantized outputs, int32 biases, shared scales). Each measurement is
that re-plan, the ranges of the new plan (the calibrated ones where a quantizer did not change), a re-emit
and a run of the output on the self-check's samples; the score is the worst output SQNR.

Candidates are ordered by their measured damage (``rewriter.tuning.damage``): one extra run of the float
and the quantized model on a few check samples, intermediate tensors exposed, gives each quantized node
its own quantizers' share of the error after it, the few float nodes after it included (a quantized
variance looks healthy per tensor, and only the ``Sqrt``/``Div`` after it show the damage). The nodes
measured to add error come first, most first; then those it could not measure (FakeQuantize output, which
runs in OpenVINO; past the cap on exposed tensors of a huge graph), then those measured to add none, both
in the per-tensor order: the lowest SQNR of the quantizers they read (cheap, already in the report), which
also breaks ties. ``revert_search`` reverts them in batches of ``batch`` in that order until the threshold is met,
then quantizes each reverted node again alone to measure its contribution to the output error, and keeps
reverted only those whose return would bring the output back below the threshold. Measuring every node
alone would cost one inference pass each, and misses damage several quantizers do together.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from rewriter.match.planner import RevertRequest
from rewriter.plan import QuantPlan
from rewriter.tuning.damage import DamageRanking
from rewriter.tuning.fidelity import Fidelity
from rewriter.tuning.revert_search import Revert, SearchResult, revert_search

__all__ = ["GUARD_SOURCE", "Attempt", "GuardOutcome", "GuardSettings", "guard_candidates", "run_guard",
           "worst_tensors"]

#: The decision source of the guard's reverts in plans, reports and ``audit``.
GUARD_SOURCE = "fidelity-guard"
#: The guard repairs damage in a few places (a LayerNorm, an outlier layer): it reverts at most this share
#: of the quantized nodes (and at least one batch). On a random-weight MobileNetV2 whose every layer adds
#: a little error it had reverted 43 of 62 layers for 5 dB; past this it stops and warns instead.
MAX_REVERTED_SHARE = 0.25


@dataclass(frozen=True)
class GuardSettings:
    threshold_db: float
    budget: int  # re-measurements at most (each one re-plan, re-emit and run on the check samples)
    batch: int  # candidates reverted per growing step


@dataclass(frozen=True)
class Attempt:
    """One re-planned and re-emitted model and its measured fidelity."""

    plan: QuantPlan
    ranges: Mapping[str, Any]
    emitted: Any  # EmitResult
    fidelity: Fidelity


@dataclass(frozen=True)
class GuardOutcome:
    search: SearchResult
    final: Attempt | None  # None when nothing was reverted
    initial: Fidelity
    settings: GuardSettings
    details: Mapping[str, str] = field(default_factory=dict)  # node -> the measured reason in its decision
    max_reverts: int = 0
    candidates: tuple[str, ...] = ()  # in the order the search took them
    ranking: DamageRanking = field(default_factory=DamageRanking)  # what ordered them (empty: the per-tensor order)

    def as_dict(self, plan: QuantPlan) -> dict:
        ops = {n.node: n.op_type for n in plan.nodes}
        s = self.search
        return {
            "threshold_db": self.settings.threshold_db, "budget": self.settings.budget, "batch": self.settings.batch,
            "max_reverts": self.max_reverts,
            "initial_worst_sqnr_db": _round(s.initial), "final_worst_sqnr_db": _round(s.final),
            "met": s.met, "stopped": s.stopped,
            "measurements": [{"action": m.action, "nodes": list(m.units),
                              "worst_sqnr_db": None if m.score is None else _round(m.score), "kept": m.kept}
                             for m in s.measurements],
            "reverts": [{"node": r.unit, "op_type": ops.get(r.unit),
                         "worst_sqnr_db_reverted": _round(r.score_reverted),
                         "worst_sqnr_db_quantized_again": None if r.score_quantized is None
                         else _round(r.score_quantized),
                         "contribution_db": None if r.contribution is None else _round(r.contribution),
                         "damage_db": self._damage_db(r.unit),
                         "reason": self.details[r.unit]}
                        for r in s.reverted],
            "ranking": self.ranking.as_dict(self.candidates, self.max_reverts),
            "initial_outputs": [o.as_dict() for o in self.initial.outputs],
        }

    def _damage_db(self, node: str) -> float | None:
        measured = self.ranking.nodes.get(node)
        return None if measured is None else measured.damage_db


def guard_candidates(plan: QuantPlan, errors: Mapping[str, float]) -> list[str]:
    """Quantized nodes, most suspect first: by the lowest SQNR of the quantizers they read, then plan order."""
    worst: dict[str, float] = {}
    for point in plan.points:
        value = errors.get(point.tensor)
        value = math.inf if value is None or math.isnan(value) else value
        for consumer in point.consumers:
            worst[consumer.node] = min(worst.get(consumer.node, math.inf), value)
    order = {n.node: i for i, n in enumerate(plan.nodes)}
    quantized = [n.node for n in plan.nodes if n.status == "quantized" and n.node in worst]
    return sorted(quantized, key=lambda name: (worst[name], order[name]))


def worst_tensors(errors: Mapping[str, float], count: int = 3) -> list[tuple[str, float]]:
    """The ``count`` quantized tensors of lowest SQNR, lowest first (ties by name)."""
    known = [(t, v) for t, v in errors.items() if v is not None and not math.isnan(v)]
    return sorted(known, key=lambda item: (item[1], item[0]))[:count]


def run_guard(initial: Fidelity, candidates: list[str], settings: GuardSettings,
              attempt: Callable[[tuple[RevertRequest, ...]], Attempt | None],
              ranking: DamageRanking | None = None) -> GuardOutcome:
    """Search reverts until the worst output SQNR reaches the threshold or the budget is spent.

    ``attempt(reverts)`` re-plans with ``reverts``, re-emits and measures; None when that plan cannot be
    carried out (a quantizer needs statistics the calibration pass did not collect, or the runtime refuses
    the model). When reverts are kept, the final plan is made once more with each revert's measured reason
    in its decision. ``ranking``: the measured damage that ordered ``candidates`` (``rewriter.tuning.damage``),
    for the reasons and the report; None when they are in the per-tensor order.
    """
    ranking = ranking if ranking is not None else DamageRanking()

    def score(units: tuple[str, ...]) -> float | None:
        result = attempt(tuple(RevertRequest(u, GUARD_SOURCE) for u in units))
        return None if result is None else result.fidelity.worst_sqnr_db

    limit = max(settings.batch, math.ceil(MAX_REVERTED_SHARE * len(candidates)))
    search = revert_search(candidates, score, initial.worst_sqnr_db, settings.threshold_db, settings.budget,
                           settings.batch, limit)
    if not search.reverted:
        return GuardOutcome(search, None, initial, settings, max_reverts=limit, candidates=tuple(candidates),
                            ranking=ranking)
    details = {r.unit: _reason(r, search, settings, ranking) for r in search.reverted}
    order = {u: i for i, u in enumerate(candidates)}
    final = attempt(tuple(RevertRequest(r.unit, GUARD_SOURCE, details[r.unit])
                          for r in sorted(search.reverted, key=lambda r: order[r.unit])))
    if final is None:
        raise RuntimeError("the fidelity guard's final plan could not be made again")
    return GuardOutcome(search, final, initial, settings, details, limit, tuple(candidates), ranking)


def _reason(revert: Revert, search: SearchResult, settings: GuardSettings, ranking: DamageRanking) -> str:
    """The measured reason a revert's decision carries."""
    where = (f"worst output SQNR {_text(search.initial)} dB as planned, {_text(search.final)} dB after the guard "
             f"(threshold {settings.threshold_db:g} dB)")
    damage = ranking.nodes.get(revert.unit)
    measured = "" if damage is None else f"; {damage.describe()}"
    if revert.score_quantized is None:
        return f"{where}; reverted in a batch that raised it, not measured alone (guard budget spent){measured}"
    return (f"{where}; quantized again alone: {_text(revert.score_quantized)} dB "
            f"(contribution {revert.score_reverted - revert.score_quantized:+.2f} dB){measured}")


def _round(value: float) -> float:
    return value if math.isinf(value) else round(value, 3)


def _text(value: float) -> str:
    return ("inf" if value > 0 else "-inf") if math.isinf(value) else f"{value:.2f}"
