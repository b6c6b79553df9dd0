"""BiasCorrection: the shift of each layer measured on the quantized model's own activations.

``bias_correction`` (``use_fast_bias: false``)
    On the first ``max(int(0.2 * stat_subset_size), 1)`` samples, in
    topological order, the shift of each layer is measured on the real
    activations of the quantized model, upstream corrections applied, so the
    error a layer inherits from the layers before it is corrected too:
    ``shift = float output mean - quantized output mean`` (means over those
    samples and all non-channel positions); ``bias += shift`` if
    ``max |shift / bias| < threshold`` (1000).

How BiasCorrection runs (and how it differs from the original tool)
    POT rebuilt, for every biased layer, the sub-graph from the previous biased
    layers' inputs to this layer and re-ran it on stored activations, so the
    work grew with layers x sub-graph size. Here the quantized model is
    simulated ONCE over the subset, in topological order, cut into segments
    that each end at a corrected layer's output (or before a node that reads a
    FakeQuantize of a tensor produced in the same segment):

    * every segment runs in onnxruntime through ``run_nodes`` (the
      ``LayerRunner``) on all its samples, with the planned FakeQuantizes
      applied exactly as the plan says: fake-quantized weights, and the
      readers listed by each activation FakeQuantize given
      ``fq_math.fake_quantize`` of the tensor (the other readers keep float);
    * when a segment ends at a layer's output, the layer's shift is computed
      from that output and, when accepted, added to the stored output of every
      sample before anything downstream runs. A bias is a per-channel constant
      added to the output, so adding the shift to the stored output is
      exactly what re-running the layer with the new bias would give: later
      layers see the corrected earlier ones, as in the original tool, without
      running anything twice;
    * the float reference (the output means over the same samples) is read
      from the statistics of the MinMax pass (first rows), so there is no
      float pass at all.

    The cost is one pass of the quantized model (unfused, segment by segment)
    over the subset, whatever the number of layers; memory holds the live
    activations of the subset at one cut of the graph. It is exact, not an
    approximation of POT's sub-graph re-execution: both compute the quantized
    output of a layer from the quantized upstream with the corrections made so
    far; ours simulates the whole upstream where POT cut it at the previous
    biased layers' inputs and fed float activations there. Only the nodes
    that some corrected layer depends on are run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from rewriter.algorithms.bias_correction.results import BiasCorrectionResult, CorrectionLog, effective_bias
from rewriter.algorithms.bias_correction.statistics import channel_mean_stat, mean_reducer
from rewriter.algorithms.bias_correction.targets import BiasTarget, fresh_name
from rewriter.algorithms.layer_runs import NodeRunner, ancestors, fake_quantize_range, range_of, weight_of
from rewriter.algorithms.types import TensorRange
from rewriter.ir.graph import GraphView, NodeInfo
from rewriter.plan import QuantPlan

__all__ = ["SUBSET_RATIO", "THRESHOLD", "bias_correction", "bias_correction_subset"]

THRESHOLD = 1000.0

#: BiasCorrection runs on this fraction of the statistics subset (at least one sample).
SUBSET_RATIO = 0.2


def bias_correction_subset(stat_subset_size: int) -> int:
    """Samples BiasCorrection uses: ``max(int(0.2 * stat_subset_size), 1)``, as the original tool."""
    return max(int(SUBSET_RATIO * stat_subset_size), 1)


@dataclass
class _Segment:
    nodes: list[str]
    reads: list[str]  # env tensors fed directly
    holes: list[str]  # alias names fed with a FakeQuantize of their source
    aliases: dict[tuple[str, int], str]
    outputs: list[str]
    target: BiasTarget | None = None


def bias_correction(graph: GraphView, plan: QuantPlan, targets: Sequence[BiasTarget],
                    stats: Mapping[str, Mapping[str, np.ndarray]], ranges: Mapping[str, TensorRange],
                    weights: Mapping[str, np.ndarray], samples: Iterable[Mapping[str, np.ndarray]],
                    run_nodes: NodeRunner, threshold: float = THRESHOLD) -> BiasCorrectionResult:
    """BiasCorrection (see the module docstring): one segment-wise pass of the quantized model.

    Args:
        graph: the view of the model ``run_nodes`` runs.
        plan: the quantization plan (which readers see which FakeQuantize).
        targets: from ``bias_targets``.
        stats: the statistics pass's results with ``bias_reducers(targets)``; their
            first rows must come from ``samples`` (the float reference).
        ranges: the FakeQuantize ranges of every planned tensor.
        weights: float values of every planned weight and of the targets' biases.
        samples: the first ``bias_correction_subset(stat_subset_size)`` samples of the
            statistics pass, as input dicts.
        run_nodes: runs nodes with feeds, outputs and port aliases (``LayerRunner.run``).
        threshold: accept a layer when ``max |shift / bias|`` is below it.
    """
    out = CorrectionLog("BiasCorrection", threshold)
    samples = [dict(s) for s in samples]
    if not samples:
        raise ValueError("BiasCorrection needs at least one sample")
    active = [t for t in targets if not t.problem]
    producer_index = {t.node: graph.producer[t.output][0] for t in active}
    active.sort(key=lambda t: producer_index[t.node])
    segments, hole_source = _segments(graph, plan, active)
    weight_holes = _weight_holes(plan, ranges, weights, segments, hole_source)
    last_use = _last_use(segments, hole_source)
    envs: list[dict[str, np.ndarray]] = [dict(s) for s in samples]
    run_batches = [_run_batch(s) for s in samples]
    for k, segment in enumerate(segments):
        for env in envs:
            feeds = {name: _env(env, name) for name in segment.reads}
            for hole in segment.holes:
                if hole in weight_holes:
                    feeds[hole] = weight_holes[hole]
                else:
                    if hole not in env:
                        source = hole_source[hole]
                        env[hole] = fake_quantize_range(_env(env, source), range_of(ranges, source))
                    feeds[hole] = env[hole]
            env.update(run_nodes(segment.nodes, feeds, None, outputs=segment.outputs, aliases=segment.aliases))
        t = segment.target
        if t is not None:
            _correct(out, t, stats, weights, envs, run_batches)
        for env in envs:
            for name in [n for n in env if last_use.get(n, len(segments)) <= k]:
                del env[name]
    for t in targets:
        if t.problem:
            out.skip(t, t.problem)
    return out.result(len(samples))


def _env(env: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    try:
        return env[name]
    except KeyError:
        raise ValueError(f"BiasCorrection: tensor {name!r} is needed but the sample does not give it "
                         "(a graph input missing from the sample?)") from None


def _correct(out: CorrectionLog, t: BiasTarget, stats: Mapping[str, Mapping[str, np.ndarray]],
             weights: Mapping[str, np.ndarray], envs: list[dict[str, np.ndarray]],
             run_batches: list[int | None]) -> None:
    """Measure and decide the shift of ``t`` from the quantized outputs in ``envs``; correct them if accepted."""
    reducer = mean_reducer(t.reduce_axis)
    rows = []
    for env, batch in zip(envs, run_batches):
        y = env[t.output]
        rows.append(reducer(y if y.ndim >= 1 and batch is not None and y.shape[0] == batch else y[None]))
    quantized = np.concatenate(rows, axis=0)
    reference = channel_mean_stat(stats, t.output, t.reduce_axis)
    if len(reference) < len(quantized):
        raise ValueError(f"BiasCorrection: the statistics of {t.output!r} have {len(reference)} rows, fewer than "
                         f"the {len(quantized)} of its samples; pass the first samples of the statistics pass")
    float_mean = reference[:len(quantized)].mean(axis=0)
    shift = float_mean - quantized.mean(axis=0)
    old, stored = effective_bias(t, weights)
    if out.decide(t, old, shift, float_mean, stored):
        for env in envs:
            y = env[t.output]
            view = [1] * y.ndim
            view[t.channel_axis] = t.channels
            env[t.output] = (y + shift.reshape(view)).astype(y.dtype)


def _run_batch(sample: Mapping[str, np.ndarray]) -> int | None:
    sizes = {np.asarray(v).shape[0] for v in sample.values() if np.ndim(v) >= 1}
    return sizes.pop() if len(sizes) == 1 else None


def _hole_name(graph: GraphView, tensor: str) -> str:
    return fresh_name(graph, f"{tensor}::fq")


def _segments(graph: GraphView, plan: QuantPlan,
              active: Sequence[BiasTarget]) -> tuple[list[_Segment], dict[str, str]]:
    """Cut the nodes the targets depend on into runs (see the module docstring)."""
    needed = ancestors(graph, [t.output for t in active])
    # Which input ports read a FakeQuantize, and under which alias name.
    port_alias: dict[tuple[str, int], str] = {}
    hole_source: dict[str, str] = {}
    for point in plan.points:
        readers = ([(n.name, port) for n, port in graph.consumers_of(point.tensor)] if point.at_output
                   else [(c.node, c.port) for c in point.consumers])
        readers = [r for r in readers if r[0] in graph.by_name and graph.by_name[r[0]] in needed]
        if not readers:
            continue
        hole = _hole_name(graph, point.tensor)
        hole_source[hole] = point.tensor
        for reader in readers:
            port_alias[reader] = hole
    ends = {graph.producer[t.output][0]: t for t in active}
    constants = {name for name, info in graph.tensors.items() if info.is_constant}
    activation_holes = {h for h, src in hole_source.items() if src not in constants}
    segments: list[_Segment] = []
    current: list[NodeInfo] = []

    def close(target: BiasTarget | None) -> None:
        if current:
            segments.append(_segment(current, port_alias, constants, target))
            current.clear()

    produced: set[str] = set()
    for index in sorted(needed):
        node = graph.nodes[index]
        holes = [port_alias.get((node.name, port)) for port in range(len(node.inputs))]
        if any(h in activation_holes and hole_source[h] in produced for h in holes if h is not None):
            close(None)
            produced.clear()
        current.append(node)
        produced.update(o for o in node.outputs if o)
        if index in ends:
            close(ends[index])
            produced.clear()
    close(None)
    _segment_outputs(graph, segments, hole_source, {t.output for t in active})
    return segments, hole_source


def _segment(nodes: list[NodeInfo], port_alias: Mapping[tuple[str, int], str], constants: set[str],
             target: BiasTarget | None) -> _Segment:
    produced: set[str] = set()
    reads: list[str] = []
    holes: list[str] = []
    aliases: dict[tuple[str, int], str] = {}
    for node in nodes:
        for port, name in enumerate(node.inputs):
            if not name:
                continue
            alias = port_alias.get((node.name, port))
            if alias is not None:
                aliases[(node.name, port)] = alias
                holes.append(alias)
            elif name not in produced and name not in constants:
                reads.append(name)
        produced.update(o for o in node.outputs if o)
    return _Segment([n.name for n in nodes], list(dict.fromkeys(reads)), list(dict.fromkeys(holes)), aliases, [],
                     target)


def _segment_outputs(graph: GraphView, segments: list[_Segment], hole_source: Mapping[str, str],
                     target_outputs: set[str]) -> None:
    """Each segment returns what later segments read (directly or through a FakeQuantize) and target outputs."""
    later: set[str] = set()
    for segment in reversed(segments):
        produced = [o for name in segment.nodes for o in graph.nodes[graph.by_name[name]].outputs if o]
        segment.outputs = [o for o in produced if o in later or o in target_outputs]
        later.update(segment.reads)
        later.update(hole_source[h] for h in segment.holes)


def _last_use(segments: list[_Segment], hole_source: Mapping[str, str]) -> dict[str, int]:
    """Index of the last segment that reads each stored name (tensor or FakeQuantize alias)."""
    last: dict[str, int] = {}
    for k, segment in enumerate(segments):
        for name in segment.reads:
            last[name] = k
        for hole in segment.holes:
            last[hole] = k
            last[hole_source[hole]] = max(last.get(hole_source[hole], k), k)
    for k, segment in enumerate(segments):
        for name in segment.outputs:
            last.setdefault(name, k)  # produced for a target only: drop once measured
    return last


def _weight_holes(plan: QuantPlan, ranges: Mapping[str, TensorRange], weights: Mapping[str, np.ndarray],
                  segments: list[_Segment], hole_source: Mapping[str, str]) -> dict[str, np.ndarray]:
    """Fake-quantized values of the planned weights the segments read."""
    roles = {p.tensor: p.role for p in plan.points}
    used = {h for s in segments for h in s.holes}
    values = {}
    for hole in sorted(used):
        source = hole_source[hole]
        if roles.get(source) == "weight":
            values[hole] = fake_quantize_range(weight_of(weights, source), range_of(ranges, source))
    return values
