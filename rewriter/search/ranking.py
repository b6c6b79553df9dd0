"""The searches' first order of candidates: each quantized node's share of the output error, measured in one run.

Reverting each candidate alone and measuring the output (``rewriter.tuning.accuracy_aware.rank_by_score``)
costs a re-plan, an emission and a check run per candidate: 153 runs on a MobileNetV2 of 65 quantized
nodes. The fidelity guard's measured damage (``rewriter.tuning.damage``) orders the same candidates from one
run of the float and the quantized model with their intermediate tensors exposed. The accuracy-aware
search takes that order and still re-ranks, by reverting and measuring, the few candidates at its head
after each kept revert, where one node's error may have masked another's; TPE takes its search space
from the head of it.
"""
from __future__ import annotations

from typing import Sequence

from rewriter.pipeline import SearchHooks
from rewriter.tuning.damage import DAMAGE_SAMPLES, DamageRanking, measure_damage

__all__ = ["damage_order"]


def damage_order(hooks: SearchHooks, candidates: Sequence[str]) -> tuple[list[str], DamageRanking | None]:
    """``candidates`` (most suspect first by the per-tensor SQNR) ordered by measured damage, and the
    measurement; the given order and None when there is nothing to measure with (no self-check samples, or
    output for a runtime other than onnxruntime, whose tensors are not exposed under their ONNX names)."""
    check = hooks.check
    if check is None or not check.samples or check.runtime != "onnxruntime" or hooks.float_model is None:
        return list(candidates), None
    ranking = measure_damage(hooks.float_model, hooks.emitted.model, hooks.plan, check.samples[:DAMAGE_SAMPLES],
                             candidates, hooks.errors)
    return ranking.order(candidates), ranking
