"""Streaming statistics: run the float model once over the samples, keep only reductions.

``collect_statistics`` exposes the requested intermediate tensors as graph
outputs, builds one onnxruntime session, feeds the samples (batched when the
model allows it) and hands each activation batch to the tensor's reducers at
once. Only the reducers' per-sample results are kept, so memory grows with
``samples x statistic size``, never with ``samples x activation size``.

The work is split by job: ``reducers`` (the reducer protocols), ``inputs``
(checking samples against the model's inputs), ``session`` (the onnxruntime
sessions), ``in_graph`` (reductions run inside onnxruntime after a probe run),
``collector`` (applying reducers, keeping their results), ``batching`` (the
loop over samples). This module validates the request and runs the pass.
"""
from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping, Sequence, Sized

import numpy as np
import onnx

from rewriter.calibrate.batching import BATCH_MEMORY_BYTES, DEFAULT_BATCH_SIZE, BatchingLoop
from rewriter.calibrate.collector import CollectedStats, Collector
from rewriter.calibrate.inputs import SampleChecker, model_inputs
from rewriter.calibrate.messages import did_you_mean
from rewriter.calibrate.progress import Progress
from rewriter.calibrate.reducers import RAW, ExtremaReducer, Reducer, SubsampleReducer
from rewriter.calibrate.session import Sessions
from rewriter.errors import UserError

__all__ = [
    "BATCH_MEMORY_BYTES",
    "DEFAULT_BATCH_SIZE",
    "RAW",
    "CollectedStats",
    "ExtremaReducer",
    "Reducer",
    "SubsampleReducer",
    "collect_statistics",
]


def collect_statistics(
    model: onnx.ModelProto,
    tensors: Sequence[str],
    reducers: Mapping[str, Sequence[Reducer]],
    samples: Iterable[Mapping[str, np.ndarray]],
    *,
    batch_size: int | None = None,
    progress: bool = False,
    intra_op_threads: int | None = None,
    keep_outputs: bool | Collection[int] = False,
    total: int | None = None,
) -> CollectedStats:
    """Run ``model`` over ``samples`` and reduce the requested tensors as they come.

    Args:
        model: the float model (it is not modified).
        tensors: the tensors to observe: node outputs or graph inputs.
        reducers: per tensor, the reducers to apply (a tensor listed here but
            not in ``tensors`` is observed too). Reducers that are
            ``ExtremaReducer`` s may be fed in-graph extrema instead of the tensor.
        samples: dicts of input name -> array with batch axis (``iter_samples``
            of a ``CalibrationData``, or plain dicts, which are checked the same way).
        batch_size: samples per run; None chooses (see ``rewriter.calibrate.batching``), 1
            disables batching.
        progress: draw a progress line on stderr (only if it is a terminal).
        intra_op_threads: onnxruntime intra-op threads; None keeps its default.
        keep_outputs: also return the model outputs of every sample (True), or of the samples at these
            positions in ``samples`` (counted from 0), in order.
        total: the number of samples, for the progress ETA (taken from
            ``len(samples)`` when it has one).

    Returns:
        The reduced statistics; see ``CollectedStats``.

    Raises:
        UserError: a tensor name is not in the graph (or is a constant), a sample
            does not fit the model's inputs or onnxruntime rejects it (naming
            the sample and the input), or there are no samples.
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if intra_op_threads is not None and intra_op_threads < 1:
        raise ValueError(f"intra_op_threads must be at least 1, got {intra_op_threads}")
    fetch = list(dict.fromkeys([*tensors, *reducers]))
    _check_reducers(reducers)
    kinds = _locate(model, fetch)
    if not fetch and keep_outputs is False:
        return _check_only(model, samples)
    keeping = keep_outputs is True or (not isinstance(keep_outputs, bool) and len(keep_outputs) > 0)
    outputs = [o.name for o in model.graph.output] if keeping else []
    positions = None if isinstance(keep_outputs, bool) else frozenset(keep_outputs)
    collector = Collector(fetch, reducers, outputs if keeping else None, positions)
    sessions = Sessions(model, kinds, fetch, outputs, intra_op_threads)
    if total is None and isinstance(samples, Sized):
        total = len(samples)
    start = time.perf_counter()
    try:
        with Progress(total, label="calibrating", enabled=progress) as bar:
            loop = BatchingLoop(sessions, collector, batch_size, bar)
            for i, sample in enumerate(samples):
                loop.feed(sample, i)
            loop.flush()
    finally:
        sessions.close()
    seconds = time.perf_counter() - start
    if collector.num_samples == 0:
        raise UserError("the calibration data has no samples")
    return collector.result(seconds, loop.batch_size_used, sessions.reduced_in_graph)


def _check_only(model: onnx.ModelProto, samples: Iterable[Mapping[str, np.ndarray]]) -> CollectedStats:
    """Nothing to observe (say, every compute node sits in an If body): check and count the samples, but
    running the model would only cost a float pass over the subset and measure nothing."""
    start = time.perf_counter()
    checker = SampleChecker(model_inputs(model))
    count = 0
    for i, sample in enumerate(samples):
        checker.check(sample, getattr(sample, "source", "") or f"sample {i}")
        count += 1
    if count == 0:
        raise UserError("the calibration data has no samples")
    return CollectedStats({}, count, time.perf_counter() - start, {}, {}, 1)


def _check_reducers(reducers: Mapping[str, Sequence[Reducer]]) -> None:
    for tensor, items in reducers.items():
        names = [r.name for r in items]
        if len(set(names)) != len(names):
            raise ValueError(f"tensor {tensor!r}: reducer names must be unique, got {names}")


def _locate(model: onnx.ModelProto, names: list[str]) -> dict[str, str]:
    """'node' or 'input' for each name; UserError for constants and names not in the graph."""
    graph = model.graph
    constants = {t.name for t in graph.initializer}
    produced = {o for node in graph.node for o in node.output if o}
    inputs = {i.name for i in graph.input} - constants
    kinds: dict[str, str] = {}
    unknown = []
    for name in names:
        if name in produced:
            kinds[name] = "node"
        elif name in inputs:
            kinds[name] = "input"
        elif name in constants:
            raise UserError(f"tensor {name!r} is a constant (initializer): weights need no calibration data")
        else:
            unknown.append(name)
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise UserError(f"tensor {shown} is not in the model's main graph (neither a node output nor a "
                        f"graph input){did_you_mean(unknown, sorted(produced | inputs))}")
    return kinds
