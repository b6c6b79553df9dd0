"""Layer-wise tuning: per layer, the weight range and bias that minimise the float-vs-quantized output MSE.

The goal: fine-tune biases, weights and FakeQuantize scales so that each
layer's quantized output is as close (mean squared error) to its float output
as it can be, layer by layer. The original tool (POT) did it with torch and
gradient descent. Here it is an exact, gradient-free search in
numpy, because for the layers concerned the problem separates:

* Layers: the Conv/ConvTranspose/Gemm/MatMul nodes with a constant weight the
  plan quantizes (``bias_correction.bias_targets``, the layers bias correction
  works on).
* Data: the first few calibration samples (``layerwise_subset``, 16 by
  default). Each layer gets its FLOAT input from the float model, quantized by
  its input FakeQuantize when the plan has one, and is compared with the
  float model's output of the same layer (bias included). Layers are tuned
  independently: no error is inherited from the layers before (as in POT).
* Weight range: output channel c reads only weight channel c, so one run of
  the layer per grid multiplier ``m`` (``GRID``: 1.0 down to 0.5, 12 points),
  with every channel's range computed by MinMax's own range function on
  ``m * weight`` (``minmax.weight_ranges``: same estimator, zero-point and
  symmetric formulas), gives the error of every channel under every
  multiplier at once. Each independently quantized range element (a channel
  of a per-channel range) then takes its best multiplier; a per-tensor range
  takes the one multiplier best for the whole layer.
* Bias: with per-channel sums of ``d = float - quantized`` and of ``d**2``,
  the best bias shift of a channel is ``mean(d)`` and leaves
  ``sum(d**2) - n * mean(d)**2``; so the multiplier and the bias shift are
  chosen jointly, in closed form, from the same runs. A layer without a bias
  gets one where bias correction would add one (``BiasTarget.create``); a
  layer whose bias cannot change (``BiasTarget.problem``) tunes its weight
  range alone.
* Against fitting noise: a channel's bias moves only when its mean error
  outweighs the error of estimating it (``_best``), and a layer with fewer
  than ``MIN_VALUES_PER_CHANNEL`` output values per channel (a Gemm sees one
  per sample) gets one multiplier for the whole weight.
* Acceptance: the layer changes only when its expected MSE goes down; the
  report gives the MSE on the tuning samples before and after for every layer.

What is not tuned: the weights' values themselves (rounding stays
round-to-nearest; AdaRound-style rounding would need an optimizer), the input
activation FakeQuantize ranges (they are shared with the other readers of the
tensor and with the previous layer's output), and layers whose weight is
read by more than one node (their range is kept; the bias is still tuned).

Cost: ``len(GRID)`` runs of each layer alone per tuning sample, through
``LayerRunner`` (one cached onnxruntime session per layer), plus one float
run per sample. Memory: the tuning samples' layer inputs and outputs, held at
most ``chunk_bytes`` at a time.

Layering: numpy and the GraphView only; every onnxruntime execution comes in
as a callable (``rewriter.calibrate.layer_runner.LayerRunner.run``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from rewriter.algorithms.bias_correction import BiasTarget, effective_bias
from rewriter.algorithms.layer_runs import NodeRunner, ancestors, fake_quantize_range, range_of, weight_of
from rewriter.algorithms.minmax import RangeOptions, weight_ranges
from rewriter.algorithms.types import TensorRange
from rewriter.ir.graph import GraphView
from rewriter.plan import QuantPlan

__all__ = [
    "DEFAULT_SAMPLES",
    "GRID",
    "LayerTuning",
    "LayerwiseResult",
    "float_layer_values",
    "layerwise_subset",
    "layerwise_tuning",
]

#: Range multipliers tried, 1.0 (the MinMax range) first so that ties keep it.
GRID: tuple[float, ...] = tuple(float(m) for m in np.round(np.linspace(1.0, 0.5, 12), 6))
#: Tuning samples when the user does not say (POT's num_samples_for_tuning); the search is exact per
#: channel, so a few samples already give every channel thousands of output values to fit two numbers.
DEFAULT_SAMPLES = 16
#: Output values per channel below which a multiplier per channel would fit noise (a Gemm sees one value
#: per sample): such layers get one multiplier for the whole weight.
MIN_VALUES_PER_CHANNEL = 256
#: Float layer inputs and outputs held at once (bytes); the samples are processed in chunks below it.
CHUNK_BYTES = 256 << 20


def layerwise_subset(stat_subset_size: int, requested: int | None = None) -> int:
    """Samples the tuning uses: ``requested`` (num_samples_for_tuning) or 16, at most the statistics subset."""
    return max(1, min(stat_subset_size, requested or DEFAULT_SAMPLES))


# ----------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class LayerTuning:
    """What happened to one layer.

    ``multipliers`` holds, per output channel, the factor its weight range was
    computed with (1.0 = unchanged); ``bias_shift`` the change of its bias in
    the op's terms (Gemm: ``beta * C``). MSEs are means over every output
    value of the tuning samples, before (MinMax range, current bias) and after.
    """

    node: str
    op_type: str
    accepted: bool
    reason: str
    channels: int = 0
    multipliers: tuple[float, ...] = ()
    bias: str | None = None
    bias_created: bool = False
    bias_shift: tuple[float, ...] = ()
    mse_before: float | None = None
    mse_after: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """For the report JSON: summaries instead of per-channel lists."""
        out: dict[str, Any] = {"node": self.node, "op_type": self.op_type, "accepted": self.accepted,
                               "reason": self.reason, "channels": self.channels,
                               "mse_before": self.mse_before, "mse_after": self.mse_after}
        if self.multipliers:
            m = np.asarray(self.multipliers)
            out["multiplier"] = {"min": float(m.min()), "mean": round(float(m.mean()), 6), "max": float(m.max()),
                                 "changed_channels": int(np.sum(m != 1.0))}
        if self.bias_shift:
            s = np.abs(np.asarray(self.bias_shift))
            out.update(bias=self.bias, bias_created=self.bias_created,
                       bias_shift_max_abs=float(s.max()), bias_shift_mean_abs=float(s.mean()))
        return out


@dataclass(frozen=True, eq=False)
class LayerwiseResult:
    """New values to apply: ranges replace the plan's weight ranges; biases go through
    ``rewriter.ir.edit.apply_weight_updates(model, updates, new_biases)``.

    Attributes:
        ranges: weight tensor -> its tuned range (only the tuned ones).
        updates: existing bias initializer -> new value (same shape and dtype).
        new_biases: node -> (initializer name, bias vector) for layers that had none.
        layers: one entry per target, in graph order.
        grid: the multipliers tried.
        samples: tuning samples.
    """

    ranges: Mapping[str, TensorRange]
    updates: Mapping[str, np.ndarray]
    new_biases: Mapping[str, tuple[str, np.ndarray]]
    layers: tuple[LayerTuning, ...]
    grid: tuple[float, ...]
    samples: int

    def report(self) -> dict[str, Any]:
        """For the report JSON."""
        return {"method": "per-channel grid search of the weight range with a closed-form bias",
                "grid": list(self.grid), "samples": self.samples,
                "tuned": sum(1 for layer in self.layers if layer.accepted),
                "layers": [layer.to_dict() for layer in self.layers]}


# ----------------------------------------------------------------------------------------------
# Float reference


def float_layer_values(graph: GraphView, targets: Sequence[BiasTarget], samples: Iterable[Mapping[str, np.ndarray]],
                       run_nodes: NodeRunner) -> Iterator[dict[str, np.ndarray]]:
    """Per sample, the float model's value of every target's input and output.

    Args:
        graph: the view of the FLOAT model ``run_nodes`` runs (node names and tensor
            names as in the model the targets come from).
        targets: the layers to tune.
        samples: input dicts.
        run_nodes: ``LayerRunner(float_model).run``.
    """
    wanted = list(dict.fromkeys(name for t in targets for name in (t.input, t.output)))
    produced = [name for name in wanted if name in graph.producer]
    nodes = [graph.nodes[i].name for i in sorted(ancestors(graph, produced))]
    for sample in samples:
        values = dict(run_nodes(nodes, sample, outputs=produced)) if produced else {}
        for name in wanted:
            if name not in values:  # a graph input read directly by a layer
                try:
                    values[name] = np.asarray(sample[name])
                except KeyError:
                    raise ValueError(f"layer-wise tuning: tensor {name!r} is neither computed nor in the "
                                     "sample") from None
        yield values


# ----------------------------------------------------------------------------------------------
# The pass


@dataclass
class _Layer:
    """One target during the search: its candidate weights and the error sums per (multiplier, channel)."""

    target: BiasTarget
    nodes: list[str]
    grid: tuple[float, ...]
    candidates: list[TensorRange]
    owner: np.ndarray  # output channel -> index of the multiplier group it belongs to
    per_element: bool  # groups are the range's elements (else one group: the whole range)
    reason: str = ""  # why the layer is not tuned at all
    note: str = ""  # what is tuned partially
    sum_d: np.ndarray = field(init=False)
    sum_d2: np.ndarray = field(init=False)
    count: int = 0

    def __post_init__(self) -> None:
        self.sum_d = np.zeros((len(self.grid), self.target.channels))
        self.sum_d2 = np.zeros((len(self.grid), self.target.channels))


def layerwise_tuning(graph: GraphView, plan: QuantPlan, targets: Sequence[BiasTarget],
                     ranges: Mapping[str, TensorRange], weights: Mapping[str, np.ndarray],
                     float_values: Iterable[Mapping[str, np.ndarray]], run_layer: NodeRunner,
                     range_options: RangeOptions = RangeOptions(), grid: Sequence[float] = GRID,
                     chunk_bytes: int = CHUNK_BYTES) -> LayerwiseResult:
    """Tune the weight ranges and biases of ``targets`` (see the module docstring). Reads only.

    Args:
        graph: the view of the model ``run_layer`` runs (biases as they are now).
        plan: the quantization plan (weight configs, for the range function).
        targets: ``bias_targets(graph, plan)``.
        ranges: the FakeQuantize ranges of every planned tensor.
        weights: float values of the targets' weights and existing biases.
        float_values: per tuning sample, the float input and output of every target
            (``float_layer_values``).
        run_layer: runs nodes with feeds and initializer overrides (``LayerRunner.run``).
        range_options: the RangeOptions MinMax used (the same estimator scales the weights).
        grid: range multipliers; the first must be 1.0 (the current range).

    Returns:
        New ranges and biases and a per-layer report; nothing passed in is modified.
    """
    grid = tuple(float(m) for m in grid)
    if not grid or grid[0] != 1.0:
        raise ValueError("the multiplier grid must start with 1.0 (the current range)")
    layers = [_prepare(graph, plan, t, ranges, weights, range_options, grid) for t in targets]
    active = [layer for layer in layers if not layer.reason]
    samples = 0
    for chunk in _chunks(float_values, chunk_bytes):
        samples += len(chunk)
        for layer in active:
            _accumulate(layer, chunk, ranges, weights, run_layer)
    return _decide(layers, weights, grid, samples)


def _prepare(graph: GraphView, plan: QuantPlan, t: BiasTarget, ranges: Mapping[str, TensorRange],
             weights: Mapping[str, np.ndarray], options: RangeOptions, grid: tuple[float, ...]) -> _Layer:
    """Candidate weight ranges (one per multiplier) and how output channels map onto range elements."""
    nodes = [t.node] if t.output == t.node_output else [t.node, graph.nodes[graph.producer[t.output][0]].name]
    current = range_of(ranges, t.weight)
    weight = weight_of(weights, t.weight)
    readers = len(graph.consumers_of(t.weight))
    if readers > 1:
        # Another node reads the same weight: its range must suit that node too, so keep it.
        return _Layer(t, nodes, (1.0,), [current], np.zeros(t.channels, np.int64), False,
                      note=f"bias only: the weight is read by {readers} nodes, its range is kept")
    point = plan.point(t.weight)
    if point is None:
        raise ValueError(f"layer-wise tuning: the plan has no FakeQuantize on the weight {t.weight!r}")
    single = replace(plan, points=(point,))
    candidates = [current] + [weight_ranges(single, {t.weight: weight * m}, options)[t.weight] for m in grid[1:]]
    owner, per_element = _owners(t, current, weight.ndim)
    return _Layer(t, nodes, grid, candidates, owner, per_element)


def _owners(t: BiasTarget, rng: TensorRange, weight_ndim: int) -> tuple[np.ndarray, bool]:
    """Output channel -> the range element quantizing its weights, when each element serves its own channels.

    Otherwise (a per-tensor range, or one along an input axis) every channel is
    in group 0 and a multiplier applies to the whole range.
    """
    channels = np.arange(t.channels)
    size = int(np.size(rng.input_low))
    if np.ndim(rng.input_low) == 0 or rng.axis is None:
        return np.zeros(t.channels, np.int64), False
    if rng.axis % weight_ndim == t.weight_axis:
        if size == t.channels:
            return channels, True
        if t.op_type == "ConvTranspose" and t.channels % size == 0:
            return channels % size, True  # groups: output channel g * size + j reads weight column j
    return np.zeros(t.channels, np.int64), False


def _chunks(values: Iterable[Mapping[str, np.ndarray]], limit: int) -> Iterator[list[Mapping[str, np.ndarray]]]:
    """Consecutive samples, as many at a time as fit in ``limit`` bytes (at least one)."""
    chunk: list[Mapping[str, np.ndarray]] = []
    size = 0
    for sample in values:
        nbytes = sum(np.asarray(v).nbytes for v in sample.values())
        if chunk and size + nbytes > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(sample)
        size += nbytes
    if chunk:
        yield chunk


def _accumulate(layer: _Layer, chunk: Sequence[Mapping[str, np.ndarray]], ranges: Mapping[str, TensorRange],
                weights: Mapping[str, np.ndarray], run_layer: NodeRunner) -> None:
    """Add the chunk's per-channel sums of (float - quantized) and its square, for every multiplier."""
    t = layer.target
    inputs = [np.asarray(s[t.input]) for s in chunk]
    if t.input_range is not None:
        rng = range_of(ranges, t.input_range)
        inputs = [fake_quantize_range(x, rng) for x in inputs]
    references = [np.asarray(s[t.output], np.float64) for s in chunk]
    weight = weight_of(weights, t.weight)
    for k, candidate in enumerate(layer.candidates):
        quantized_weight = fake_quantize_range(weight, candidate)
        for x, reference in zip(inputs, references):
            out = run_layer(layer.nodes, {t.input: x}, {t.weight: quantized_weight}, outputs=[t.output])[t.output]
            d = _by_channel(reference - out, t.channel_axis)
            layer.sum_d[k] += d.sum(axis=1)
            layer.sum_d2[k] += np.square(d).sum(axis=1)
            if k == 0:
                layer.count += d.shape[1]


