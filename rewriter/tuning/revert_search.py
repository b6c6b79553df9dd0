"""Which quantized units to return to float: revert the most suspect, then measure what each one is worth.

The loop knows nothing of models: a unit is a name (the fidelity guard's units are nodes), and
``score(units)`` measures the output with those units reverted (higher is better; None when that revert
cannot be carried out). The fidelity guard scores the worst output SQNR; an accuracy-driven search scores
a user's metric with the same loop.

Reverting units one at a time and measuring each alone misses damage that several quantizers do together
(a LayerNorm quantized at five nodes: returning any one of them to float changes nothing, measured). So:

1. grow: revert the next ``batch`` candidates (the caller's order: most suspect first) on top of those
   kept, measure, keep the batch if the score rose; repeat until the score reaches ``target``;
   With ``retry_undone``, once every candidate was tried and the target is not met, the batches that were
   undone are reverted together in one more measurement (a metric measured on few samples can fall by a
   sample at each single step and still reach the target with all of them);
2. prune: for each kept unit, least suspect first, quantize it again alone and measure; its measured
   contribution is the score lost. It stays quantized if the score stays at ``target`` (or, if the target
   was not reached, does not fall); otherwise it stays reverted.

A ``margin`` makes both steps ask for more than noise: a batch is kept only when it raises the score by more
than the margin, and a unit is quantized again when that lowers the score by no more than the margin (timings
on a shared machine; a fidelity score is exact and takes none).

The reverts that remain are ranked by contribution. ``budget`` bounds the ``score`` calls; when it runs out
while pruning, the units not yet tried stay reverted (the safe side). ``max_units`` bounds how many units
may be reverted at once: a search that would have to return most of a model to float is told so
("revert limit") instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

__all__ = ["Measurement", "Revert", "SearchResult", "by_contribution", "revert_search"]


@dataclass(frozen=True)
class Measurement:
    """One ``score`` call: what changed and the score measured."""

    action: str  # "revert" (a batch reverted) | "requantize" (one unit quantized again)
    units: tuple[str, ...]
    score: float | None  # None: could not be carried out
    kept: bool  # the change was kept


@dataclass(frozen=True)
class Revert:
    """A unit left reverted, and what quantizing it again alone cost (measured, or None if not tried)."""

    unit: str
    score_reverted: float  # the score with it reverted, when it was measured
    score_quantized: float | None  # the score with it alone quantized again

    @property
    def contribution(self) -> float | None:
        return None if self.score_quantized is None else self.score_reverted - self.score_quantized


@dataclass(frozen=True)
class SearchResult:
    initial: float
    final: float
    target: float
    reverted: tuple[Revert, ...]  # largest measured contribution first; untried ones last
    measurements: tuple[Measurement, ...]
    stopped: str  # "target met" | "budget spent" | "no candidate left" | "revert limit"

    @property
    def met(self) -> bool:
        return self.final >= self.target


def by_contribution(order: Mapping[str, int]) -> Callable[[Revert], tuple]:
    """The sort key of reverts as a result lists them: largest measured contribution first, untried ones
    last, ties in candidate ``order`` (unit -> position)."""
    return lambda r: (r.contribution is None, -(r.contribution or 0.0), order[r.unit])


def revert_search(candidates: Sequence[str], score: Callable[[tuple[str, ...]], float | None], initial: float,
                  target: float, budget: int, batch: int, max_units: int | None = None, keep: str = "better",
                  rerank: Callable[[tuple[str, ...], list[str]], list[str]] | None = None,
                  margin: float = 0.0, retry_undone: bool = False) -> SearchResult:
    """Revert units of ``candidates`` until ``score`` reaches ``target`` (module docstring).

    Args:
        candidates: the revertible units, most suspect first.
        score: the measurement with the given units reverted (in candidate order); None if impossible.
        initial: the score with nothing reverted.
        target: the score to reach.
        budget: the most ``score`` calls.
        batch: candidates reverted per growing step (at least 1).
        max_units: the most units reverted at any time (None: no limit).
        keep: which reverted batches stay: "better" (the score rose by more than ``margin``), "not worse"
            (it did not fall) or "always"; the others are undone.
        rerank: after each kept batch, the remaining candidates in a new order (given those reverted and
            the remaining ones, most suspect first); None keeps the caller's order.
        margin: the change of score that counts (module docstring); 0 for exact scores.
        retry_undone: when every candidate was tried and the target is still not met, revert all the undone
            batches together in one more measurement, kept if it raises the score.
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    if keep not in ("better", "not worse", "always"):
        raise ValueError(f"keep must be better, not worse or always, got {keep!r}")
    order = {u: i for i, u in enumerate(dict.fromkeys(candidates))}
    pool = list(order)
    current = initial
    reverted: list[str] = []
    log: list[Measurement] = []

    def measure(action: str, units: tuple[str, ...], trial: list[str]) -> float | None:
        value = score(tuple(sorted(trial, key=order.__getitem__)))
        log.append(Measurement(action, units, value, False))
        return value

    def keep_last() -> None:
        log[-1] = Measurement(log[-1].action, log[-1].units, log[-1].score, True)

    limit = len(pool) if max_units is None else max_units
    undone: list[str] = []
    while current < target and pool and len(log) < budget and len(reverted) < limit:
        room = min(batch, limit - len(reverted))
        added, pool = pool[:room], pool[room:]
        value = measure("revert", tuple(added), reverted + added)
        if value is not None and (value > current + margin or keep == "always"
                                  or (keep == "not worse" and value >= current)):
            keep_last()
            reverted, current = reverted + added, value
            if rerank is not None and pool:
                pool = rerank(tuple(sorted(reverted, key=order.__getitem__)), pool)
        else:
            undone += added
    if retry_undone and current < target and not pool and undone and len(log) < budget \
            and len(reverted) + len(undone) <= limit:
        # Every step left undone looked harmful alone; together they may be what keeps the score down
        # (with all of them reverted the model may be the float one).
        value = measure("revert", tuple(undone), reverted + undone)
        if value is not None and value > current + margin:
            keep_last()
            reverted, current = reverted + undone, value

    measured_at: dict[str, tuple[float, float]] = {}
    met = current >= target
    for unit in sorted(reverted, key=order.__getitem__, reverse=True):
        if len(log) >= budget:
            break
        rest = [u for u in reverted if u != unit]
        value = measure("requantize", (unit,), rest)
        if value is not None and (value >= target if met else value >= current - margin):
            keep_last()
            reverted, current = rest, value
        else:
            measured_at[unit] = (current, value if value is not None else float("-inf"))

    if current >= target:
        stopped = "target met"
    elif not pool:
        stopped = "no candidate left"
    else:
        stopped = "budget spent" if len(log) >= budget or len(reverted) < limit else "revert limit"
    kept = [Revert(u, *measured_at[u]) if u in measured_at else Revert(u, current, None) for u in reverted]
    kept.sort(key=by_contribution(order))
    return SearchResult(initial, current, target, tuple(kept), tuple(log), stopped)
