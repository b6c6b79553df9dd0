"""ActivationChannelAlignment: even out the channel ranges of an activation between two linear layers.

A per-tensor FakeQuantize on an activation whose channels span very different
ranges (one channel in [-100, 100], another in [-0.01, 0.01]) rounds the small
channels to nothing. When a linear layer with constant weights produces the
activation and another one consumes it, with nothing in between but a bias,
each channel can be shifted and scaled in the producer and the inverse applied
in the consumer: the float function is unchanged, the activation's channels
share one range (the original tool's "ActivationChannelAlignment").

Three pure functions, nothing mutated (``pairs`` finds the pairs, ``rescale``
measures and rescales them):

1. ``alignment_pairs(graph, plan)``: the (producer, consumer) pairs where the
   rescale is exact. ``alignment_rejections`` says, for every other candidate
   producer, why not;
2. ``alignment_reducers(pairs)``: per-sample, per-channel quantiles
   (1e-4 and 1 - 1e-4) of each pair's activation, for the statistics collector;
3. ``align_channels(pairs, stats, weights)``: the new initializer values.

The math (aggregation by median over samples, per channel c)::

    amin, amax = median of the per-sample quantiles;  amean = (amax + amin) / 2
    s  = (amax - amin) / median(positive ranges), 1 where the range is <= 0, clipped to [0.01, 100]
    if both biases exist:  b_in -= amean;  b_out += (W_out summed over its spatial axes) . amean
    W_in, b_in /= s per output channel;    W_out *= s per input channel

so the consumer reads ``(x - amean) / s`` and computes what it computed before.
``amean`` is the middle of the channel's range, so that after the shift every
channel's range is centred on zero (what a symmetric FakeQuantize wants).
Where each sample holds one value per channel ((N, C) activations, 1x1 maps)
the per-sample ranges are all zero; there the quantiles are taken over the
samples instead (see ``align_channels``), a deviation from POT, which then
aligned nothing.
Exactness needs every output position of the consumer to see whole input
windows (the shift ``amean`` would otherwise be missing where it reads padding)
and nothing non-linear between the two: hence the consumer Conv has group 1,
zero pads, stride 1, dilation 1 (POT's rule; stride and dilation would not
break exactness, but we keep POT's selection), and the producer output (after
its bias) has exactly one reader, the consumer.

Pairs (all weights and biases constant initializers read by that node only):

=====================  =====================  ==========================================
producer               consumer               notes
=====================  =====================  ==========================================
Conv [+ bias input 2]  Conv                   channel axis 1; or a bias Add of a
or Conv -> Add(const)                         per-channel constant instead of input 2
MatMul(x, W 2-D)       MatMul(x, W 2-D)       channel axis -1; biases are following
[-> Add(const)]        [-> Add(const)]        Adds of per-channel constants
Gemm [C]               Gemm (transA 0) [C]    channel axis -1 (columns of B' ); C per
                                              channel; alpha and beta are honoured
=====================  =====================  ==========================================

MatMul/Gemm consumers go beyond POT (which aligned into Convolution only); the
rescale is as exact there: the consumer's K axis is the activation's last
axis, the channel axis. A Conv never pairs with a MatMul/Gemm: their channel
axes differ (1 against -1).

With a plan, a pair also needs: neither node kept float (ignored scope, rules),
a per-tensor activation FakeQuantize read by the consumer (aligning an
activation that is not quantized, or quantized per channel, gains nothing),
and no per-tensor FakeQuantize on either weight (the rescale would move the
spread of ranges into that weight's single range).

Chains (Conv1 -> Conv2 -> Conv3) are two pairs sharing Conv2's tensors; each
pair's update is applied to the values left by the pairs before it, and every
step keeps the function exact, so the order does not matter.

Statistics are taken on the float model before any other pass; ranges
(MinMax) must be measured again on the aligned model: the activations change.
"""
from __future__ import annotations

from rewriter.algorithms.channel_alignment.pairs import AlignmentPair, alignment_pairs, alignment_rejections
from rewriter.algorithms.channel_alignment.rescale import (ALIGN_MAX, ALIGN_MIN, ALIGN_OUTLIER_PROB, AlignedPair,
                                                           AlignmentResult, ChannelQuantile, align_channels,
                                                           alignment_reducers, channel_scales)

__all__ = ["ALIGN_MAX", "ALIGN_MIN", "ALIGN_OUTLIER_PROB", "AlignedPair", "AlignmentPair", "AlignmentResult",
           "ChannelQuantile", "align_channels", "alignment_pairs", "alignment_reducers", "alignment_rejections",
           "channel_scales"]
