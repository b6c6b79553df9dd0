"""Applying the reducers to each run's tensors, and what a statistics pass produced.

``Collector`` keeps only the reducers' per-sample results, classifies tensors
by batch axis from the probe run, and decides after it which tensors the lean
session can reduce in the graph (``lean_layout``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from rewriter.calibrate.in_graph import IN_GRAPH_DTYPES, InGraph, Layout, Subsample
from rewriter.calibrate.inputs import Sample
from rewriter.calibrate.reducers import RAW, Reducer, reducer_max_samples, reducer_service
from rewriter.errors import UserError
from rewriter.ir.names import FreshNames

__all__ = ["CollectedStats", "Collector"]


@dataclass(frozen=True, eq=False)
class CollectedStats:
    """What one pass over the calibration samples produced.

    Attributes:
        stats: ``stats[tensor][reducer_name]``: the reducer's results over all
            samples, concatenated along axis 0 in sample order: one row per
            sample (per example of a sample with batch > 1 for tensors with a
            batch axis); the first ``max_samples`` rows only for a reducer
            that has one.
        num_samples: the number of samples (dicts) run.
        seconds: wall time of the loop (reading samples, inference, reductions).
        observed_shapes: each tensor's last shape seen in a run that copied it
            out of onnxruntime, for one sample (batch axis as the sample had
            it); a fallback where shape inference failed. Tensors reduced in
            the graph are copied out in the first runs only.
        batch_axis: 0 for tensors whose axis 0 is the batch axis, None for
            tensors reduced whole (with a new leading axis of size 1): a
            reducer's channel axis is then one more than the tensor's.
        batch_size: samples per run actually used (1: no batching).
        outputs: with ``keep_outputs``, the model outputs of every sample.
        reduced_in_graph: the tensors whose min/max reductions ran inside
            onnxruntime after the first runs (see ``rewriter.calibrate.in_graph``).
    """

    stats: dict[str, dict[str, np.ndarray]]
    num_samples: int
    seconds: float
    observed_shapes: dict[str, tuple[int, ...]]
    batch_axis: dict[str, int | None]
    batch_size: int
    outputs: list[dict[str, np.ndarray]] | None = field(default=None)
    reduced_in_graph: tuple[str, ...] = ()

    def sample_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each observed tensor's shape for one example, without the batch axis (whole for a tensor without one).

        What a per-sample statistic reduces: its size is the number of values per sample.
        """
        return {name: tuple(shape[1:]) if self.batch_axis.get(name) == 0 else tuple(shape)
                for name, shape in self.observed_shapes.items()}


