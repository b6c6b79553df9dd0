"""AccuracyAwareQuantization's search on made-up scores: ranking, re-ranking, what a step keeps, and each
stopping condition (the limit met, max_iter_num spent, every candidate tried)."""
from __future__ import annotations

import pytest

from rewriter.errors import UserError
from rewriter.tuning.accuracy_aware import AccuracyAwareSettings, accuracy_aware_search, rank_by_score

# What reverting each node gives back of the metric (0.69 quantized, 0.80 float), independent and additive;
# all of them together do not make up the 0.11 lost.
HARM = {"a": 0.001, "b": 0.05, "c": 0.002, "d": 0.03, "e": 0.0, "f": 0.017}
FLOAT, QUANTIZED = 0.80, 0.69


def metric(units: tuple[str, ...]) -> float:
    return QUANTIZED + sum(HARM[u] for u in units)


def test_ranking_measures_each_candidate_alone_and_puts_the_most_harmful_first() -> None:
    seen = []

    def score(units):
        seen.append(units)
        return None if units[-1] == "e" else metric(units)

    assert rank_by_score(list(HARM), ("x",), lambda u: score(u[1:]) if u[0] == "x" else None) == \
        ["b", "d", "f", "c", "a", "e"]
    assert all(len(u) == 1 for u in seen)  # on top of the reverted ones given, one candidate each


def test_the_most_harmful_go_first_and_the_search_stops_at_the_limit() -> None:
    outcome = accuracy_aware_search(list(HARM), metric, FLOAT, QUANTIZED, AccuracyAwareSettings(maximal_drop=0.03),
                                    rank_score=metric)
    search = outcome.search
    assert (search.stopped, search.met) == ("target met", True)
    assert [m.units for m in search.measurements if m.action == "revert"] == [("b",), ("d",)]
    assert {r.unit for r in search.reverted} == {"b", "d"}
    assert FLOAT - search.final == pytest.approx(0.03)
    # Each kept revert was quantized again alone: its measured contribution is what it gives back.
    assert {r.unit: round(r.contribution, 6) for r in search.reverted} == {"b": 0.05, "d": 0.03}
    assert outcome.ranking_measurements == 6 + 5 + 4  # every candidate, then those left after each kept step


def test_without_a_ranking_measure_the_callers_order_is_kept() -> None:
    search = accuracy_aware_search(["a", "b", "c", "d", "e", "f"], metric, FLOAT, QUANTIZED,
                                   AccuracyAwareSettings(maximal_drop=0.03)).search
    assert search.measurements[0].units == ("a",)
    assert search.met


def test_relative_drop_is_a_share_of_the_baseline() -> None:
    settings = AccuracyAwareSettings(maximal_drop=0.05, drop_type="relative")
    assert settings.allowed_drop(0.8) == pytest.approx(0.04)
    search = accuracy_aware_search(list(HARM), metric, FLOAT, QUANTIZED, settings, rank_score=metric).search
    assert FLOAT - search.final <= 0.04 and {r.unit for r in search.reverted} == {"b", "d"}


def test_max_iter_num_bounds_the_metric_evaluations_and_says_so() -> None:
    calls = []
    search = accuracy_aware_search(list(HARM), lambda u: calls.append(u) or metric(u), FLOAT, QUANTIZED,
                                   AccuracyAwareSettings(maximal_drop=0.0, max_iter_num=3), rank_score=metric).search
    assert len(calls) == 3 and (search.stopped, search.met) == ("budget spent", False)


def test_a_limit_no_revert_can_meet_tries_every_candidate() -> None:
    search = accuracy_aware_search(list(HARM), metric, FLOAT, QUANTIZED, AccuracyAwareSettings(maximal_drop=0.0),
                                   rank_score=metric).search
    assert (search.stopped, search.met) == ("no candidate left", False)
    # "e" gives nothing back: kept while growing (the drop did not increase), quantized again when pruning.
    assert {r.unit for r in search.reverted} == {"a", "b", "c", "d", "f"}


def test_a_step_that_increases_the_drop_is_undone_unless_told_otherwise() -> None:
    def hurting(units):  # reverting "x" alone makes the model worse (its neighbours' ranges shift)
        return metric(tuple(u for u in units if u != "x")) - (0.02 if "x" in units else 0.0)

    order = ["x", "b", "d"]
    kept = accuracy_aware_search(order, hurting, FLOAT, QUANTIZED, AccuracyAwareSettings(maximal_drop=0.03)).search
    assert [m.kept for m in kept.measurements[:1]] == [False] and "x" not in {r.unit for r in kept.reverted}
    both = accuracy_aware_search(order, hurting, FLOAT, QUANTIZED,
                                 AccuracyAwareSettings(maximal_drop=0.03, use_prev_if_drop_increase=False)).search
    assert both.measurements[0].kept is True


