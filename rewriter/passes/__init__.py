"""The numeric passes between calibration and emission, behind one contract (``base.Pass``).

``enabled_passes(options)`` lists the passes the options turn on, in the
order they run: activation smoothing and channel alignment on the float
model, then bias correction and layer-wise tuning after the ranges.
"""
from __future__ import annotations

from rewriter.passes.base import InsertedNode, Pass, PassContext, PassContractError, PassOptions, PassResult, Phase
from rewriter.passes.bias_correction import BiasCorrectionPass
from rewriter.passes.channel_alignment import ChannelAlignmentPass
from rewriter.passes.layerwise import LayerwiseTuningPass
from rewriter.passes.smoothing import SmoothingPass

__all__ = ["BiasCorrectionPass", "ChannelAlignmentPass", "InsertedNode", "LayerwiseTuningPass", "Pass",
           "PassContext", "PassContractError", "PassOptions", "PassResult", "Phase", "SmoothingPass",
           "enabled_passes"]


def enabled_passes(options: PassOptions) -> tuple[Pass, ...]:
    """The passes ``options`` turn on, in running order."""
    passes: list[Pass] = []
    if options.smoothing is not None:
        passes.append(SmoothingPass(options.smoothing))
    if options.channel_alignment:
        passes.append(ChannelAlignmentPass())
    if options.bias_correction in ("fast", "full"):  # None (not given) and "none" run no correction
        passes.append(BiasCorrectionPass(str(options.bias_correction), options.bias_threshold))
    if options.layerwise_tuning:
        passes.append(LayerwiseTuningPass())
    return tuple(passes)