class Collector:
    """Applies the reducers to each run's tensors (or in-graph extrema) and keeps only their results."""

    def __init__(self, names: list[str], reducers: Mapping[str, Sequence[Reducer]],
                 output_names: list[str] | None, output_positions: frozenset[int] | None = None) -> None:
        self.names = names
        self.reducers = {name: tuple(reducers.get(name, ())) for name in names}
        self.parts: dict[str, dict[str, list[np.ndarray]]] = {
            name: {r.name: [] for r in self.reducers[name]} for name in names}
        self.limits = {(name, r.name): reducer_max_samples(r) for name in names for r in self.reducers[name]}
        self.rows = {key: 0 for key in self.limits}
        self.output_names = output_names
        self.outputs: list[dict[str, np.ndarray]] | None = [] if output_names is not None else None
        self.output_positions = output_positions  # None: every sample's outputs
        self.batch_axis: dict[str, int | None] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, np.dtype] = {}
        self.probe_bytes: dict[str, int] = {}
        self.num_samples = 0
        self.bytes_per_run = 0

    @property
    def probed(self) -> bool:
        """Whether the first run has classified the tensors."""
        return self.num_samples > 0

    def wants(self, name: str, reducer: Reducer) -> bool:
        """Whether ``reducer`` of tensor ``name`` still takes rows (it may have a ``max_samples``)."""
        limit = self.limits[name, reducer.name]
        return limit is None or self.rows[name, reducer.name] < limit

    def wants_raw_rows(self) -> bool:
        """Whether a reducer with ``max_samples`` still wants rows (they come from raw runs)."""
        return any(limit is not None and self.rows[key] < limit for key, limit in self.limits.items())

    def add(self, result: dict[str, np.ndarray], samples: list[Sample], batched: bool, layout: Layout) -> None:
        """Reduce one run's ``result`` (of ``samples``, concatenated when ``batched``) as ``layout`` exposed it."""
        first = _run_batch(samples[0])
        run_batch = None if first is None else first * len(samples)
        if not self.probed:
            self._probe(result, run_batch)
        # A batched run's tensors without batch axis were checked equal for every sample: count them per sample.
        copies = len(samples) if batched else 1
        in_graph = {g.tensor: g for g in layout.in_graph}
        for name in self.names:
            if name in in_graph:
                self._from_graph(name, in_graph[name], result, run_batch, samples[0].source)
            elif name in result:
                x = result[name]
                self._reduce(name, self._rows(name, x, run_batch, samples[0].source), copies)
                per_run = batched and self.batch_axis[name] == 0
                self.shapes[name] = (x.shape[0] // len(samples), *x.shape[1:]) if per_run else tuple(x.shape)
        if self.outputs is not None:
            self._keep_outputs(result, len(samples))
        self.num_samples += len(samples)

    def _probe(self, result: dict[str, np.ndarray], run_batch: int | None) -> None:
        """Classify tensors from the first (single-sample, raw) run and measure its size."""
        for name, x in result.items():
            self.batch_axis[name] = 0 if run_batch is not None and x.ndim >= 1 and x.shape[0] == run_batch else None
            self.dtypes[name] = x.dtype
            self.probe_bytes[name] = x.nbytes
        self.bytes_per_run = sum(self.probe_bytes.values())

    def _rows(self, name: str, x: np.ndarray, run_batch: int | None, source: str) -> np.ndarray:
        if self.batch_axis[name] is None:
            return x[None]
        if x.ndim == 0 or x.shape[0] != run_batch:
            raise UserError(f"{source}: tensor {name!r} has shape {tuple(x.shape)}, but its first axis was the "
                            f"batch axis for the first sample (batch {run_batch} here); calibrate with samples "
                            "of one batch size")
        return x

    def _reduce(self, name: str, rows: np.ndarray, copies: int) -> None:
        for reducer in self.reducers[name]:
            if not self.wants(name, reducer):
                continue
            y = np.asarray(reducer(rows))
            if y.ndim == 0 or y.shape[0] != rows.shape[0]:
                raise ValueError(f"reducer {reducer.name!r} on tensor {name!r} returned shape {y.shape} for a "
                                 f"batch of {rows.shape[0]}: it must keep axis 0 (one row per sample)")
            if self.batch_axis[name] is None and copies > 1:
                y = np.repeat(y, copies, axis=0)
            self._keep(name, reducer, y)

    def _from_graph(self, name: str, g: InGraph, result: dict[str, np.ndarray], run_batch: int | None,
                    source: str) -> None:
        rows = result[g.outputs[0]].shape[:1]
        if rows != (run_batch,):
            raise UserError(f"{source}: tensor {name!r} has a first axis of {rows}, but it was the batch axis "
                            f"for the first sample (batch {run_batch} here); calibrate with samples of one "
                            "batch size")
        per_tensor = None
        for reducer in self.reducers[name]:
            if not self.wants(name, reducer):
                continue
            kind, axis, count = reducer_service(reducer)
            if kind == "subsample":
                y = reducer.from_subsample(result[g.subsample(axis, count)])  # type: ignore[attr-defined]
            elif axis == g.axis:
                y = reducer.from_extrema(result[g.min], result[g.max])  # type: ignore[attr-defined]
            else:  # per tensor from per channel: the min of the channel minima, exactly
                if per_tensor is None:
                    per_tensor = (result[g.min].min(axis=1), result[g.max].max(axis=1))
                y = reducer.from_extrema(*per_tensor)  # type: ignore[attr-defined]
            y = np.asarray(y)
            if y.ndim == 0 or y.shape[0] != rows[0]:
                raise ValueError(f"reducer {reducer.name!r} on tensor {name!r} returned shape {y.shape} for "
                                 f"{rows[0]} samples: it must keep axis 0 (one row per sample)")
            self._keep(name, reducer, y)

    def _keep(self, name: str, reducer: Reducer, y: np.ndarray) -> None:
        key = (name, reducer.name)
        limit = self.limits[key]
        if limit is not None:
            y = y[: limit - self.rows[key]]
        self.rows[key] += y.shape[0]
        self.parts[name][reducer.name].append(y)

    def lean_layout(self, raw: Layout, fresh: FreshNames, opset: int) -> Layout | None:
        """What the runs expose once every reducer with ``max_samples`` has its rows (after the probe run).

        None when that is what ``raw`` exposes already.
        """
        kept: list[str] = []
        in_graph: list[InGraph] = []
        for name in raw.raw:
            wanting = [r for r in self.reducers[name] if self.limits[name, r.name] is None]
            if not wanting:
                continue  # nothing left to learn from it
            services = {reducer_service(r) for r in wanting}
            if not self._fits_in_graph(name, services, opset):
                kept.append(name)
                continue
            stem = f"rewriter_calib/{name}"
            extrema = [axis for kind, axis, _ in services if kind == "extrema"]
            axis = 1 if 1 in extrema else None
            subsamples = tuple(Subsample(a, c, fresh(f"{stem}/subsample_{c}" + ("_c" if a else "")))
                               for kind, a, c in sorted(services, key=str) if kind == "subsample")
            if extrema:
                in_graph.append(InGraph(name, True, axis, fresh(f"{stem}/min"), fresh(f"{stem}/max"),
                                         fresh(f"{stem}/sum"), subsamples))
            else:
                in_graph.append(InGraph(name, False, None, subsamples=subsamples))
        if not in_graph and tuple(kept) == raw.raw:
            return None
        return Layout(tuple(kept), raw.from_feed, tuple(in_graph), raw.outputs)

    def _fits_in_graph(self, name: str, services: set[tuple[str, int | None, int]], opset: int) -> bool:
        """Whether the lean session can serve every reducer still wanting ``name`` from the graph."""
        shape = self.shapes.get(name, ())
        if any(kind == RAW for kind, _, _ in services) or self.batch_axis.get(name) != 0:
            return False
        if self.dtypes.get(name) not in IN_GRAPH_DTYPES or int(np.prod(shape[1:])) == 0:
            return False  # empty: numpy's error, not onnxruntime's value
        if any(kind == "subsample" for kind, _, _ in services) and opset < 10:
            return False  # Slice takes its steps as an input from opset 10
        # (N, C) has nothing to reduce per channel: the reducers decide what that means, on the tensor.
        return len(shape) >= 3 or all(axis is None for _, axis, _ in services)

    def lean_bytes_per_run(self, layout: Layout) -> int:
        """The bytes one single-sample run of ``layout`` hands out, from the probe run's sizes."""
        exposed = sum(self.probe_bytes.get(n, 0) for n in (*layout.raw, *layout.outputs, *layout.from_feed))
        small = 0
        for g in layout.in_graph:
            channels = self.shapes[g.tensor][1] if len(self.shapes[g.tensor]) >= 3 else 1
            small += 3 * 8 * (channels if g.axis == 1 else 1) if g.extrema else 0
            small += sum(8 * s.count * (channels if s.axis == 1 else 1) for s in g.subsamples)
        return exposed + small

    def _keep_outputs(self, result: dict[str, np.ndarray], n: int) -> None:
        assert self.outputs is not None and self.output_names is not None
        wanted = [i for i in range(n) if self.output_positions is None or self.num_samples + i in self.output_positions]
        if n == 1:
            if wanted:
                self.outputs.append({name: result[name] for name in self.output_names})
            return
        for i in wanted:  # an output without batch axis was checked to be the same for every sample
            self.outputs.append({name: result[name][i:i + 1].copy() if self.batch_axis[name] == 0 else result[name]
                                 for name in self.output_names})

    def result(self, seconds: float, batch_size: int, in_graph: tuple[str, ...]) -> CollectedStats:
        """The statistics collected so far, as ``collect_statistics`` returns them."""
        stats = {name: {r: np.concatenate(parts, axis=0) for r, parts in by_reducer.items()}
                 for name, by_reducer in self.parts.items()}
        axes = {name: self.batch_axis[name] for name in self.names}
        return CollectedStats(stats, self.num_samples, seconds, dict(self.shapes), axes, batch_size, self.outputs,
                              in_graph)


def _run_batch(sample: Sample) -> int | None:
    """The batch size of a sample: the common first-axis size of its inputs (None if they disagree)."""
    sizes = {arr.shape[0] for arr in sample.values() if arr.ndim >= 1}
    return sizes.pop() if len(sizes) == 1 else None
