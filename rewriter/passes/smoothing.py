"""Activation smoothing as a pass: its own statistics pass, rescaled weights and inserted Muls."""
from __future__ import annotations

from rewriter.algorithms.smoothing import smooth, smoothing_groups, smoothing_reducers
from rewriter.ir.edit import apply_weight_updates, insert_scales
from rewriter.passes.base import InsertedNode, Pass, PassContext, PassResult
from rewriter.sources import pass_source

__all__ = ["SmoothingPass"]


class SmoothingPass(Pass):
    """SmoothQuant-style smoothing of quantized MatMul/Gemm inputs (``rewriter.algorithms.smoothing``)."""

    name = "smoothing"
    title = "ActivationSmoothing"
    phase = "float"

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha

    def call(self, context: PassContext) -> PassResult:
        groups = smoothing_groups(context.graph, context.plan)
        if not groups:
            return PassResult(context.model, {"alpha": self.alpha, "smoothed": [],
                                              "note": "no quantized MatMul/Gemm with a per-tensor activation input"})
        collected = context.collect(smoothing_reducers(groups), "statistics: smoothing")
        weights = context.initializers(sorted({r.weight for g in groups for r in g.readers}))
        result = smooth(groups, collected.stats, weights, self.alpha)
        model = insert_scales(apply_weight_updates(context.model, result.updates), result.insertions,
                              pass_source(self.title))
        inserted = tuple(InsertedNode(name, "Mul", self.title) for name in result.inserted_nodes)
        return PassResult(model, result.report(), inserted=inserted)