def _by_channel(y: np.ndarray, axis: int) -> np.ndarray:
    moved = np.moveaxis(y, axis, 0)
    return moved.reshape(moved.shape[0], -1)


def _decide(layers: Sequence[_Layer], weights: Mapping[str, np.ndarray], grid: tuple[float, ...],
            samples: int) -> LayerwiseResult:
    new_ranges: dict[str, TensorRange] = {}
    updates: dict[str, np.ndarray] = {}
    new_biases: dict[str, tuple[str, np.ndarray]] = {}
    report = []
    for layer in layers:
        t = layer.target
        if layer.reason or layer.count == 0:
            report.append(LayerTuning(t.node, t.op_type, False, layer.reason or "no output values", t.channels))
            continue
        best = _best(layer)
        multipliers = tuple(layer.grid[k] for k in best.choice[best.owner])
        if not best.expected < best.before:
            report.append(LayerTuning(t.node, t.op_type, False, "no improvement", t.channels, multipliers,
                                      mse_before=best.before, mse_after=best.before))
            continue
        if np.any(best.choice != 0):
            new_ranges[t.weight] = _chosen_range(layer, best)
        shifted = bool(np.any(best.shift != 0))
        if shifted:
            _new_bias(t, best.shift, weights, updates, new_biases)
        report.append(LayerTuning(t.node, t.op_type, True, layer.note or "tuned", t.channels, multipliers,
                                  t.bias or t.new_bias_name, t.create and shifted,
                                  tuple(float(v) for v in best.shift) if shifted else (), best.before, best.after))
    return LayerwiseResult(new_ranges, updates, new_biases, tuple(report), grid, samples)