def test_steps_undone_one_by_one_are_reverted_together_when_nothing_else_is_left() -> None:
    # A metric on few samples: each node alone reverted loses a sample (its neighbours' ranges shift), all of
    # them reverted together give the float model back. Every single step is undone; the search then tries
    # the undone ones together once, which meets the limit, and pruning keeps only what the limit needs.
    nodes = ["p", "q", "r", "s"]

    def noisy(units: tuple[str, ...]) -> float:
        return FLOAT if set(units) == set(nodes) else QUANTIZED - 0.01 * len(units)

    search = accuracy_aware_search(nodes, noisy, FLOAT, QUANTIZED, AccuracyAwareSettings(maximal_drop=0.001)).search
    assert [m.kept for m in search.measurements[:4]] == [False] * 4
    assert search.measurements[4].units == tuple(nodes) and search.measurements[4].kept
    assert (search.stopped, search.met) == ("target met", True)
    assert {r.unit for r in search.reverted} == set(nodes)  # quantizing any one again loses the limit


def test_bad_settings_are_refused() -> None:
    for bad in (dict(maximal_drop=-0.1), dict(maximal_drop=float("nan")), dict(drop_type="percent"),
                dict(max_iter_num=0)):
        with pytest.raises(UserError):
            AccuracyAwareSettings(**bad)


# "b" and "g" each meet a 0.07 limit alone (0.73 needed); "b" is the most harmful but costs 100 times more.
SWAP_HARM = {**HARM, "g": 0.045}
SWAP_COST = {"a": 1.0, "b": 100.0, "c": 1.0, "d": 50.0, "e": 1.0, "f": 1.0, "g": 1.0}


def swap_metric(units: tuple[str, ...]) -> float:
    return QUANTIZED + sum(SWAP_HARM[u] for u in units)


def test_a_cheaper_revert_that_also_meets_the_limit_takes_the_costly_ones_place() -> None:
    calls = []
    outcome = accuracy_aware_search(list(SWAP_HARM), lambda u: calls.append(u) or swap_metric(u), FLOAT, QUANTIZED,
                                    AccuracyAwareSettings(maximal_drop=0.07), rank_score=swap_metric,
                                    cost=SWAP_COST)
    search = outcome.search
    assert [(m.action, m.units, m.kept) for m in search.measurements] == [
        ("revert", ("b",), True), ("requantize", ("b",), False), ("substitute", ("g", "b"), True)]
    assert calls[-1] == ("g",)  # measured in b's place, not on top of it
    assert search.met and [r.unit for r in search.reverted] == ["g"]
    assert search.final == pytest.approx(QUANTIZED + 0.045)
    # The model without either was measured when b was quantized again alone: g's contribution is exact.
    assert search.reverted[0].contribution == pytest.approx(0.045)


def test_without_costs_or_a_cheaper_candidate_that_meets_the_limit_the_revert_stays() -> None:
    settings = AccuracyAwareSettings(maximal_drop=0.07)
    plain = accuracy_aware_search(list(SWAP_HARM), swap_metric, FLOAT, QUANTIZED, settings, rank_score=swap_metric)
    assert [r.unit for r in plain.search.reverted] == ["b"]
    assert all(m.action != "substitute" for m in plain.search.measurements)
    # g costs as much as b: the cheaper ones (d, f, c) are tried, none meets the limit, b stays.
    costly_g = {**SWAP_COST, "g": 100.0}
    search = accuracy_aware_search(list(SWAP_HARM), swap_metric, FLOAT, QUANTIZED, settings, rank_score=swap_metric,
                                   cost=costly_g).search
    substitutes = [m for m in search.measurements if m.action == "substitute"]
    assert [m.units[0] for m in substitutes] == ["d", "f", "c"] and not any(m.kept for m in substitutes)
    assert [r.unit for r in search.reverted] == ["b"] and search.final == pytest.approx(QUANTIZED + 0.05)


def test_substitutes_stay_within_max_iter_num_and_never_undo_an_unmet_limit() -> None:
    calls = []
    search = accuracy_aware_search(list(SWAP_HARM), lambda u: calls.append(u) or swap_metric(u), FLOAT, QUANTIZED,
                                   AccuracyAwareSettings(maximal_drop=0.07, max_iter_num=2), rank_score=swap_metric,
                                   cost=SWAP_COST).search
    assert len(calls) == 2 and [r.unit for r in search.reverted] == ["b"]
    unmet = accuracy_aware_search(list(SWAP_HARM), swap_metric, 0.9, QUANTIZED,
                                  AccuracyAwareSettings(maximal_drop=0.0), rank_score=swap_metric,
                                  cost=SWAP_COST).search
    assert not unmet.met and all(m.action != "substitute" for m in unmet.measurements)
