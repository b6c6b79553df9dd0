"""ActivationChannelAlignment as a pass: its own statistics pass, then new weights (float results unchanged)."""
from __future__ import annotations

from rewriter.algorithms.channel_alignment import align_channels, alignment_pairs, alignment_reducers
from rewriter.ir.edit import apply_weight_updates
from rewriter.passes.base import Pass, PassContext, PassResult

__all__ = ["ChannelAlignmentPass"]


class ChannelAlignmentPass(Pass):
    """Even out the channel ranges between two linear layers (``rewriter.algorithms.channel_alignment``)."""

    name = "channel_alignment"
    title = "ActivationChannelAlignment"
    phase = "float"

    def call(self, context: PassContext) -> PassResult:
        pairs = alignment_pairs(context.graph, context.plan)
        if not pairs:
            return PassResult(context.model, {"aligned": [], "skipped": [], "note": "no Conv/MatMul pair qualifies"})
        collected = context.collect(alignment_reducers(pairs), "statistics: channel alignment")
        names = sorted({n for p in pairs for n in (p.w_in, p.b_in, p.w_out, p.b_out) if n})
        result = align_channels(pairs, collected.stats, context.initializers(names))
        return PassResult(apply_weight_updates(context.model, result.updates), result.report())