@dataclass(frozen=True)
class _Best:
    choice: np.ndarray  # per group: index of the chosen multiplier
    owner: np.ndarray  # output channel -> group
    per_element: bool
    shift: np.ndarray  # per output channel (0 where the bias stays)
    before: float  # layer MSE on the tuning samples, as it is
    after: float  # ... with the choice
    expected: float  # ... with the choice, on new samples (the bias's estimation error added)


def _best(layer: _Layer) -> _Best:
    """The multipliers and bias shifts with the lowest expected error on new data.

    With the shift ``s = mean(d)`` a channel's squared error on the tuning
    samples is ``sum(d^2) - sum(d)^2 / n``; on new data a shift estimated from
    n values adds about ``1/n`` of the remaining error, so a channel shifts
    only when its mean error outweighs that. Multiplier and shift are chosen
    together. Channels with few output values (a Gemm sees one per sample)
    share one multiplier, which many values determine.
    """
    n, channels = layer.count, layer.target.channels
    owner, per_element = layer.owner, layer.per_element
    if n < MIN_VALUES_PER_CHANNEL:
        owner, per_element = np.zeros(channels, np.int64), False
    kept = layer.sum_d2
    shifted = (layer.sum_d2 - np.square(layer.sum_d) / n) * (1.0 + 1.0 / n)
    expected = np.minimum(kept, shifted) if not layer.target.problem else kept
    membership = np.zeros((channels, int(owner.max()) + 1))
    membership[np.arange(channels), owner] = 1.0
    choice = np.argmin(expected @ membership, axis=0)  # first minimum: ties keep the larger multiplier
    rows, columns = choice[owner], np.arange(channels)
    shift_on = (shifted[rows, columns] < kept[rows, columns]) & (not layer.target.problem)
    mean_d = layer.sum_d[rows, columns] / n
    shift = np.where(shift_on, mean_d, 0.0)
    after = kept[rows, columns] - np.where(shift_on, n * np.square(mean_d), 0.0)
    total = n * channels
    return _Best(choice, owner, per_element, shift, float(kept[0].sum() / total),
                 float(np.maximum(after, 0.0).sum() / total), float(expected[rows, columns].sum() / total))


def _chosen_range(layer: _Layer, best: _Best) -> TensorRange:
    """The weight range whose every element comes from the candidate its group chose."""
    choice = best.choice
    if not best.per_element:
        return layer.candidates[int(choice[0])]
    elements = np.arange(choice.shape[0])
    low = np.stack([c.input_low for c in layer.candidates])[choice, elements]
    high = np.stack([c.input_high for c in layer.candidates])[choice, elements]
    base = layer.candidates[0]
    return replace(base, input_low=low.astype(np.float32), input_high=high.astype(np.float32))


def _new_bias(t: BiasTarget, shift: np.ndarray, weights: Mapping[str, np.ndarray],
              updates: dict[str, np.ndarray], new_biases: dict[str, tuple[str, np.ndarray]]) -> None:
    old, stored = effective_bias(t, weights)
    value = ((old + shift) / t.bias_scale).astype(np.float32)
    if t.create:
        assert t.new_bias_name is not None
        new_biases[t.node] = (t.new_bias_name, value)
    else:
        assert t.bias is not None and stored is not None
        updates[t.bias] = value.reshape(stored.shape).astype(stored.dtype)
