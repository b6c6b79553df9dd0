"""The fidelity figures against an independent numpy computation, and the revert search's logic."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rewriter.tuning.fidelity import compare_outputs
from rewriter.tuning.revert_search import revert_search
from rewriter.tuning.self_check import held_out_ids


def _runs(rng: np.random.Generator, shape: tuple[int, ...], n: int, noise: float) -> tuple[list, list]:
    f = [{"y": rng.standard_normal(shape).astype(np.float32)} for _ in range(n)]
    q = [{"y": (r["y"] + noise * rng.standard_normal(shape)).astype(np.float32)} for r in f]
    return f, q


def test_sqnr_agreement_and_cosine_match_a_brute_force_computation() -> None:
    rng = np.random.default_rng(1)
    f, q = _runs(rng, (2, 10), 5, 0.3)
    got = compare_outputs(["y"], f, q).outputs[0]
    fa = np.concatenate([r["y"] for r in f]).astype(np.float64)
    qa = np.concatenate([r["y"] for r in q]).astype(np.float64)
    sqnr = 10 * math.log10(sum(float(v) ** 2 for v in fa.ravel()) / sum(float(a - b) ** 2 for a, b in
                                                                       zip(fa.ravel(), qa.ravel())))
    agree = sum(int(list(a).index(max(a)) == list(b).index(max(b))) for a, b in zip(fa, qa)) / len(fa)
    cos = np.mean([a @ b / (np.sqrt(a @ a) * np.sqrt(b @ b)) for a, b in zip(fa, qa)])
    assert got.sqnr_db == pytest.approx(sqnr, rel=1e-9)
    assert got.top1_agreement == pytest.approx(agree)
    assert 0 < agree < 1  # the noise flips some rows: the check can fail
    assert got.cosine == pytest.approx(cos, rel=1e-9)


def test_sequences_of_rows_match_a_brute_force_computation_zero_rows_included() -> None:
    # Summed sample by sample; the figures are those of the joined samples, row by row of the last axis.
    rng = np.random.default_rng(2)
    f, q = _runs(rng, (1, 6, 7), 5, 0.2)
    f[1]["y"][0, 2] = 0.0
    q[1]["y"][0, 2] = 0.0  # zero in both: cosine 1
    f[2]["y"][0, 4] = 0.0  # zero in the float row only: cosine 0
    f[3]["y"][0, 1] = 0.0
    q[3]["y"][0, 1] = 1e-27  # a background of 1e-27 against exact zeros: zero in both, cosine 1
    got = compare_outputs(["y"], f, q).outputs[0]
    rows_f = [[float(v) for v in row] for r in f for row in r["y"].reshape(-1, 7)]
    rows_q = [[float(v) for v in row] for r in q for row in r["y"].reshape(-1, 7)]
    noise = sum((a - b) ** 2 for fr, qr in zip(rows_f, rows_q) for a, b in zip(fr, qr))
    power = sum(a * a for fr in rows_f for a in fr)

    floor = 1e-6 * max(math.sqrt(sum(x * x for x in row)) for row in rows_f)  # 120 dB below the largest row

    def cosine(a: list[float], b: list[float]) -> float:
        na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(x * x for x in b))
        if na <= floor or nb <= floor:
            return 1.0 if na <= floor and nb <= floor else 0.0
        return sum(x * y for x, y in zip(a, b)) / (na * nb)
    assert got.sqnr_db == pytest.approx(10 * math.log10(power / noise), rel=1e-9)
    assert got.cosine == pytest.approx(sum(cosine(a, b) for a, b in zip(rows_f, rows_q)) / len(rows_f), rel=1e-9)
    assert got.top1_agreement is None and got.shape == (1, 6, 7)


def test_which_measures_apply_by_shape() -> None:
    rng = np.random.default_rng(2)
    seq = compare_outputs(["y"], *_runs(rng, (1, 4, 6), 3, 0.1)).outputs[0]
    assert seq.top1_agreement is None and seq.cosine is not None  # rank 3: rows of the last axis, no top-1
    scalar = compare_outputs(["y"], *_runs(rng, (1, 1), 3, 0.1)).outputs[0]
    assert scalar.top1_agreement is None and scalar.cosine is None  # one value per row
    unit = rng.standard_normal((1, 8))
    unit /= np.linalg.norm(unit)
    embedding = compare_outputs(["y"], [{"y": unit}], [{"y": unit * 1.01}]).outputs[0]
    assert embedding.top1_agreement is None and embedding.cosine == pytest.approx(1.0)  # normalized rows
    exact = compare_outputs(["y"], [{"y": np.ones((1, 3))}], [{"y": np.ones((1, 3))}]).outputs[0]
    assert exact.sqnr_db == math.inf and exact.top1_agreement == 1.0 and exact.cosine == pytest.approx(1.0)


def test_held_out_ids_avoid_the_subset_and_depend_only_on_the_seed() -> None:
    used = [0, 2, 4, 6, 8]
    a = held_out_ids(20, used, 4, seed=3)
    assert a.held_out and len(a.ids) == 4 and not set(a.ids) & set(used)
    assert a == held_out_ids(20, used, 4, seed=3)
    assert held_out_ids(7, used, 4, seed=3).ids == (1, 3, 5)  # fewer left than asked: all of them
    everything = held_out_ids(5, [0, 1, 2, 3, 4], 2, seed=0)
    assert not everything.held_out and len(everything.ids) == 2  # none left: calibration samples, said so


def test_revert_search_finds_units_that_only_hurt_together_and_keeps_the_rest_quantized() -> None:
    # The score is 0 while both "a" and "b" are quantized; reverting either alone restores it. "c" costs 1.
    def score(reverted: tuple[str, ...]) -> float:
        base = 30.0 if {"a", "b"} & set(reverted) else 0.0
        return base - (0.0 if "c" in reverted else 1.0) - 0.1 * len(reverted)

    result = revert_search(["a", "b", "c", "d"], score, initial=score(()), target=20.0, budget=12, batch=4)
    assert result.met and result.stopped == "target met"
    assert [r.unit for r in result.reverted] == ["a"]  # pruning put b, c and d back: the target still holds
    assert result.reverted[0].contribution == pytest.approx(score(("a",)) - score(()))
    assert len(result.measurements) <= 12


def test_revert_search_respects_its_budget_and_reports_untried_reverts() -> None:
    calls = []

    def score(reverted: tuple[str, ...]) -> float:
        calls.append(reverted)
        return 10.0 * len(reverted)

    result = revert_search([f"n{i}" for i in range(10)], score, initial=0.0, target=100.0, budget=3, batch=2)
    assert len(calls) == 3 and not result.met and result.stopped == "budget spent"
    assert [r.unit for r in result.reverted] == ["n0", "n1", "n2", "n3", "n4", "n5"]
    assert all(r.contribution is None for r in result.reverted)


def test_samples_whose_shapes_differ_are_left_out_and_counted() -> None:
    f = [{"boxes": np.ones((3, 4)), "score": np.array([[1.0, 2.0]])}, {"boxes": np.ones((2, 4)),
                                                                     "score": np.array([[2.0, 1.0]])}]
    q = [{"boxes": np.ones((3, 4)) * 1.1, "score": np.array([[1.0, 2.0]])}, {"boxes": np.ones((5, 4)),
                                                                           "score": np.array([[1.0, 3.0]])}]
    boxes, score = compare_outputs(["boxes", "score"], f, q).outputs
    assert boxes.mismatched == 1 and boxes.sqnr_db == pytest.approx(10 * math.log10(1 / 0.01))
    assert score.mismatched == 0 and score.top1_agreement == 0.5
    none = compare_outputs(["boxes"], f[1:], q[1:])
    assert math.isnan(none.outputs[0].sqnr_db) and none.worst_sqnr_db == math.inf


def test_revert_search_stops_at_its_revert_limit_and_prunes_what_did_not_help() -> None:
    # Every unit adds the same small error: no few of them explain the damage.
    def score(reverted: tuple[str, ...]) -> float:
        return float(len(reverted))

    units = [f"n{i}" for i in range(20)]
    result = revert_search(units, score, initial=0.0, target=15.0, budget=20, batch=4, max_units=5)
    assert result.stopped == "revert limit" and not result.met
    assert len(result.reverted) == 5 and result.final == 5.0
    assert [m.units for m in result.measurements[:2]] == [("n0", "n1", "n2", "n3"), ("n4",)]
