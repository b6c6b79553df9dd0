"""FastBiasCorrection: each layer alone, run once on its mean input.

``fast_bias_correction`` (the default, ``use_fast_bias: true``)
    For each layer: the per-channel mean of its float input and of its float
    output (after the bias) over the calibration set, from the one statistics
    pass MinMax makes anyway (``bias_reducers`` adds the reductions). Then the
    layer alone, bias removed, is run on ONE constant tensor ``m`` whose
    channel c is the float input mean of c. Accepted if
    ``max |(new - old) / old| < threshold`` (2.0). Two estimates (``mode``):

    * ``"weights"`` (default): ``new_bias = old + layer(m) - layer_q(m)``,
      ``layer_q`` with fake-quantized weights. For a linear layer this is
      ``(W - W_q) . E[x]``, the mean shift the weight rounding causes,
      exactly, and the approximations of the constant input (padding
      borders, positions that differ from the channel mean) cancel between
      the two runs. The input FakeQuantize is not applied: rounding one
      constant to the grid says nothing about what rounding the data does on
      average (nearly nothing, for round-to-nearest).
    * ``"original"``: POT's formula, input and weights fake-quantized,
      ``new_bias = float output mean (data) - layer_q(fq(m))``. It mixes the
      data's output mean with a one-tensor estimate, so their difference
      (large on small images, where the padding borders are a big part of the
      output) lands in the bias: on the benchmark's 8x8-digit CNN it cost
      8 dB of output SQNR and 1.4% accuracy, where ``"weights"`` is neutral
      (docs/benchmarks.md).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from rewriter.algorithms.bias_correction.results import BiasCorrectionResult, CorrectionLog, effective_bias
from rewriter.algorithms.bias_correction.statistics import channel_mean_stat
from rewriter.algorithms.bias_correction.targets import BiasTarget
from rewriter.algorithms.layer_runs import NodeRunner, fake_quantize_range, range_of, weight_of
from rewriter.algorithms.types import TensorRange

__all__ = ["FAST_MODES", "FAST_THRESHOLD", "fast_bias_correction"]

#: The original tool's default threshold.
FAST_THRESHOLD = 2.0
#: The estimates (module docstring): ours by default, and the original tool's formula.
FAST_MODES = ("weights", "original")


def fast_bias_correction(targets: Sequence[BiasTarget], stats: Mapping[str, Mapping[str, np.ndarray]],
                         ranges: Mapping[str, TensorRange], weights: Mapping[str, np.ndarray],
                         shapes: Mapping[str, Sequence[int]], run_layer: NodeRunner,
                         threshold: float = FAST_THRESHOLD, mode: str = "weights") -> BiasCorrectionResult:
    """FastBiasCorrection (module docstring): one run of each layer alone on its mean input.

    Args:
        targets: from ``bias_targets``.
        stats: the statistics pass's results (``CollectedStats.stats``), with
            ``bias_reducers(targets)`` merged in.
        ranges: the FakeQuantize ranges of the plan (weights and activations).
        weights: float values of the targets' weights and biases
            (``bias_constants(targets)``).
        shapes: an observed shape of each target's input (``CollectedStats.observed_shapes``);
            the constant input gets it with batch 1.
        run_layer: runs nodes with feeds and initializer overrides (``LayerRunner.run``).
        threshold: accept a layer when ``max |(new - old) / old|`` is below it.
        mode: "weights" (the default) or "original" (POT's formula); see the module docstring.

    Returns:
        The corrected biases and a per-layer report.
    """
    if mode not in FAST_MODES:
        raise ValueError(f"FastBiasCorrection mode must be one of {', '.join(FAST_MODES)}, not {mode!r}")
    out = CorrectionLog("FastBiasCorrection", threshold, estimate=mode)
    rows = 0
    for t in targets:
        if t.problem:
            out.skip(t, t.problem)
            continue
        shape = shapes.get(t.input)
        if shape is None:
            out.skip(t, f"no observed shape for the input {t.input!r}")
            continue
        input_mean = channel_mean_stat(stats, t.input, t.reduce_axis)
        output_stat = channel_mean_stat(stats, t.output, t.reduce_axis)
        rows = max(rows, len(output_stat))
        float_mean = output_stat.mean(axis=0)
        blob = _mean_blob(shape, input_mean.mean(axis=0), t.reduce_axis)
        weight = weight_of(weights, t.weight)
        old, stored = effective_bias(t, weights)
        if mode == "original" and t.input_range is not None:
            q_blob = fake_quantize_range(blob, range_of(ranges, t.input_range))
        else:
            q_blob = blob
        q_weight = fake_quantize_range(weight, range_of(ranges, t.weight))
        zero_bias = {} if not (t.bias_in_node and t.bias) else {t.bias: np.zeros_like(stored)}
        q_out = run_layer([t.node], {t.input: q_blob}, {t.weight: q_weight, **zero_bias},
                          outputs=[t.node_output])[t.node_output]
        f_out = run_layer([t.node], {t.input: blob}, {t.weight: weight, **zero_bias},
                          outputs=[t.node_output])[t.node_output]
        q_mean = _channel_means(q_out, t.channel_axis)
        f_mean = _channel_means(f_out, t.channel_axis)
        if mode == "original":
            new = float_mean - q_mean  # the bias that makes the quantized output mean the float one
        else:
            new = old + f_mean - q_mean
        error = float(np.max(np.abs(float_mean - old - f_mean)))
        out.decide(t, old, new - old, float_mean, stored, error)
    return out.result(rows)


def _mean_blob(shape: Sequence[int], means: np.ndarray, axis: int) -> np.ndarray:
    """A float32 tensor of ``shape`` (batch 1) whose channel c (``axis`` from the end) is ``means[c]``."""
    dims = [int(d) for d in shape]
    if len(dims) >= 2:
        dims[0] = 1
    position = len(dims) + axis
    if position < 0 or dims[position] != means.shape[0]:
        raise ValueError(f"input shape {tuple(shape)} has no axis {axis} of {means.shape[0]} channels")
    view = [1] * len(dims)
    view[position] = means.shape[0]
    return np.broadcast_to(means.reshape(view), dims).astype(np.float32)


def _channel_means(y: np.ndarray, axis: int) -> np.ndarray:
    """Mean of each channel over every other axis of ``y``."""
    moved = np.moveaxis(np.asarray(y), y.ndim + axis if axis < 0 else axis, 0)
    return moved.reshape(moved.shape[0], -1).mean(axis=1, dtype=np.float64)
