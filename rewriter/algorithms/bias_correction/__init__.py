"""FastBiasCorrection and BiasCorrection: make each quantized layer's output mean the float one.

Quantizing the weights (and the input) of a Conv/ConvTranspose/Gemm/MatMul
shifts the mean of its output channels: the rounding errors of a channel's
weights do not average out when the weights are skewed, and the next layers
see a constant offset. Both methods measure that shift per output channel and
fold it into the layer's bias, as the original tool (POT) did.

- ``targets``: which layers, and where their biases are (``bias_targets``);
- ``statistics``: the channel means both methods read from the statistics pass (``bias_reducers``);
- ``fast``: FastBiasCorrection, each layer alone on its mean input (the default);
- ``full``: BiasCorrection, one segment-wise pass of the quantized model;
- ``results``: per-layer decisions and the new bias values.

Layering: numpy and the GraphView only; every onnxruntime execution comes in
as a callable (``rewriter.calibrate.layer_runner.LayerRunner.run``).
"""
from __future__ import annotations

from rewriter.algorithms.bias_correction.fast import FAST_MODES, FAST_THRESHOLD, fast_bias_correction
from rewriter.algorithms.bias_correction.full import SUBSET_RATIO, THRESHOLD, bias_correction, bias_correction_subset
from rewriter.algorithms.bias_correction.results import BiasCorrectionResult, LayerCorrection, effective_bias
from rewriter.algorithms.bias_correction.statistics import REDUCER_PREFIX, ChannelMean, bias_reducers
from rewriter.algorithms.bias_correction.targets import BiasTarget, bias_constants, bias_targets

__all__ = [
    "FAST_MODES",
    "FAST_THRESHOLD",
    "REDUCER_PREFIX",
    "SUBSET_RATIO",
    "THRESHOLD",
    "BiasCorrectionResult",
    "BiasTarget",
    "ChannelMean",
    "LayerCorrection",
    "bias_constants",
    "bias_correction",
    "bias_correction_subset",
    "bias_reducers",
    "bias_targets",
    "effective_bias",
    "fast_bias_correction",
]
