"""Streaming statistics: run the float model once over the samples, keep only reductions.

``collect_statistics`` exposes the requested intermediate tensors as graph
outputs, builds one onnxruntime session, feeds the samples (batched when the
model allows it) and hands each activation batch to the tensor's reducers at
once. Only the reducers' per-sample results are kept, so memory grows with
``samples x statistic size``, never with ``samples x activation size``.

A reducer is any object with a ``name`` and a ``__call__`` mapping a batch of
activations ``(N, ...)`` (axis 0: the samples, the other axes the tensor's
own after its batch axis; a channel axis is where it is in the model) to
per-sample statistics ``(N, ...)``::

    @dataclass(frozen=True)
    class AbsMax:
        name: str = "abs_max"
        def __call__(self, x):
            return np.abs(x.reshape(len(x), -1)).max(axis=1)

Tensors whose axis 0 is not the batch axis (``batch_axis[t] is None`` in the
result: scalars, shape vectors, sequence-first layouts) are given to the
reducers whole, with a new leading axis of size 1: one row per sample.

Session choices:
- ``ORT_ENABLE_ALL`` graph optimizations. onnxruntime never fuses away a
  node whose output is a graph output, so every requested tensor keeps its
  float meaning; unexposed subgraphs (Conv+Relu, GELU, LayerNorm) run as fused
  kernels, which round within float32 noise of the unfused graph. Measured on
  ResNet-50 and MiniLM (40 samples): 9.8 s / 2.3 s with ALL against 11.6 s /
  2.6 s with BASIC; the calibration pass is the floor of quantization time.
- one inter-op thread, sequential execution; ``intra_op_threads`` fixes the
  intra-op thread count for runs that must reproduce bit for bit.
- exposed outputs are added by name only: onnxruntime infers each output's
  type from its producer (measured on 1.32), so no shape inference is needed
  and a stale ``value_info`` type cannot break the session.

Batching: when every model input has a dynamic first axis and consecutive
samples have batch 1 and equal shapes, up to ``batch_size`` samples are
concatenated into one run. The default is 8, lowered so that one run's exposed
tensors stay under 256 MiB. Measured on a shared 2-core CPU over six small CNN
and MLP/transformer-like models with every tensor exposed and a quantile
reducer: batch 8 took 1.0x to 3.2x less time per sample than batch 1 (1.5x to
2x typical) and was within 30% of the best of 1, 2, 4, ..., 32; larger batches
mostly grow memory. The first batched run is checked against runs of its first
and last samples alone (shapes and values): a model that mixes samples along
its batch axis, or hard-codes batch 1 inside, falls back to one sample per
run, as does any batched run that onnxruntime rejects. Tensors without a batch axis
that the check finds equal for every sample (they depend on shapes only, like
a position embedding) do not prevent batching: their per-run statistic is
counted once per sample, as single runs would give it.
"""
from __future__ import annotations

import difflib
import os
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import onnx
import onnxruntime as ort

from rewriter.calibrate.data import InputSpec, Sample, SampleChecker, model_inputs
from rewriter.calibrate.progress import Progress
from rewriter.errors import UserError

__all__ = [
    "BATCH_MEMORY_BYTES",
    "DEFAULT_BATCH_SIZE",
    "CollectedStats",
    "Reducer",
    "collect_statistics",
]

#: Samples per run when batching (see the module docstring for the measurement).
DEFAULT_BATCH_SIZE = 8
#: Cap on the exposed tensors' bytes in one run when the batch size is chosen automatically.
BATCH_MEMORY_BYTES = 256 * 2**20
# Protobuf cannot serialize 2 GiB; above this the session is built from a file with external data.
LARGE_MODEL_BYTES = int(1.8 * 1024**3)


class Reducer(Protocol):
    """Maps a batch of activations (N, ...) to per-sample statistics (N, ...)."""

    name: str

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class CollectedStats:
    """What one pass over the calibration samples produced.

    Attributes:
        stats: ``stats[tensor][reducer_name]``: the reducer's results over all
            samples, concatenated along axis 0 in sample order: one row per
            sample (per example of a sample with batch > 1 for tensors with a
            batch axis).
        num_samples: the number of samples (dicts) run.
        seconds: wall time of the loop (reading samples, inference, reductions).
        observed_shapes: each tensor's last shape seen, for one sample (batch
            axis as the sample had it); a fallback where shape inference failed.
        batch_axis: 0 for tensors whose axis 0 is the batch axis, None for
            tensors reduced whole (with a new leading axis of size 1): a
            reducer's channel axis is then one more than the tensor's.
        batch_size: samples per run actually used (1: no batching).
        outputs: with ``keep_outputs``, the model outputs of every sample.
    """

    stats: dict[str, dict[str, np.ndarray]]
    num_samples: int
    seconds: float
    observed_shapes: dict[str, tuple[int, ...]]
    batch_axis: dict[str, int | None]
    batch_size: int
    outputs: list[dict[str, np.ndarray]] | None = field(default=None)


def collect_statistics(
    model: onnx.ModelProto,
    tensors: Sequence[str],
    reducers: Mapping[str, Sequence[Reducer]],
    samples: Iterable[Mapping[str, np.ndarray]],
    *,
    batch_size: int | None = None,
    progress: bool = False,
    intra_op_threads: int | None = None,
    keep_outputs: bool = False,
    total: int | None = None,
) -> CollectedStats:
    """Run ``model`` over ``samples`` and reduce the requested tensors as they come.

    Args:
        model: the float model (it is not modified).
        tensors: the tensors to observe: node outputs or graph inputs.
        reducers: per tensor, the reducers to apply (a tensor listed here but
            not in ``tensors`` is observed too).
        samples: dicts of input name -> array with batch axis (``iter_samples``
            of a ``CalibrationData``, or plain dicts, which are checked the same way).
        batch_size: samples per run; None chooses (see the module docstring), 1 disables batching.
        progress: draw a progress line on stderr (only if it is a terminal).
        intra_op_threads: onnxruntime intra-op threads; None keeps its default.
        keep_outputs: also return the model outputs of every sample.
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
    fetch = list(dict.fromkeys([*tensors, *reducers]))
    _check_reducers(reducers)
    outputs = [o.name for o in model.graph.output] if keep_outputs else []
    session = _Session(model, fetch, outputs, intra_op_threads)
    collector = _Collector(fetch, reducers, outputs if keep_outputs else None)
    if total is None and isinstance(samples, Sized):
        total = len(samples)
    start = time.perf_counter()
    try:
        with Progress(total, label="calibrating", enabled=progress) as bar:
            loop = _Loop(session, collector, batch_size, bar)
            for i, sample in enumerate(samples):
                loop.feed(sample, i)
            loop.flush()
    finally:
        session.close()
    seconds = time.perf_counter() - start
    if collector.num_samples == 0:
        raise UserError("the calibration data has no samples")
    return collector.result(seconds, loop.batch_size_used)


def _check_reducers(reducers: Mapping[str, Sequence[Reducer]]) -> None:
    for tensor, items in reducers.items():
        names = [r.name for r in items]
        if len(set(names)) != len(names):
            raise ValueError(f"tensor {tensor!r}: reducer names must be unique, got {names}")


# ----------------------------------------------------------------------------- the session


class _RunFailed(Exception):
    """onnxruntime rejected a run; the caller decides whom to blame."""


class _Session:
    """One onnxruntime session over the model with the requested tensors exposed."""

    def __init__(self, model: onnx.ModelProto, fetch: list[str], outputs: list[str],
                 intra_op_threads: int | None) -> None:
        kinds = _locate(model, fetch)
        self.inputs: list[InputSpec] = model_inputs(model)
        self.from_feed = [name for name in fetch if kinds[name] == "input"]
        self.run_names = list(dict.fromkeys([n for n in fetch if kinds[n] == "node"] + outputs))
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        payload = self._serialize(model, [n for n in self.run_names if n not in _outputs(model)])
        try:
            self._session: ort.InferenceSession | None = _create(payload, intra_op_threads)
        except BaseException:
            self.close()  # no temporary model file left behind
            raise

    def _serialize(self, model: onnx.ModelProto, extra: list[str]) -> bytes | str:
        graph = model.graph
        kept = len(graph.output)
        # Exposed by name only: onnxruntime infers the type from the producing node.
        graph.output.extend(onnx.ValueInfoProto(name=name) for name in extra)
        try:
            if model.ByteSize() < LARGE_MODEL_BYTES:
                return model.SerializeToString()
            return self._save_large(model)
        finally:
            del graph.output[kept:]  # the caller's model is left as it was

    def _save_large(self, model: onnx.ModelProto) -> str:
        from rewriter.ir.load import save_model  # writes tensors to <name>.data beside the model

        self._tmp = tempfile.TemporaryDirectory(prefix="rewriter-calib-")
        path = os.path.join(self._tmp.name, "model.onnx")
        save_model(model, path)
        return path

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self._session is not None, "session used after close()"
        try:
            values = self._session.run(self.run_names, dict(feeds))
        except Exception as e:  # onnxruntime's pybind errors have no common public base class
            raise _RunFailed(_ort_message(e)) from None
        result = dict(zip(self.run_names, values))
        for name in self.from_feed:
            result[name] = feeds[name]
        return result

    def close(self) -> None:
        self._session = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _outputs(model: onnx.ModelProto) -> set[str]:
    return {o.name for o in model.graph.output}


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
        close = difflib.get_close_matches(unknown[0], sorted(produced | inputs), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        shown = ", ".join(repr(n) for n in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise UserError(f"tensor {shown} is not in the model's main graph (neither a node output nor a "
                        f"graph input){hint}")
    return kinds


def _create(payload: bytes | str, intra_op_threads: int | None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if intra_op_threads is not None:
        if intra_op_threads < 1:
            raise ValueError(f"intra_op_threads must be at least 1, got {intra_op_threads}")
        options.intra_op_num_threads = intra_op_threads
    try:
        return ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # see _Session.run
        raise UserError(f"onnxruntime cannot load the model for calibration: {_ort_message(e)}") from None


def _ort_message(e: BaseException) -> str:
    text = " ".join(str(e).split())
    # "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : message" -> "message"
    if text.startswith("[ONNXRuntimeError]"):
        text = text.split(" : ", 3)[-1]
    return text if len(text) <= 400 else text[:397] + "..."


# ----------------------------------------------------------------------------- the loop


class _Loop:
    """Feeds samples to the session, batching when the model allows, and hands results on."""

    def __init__(self, session: _Session, collector: _Collector, batch_size: int | None, bar: Progress) -> None:
        self.session = session
        self.collector = collector
        self.checker = SampleChecker(session.inputs)
        self.requested = batch_size
        self.limit = 1
        self.can_batch = batch_size != 1 and _dynamic_batch(session.inputs)
        self.verified = False
        self.batch_size_used = 1
        self.bar = bar
        self.pending: list[Sample] = []
        self.pending_key: tuple[object, ...] | None = None

    def feed(self, raw: Mapping[str, np.ndarray], index: int) -> None:
        where = getattr(raw, "source", "") or f"sample {index}"
        sample = self.checker.check(raw, where)
        if not self.collector.probed:
            self._single(sample)  # the first run shows which tensors have a batch axis
            self._decide()
            return
        key = _batch_key(sample) if self.can_batch else None
        if key is None or key != self.pending_key:
            self.flush()
        if key is None:
            self._single(sample)
            return
        self.pending.append(sample)
        self.pending_key = key
        if len(self.pending) >= self.limit:
            self.flush()

    def flush(self) -> None:
        batch, self.pending, self.pending_key = self.pending, [], None
        if len(batch) == 1 or (batch and not self.can_batch):
            for sample in batch:
                self._single(sample)
        elif batch:
            self._batched(batch)

    def _decide(self) -> None:
        per_sample = self.collector.bytes_per_run
        automatic = max(1, min(DEFAULT_BATCH_SIZE, BATCH_MEMORY_BYTES // max(per_sample, 1)))
        self.limit = self.requested or automatic
        self.can_batch = self.can_batch and self.limit > 1

    def _single(self, sample: Sample) -> None:
        try:
            result = self.session.run(sample)
        except _RunFailed as e:
            shapes = ", ".join(f"{k} {tuple(v.shape)} {v.dtype}" for k, v in sample.items())
            raise UserError(f"{sample.source}: onnxruntime rejected the sample ({e}); inputs given: {shapes}") from None
        self.collector.add(result, [sample], batched=False)
        self.bar.update(1)

    def _batched(self, batch: list[Sample]) -> None:
        feeds = {name: np.concatenate([s[name] for s in batch], axis=0) for name in batch[0]}
        try:
            result = self.session.run(feeds)
        except _RunFailed:
            result = None  # e.g. a Reshape with batch 1 written into the model
        if result is not None and not self.verified:
            self.verified = True
            if not self._agrees(batch, result):
                result = None
        if result is None:
            self.can_batch = False
            for sample in batch:
                self._single(sample)
            return
        self.collector.add(result, batch, batched=True)
        self.batch_size_used = max(self.batch_size_used, len(batch))
        self.bar.update(len(batch))

    def _agrees(self, batch: list[Sample], batched: dict[str, np.ndarray]) -> bool:
        """A batched run equals runs of its first and last samples alone (shapes and values).

        Rows 0 and N-1 of batch-axis tensors must match those runs; a tensor without
        a batch axis must equal both (it depends on the shapes only, like a position
        embedding) and is then counted once per sample. Comparing with two samples
        catches models that pick one sample out of the batch (``Gather(x, 0)``)
        as well as ones that mix samples (a reduction over the batch axis).
        """
        n = len(batch)
        try:
            refs = (self.session.run(batch[0]), self.session.run(batch[-1]))
        except _RunFailed:
            return False
        for name, got in batched.items():
            if self.collector.batch_axis[name] == 0:
                expected = (n, *refs[0][name].shape[1:])
                rows = (got[:1], got[-1:])
            else:
                expected, rows = refs[0][name].shape, (got, got)
            if got.shape != expected or not all(_close(r, ref[name]) for r, ref in zip(rows, refs)):
                return False
        return True


def _dynamic_batch(inputs: Sequence[InputSpec]) -> bool:
    return all(spec.rank >= 1 and not isinstance(spec.shape[0], int) for spec in inputs)


def _batch_key(sample: Sample) -> tuple[object, ...] | None:
    """Samples with equal keys can be concatenated; None: this one must run alone."""
    if any(arr.ndim == 0 or arr.shape[0] != 1 for arr in sample.values()):
        return None
    return tuple((name, arr.shape, arr.dtype.str) for name, arr in sample.items())


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype.kind not in "fc":
        return bool(np.array_equal(a, b))
    # Batched kernels may block the sums differently: allow rounding, not other samples' data.
    scale = float(np.max(np.abs(b), initial=0.0, where=np.isfinite(b)))
    return bool(np.allclose(a, b, rtol=1e-3, atol=1e-5 * max(scale, 1.0), equal_nan=True))


# ----------------------------------------------------------------------------- reductions


class _Collector:
    """Applies the reducers to each run's tensors and keeps only their results."""

    def __init__(self, names: list[str], reducers: Mapping[str, Sequence[Reducer]],
                 output_names: list[str] | None) -> None:
        self.names = names
        self.reducers = {name: tuple(reducers.get(name, ())) for name in names}
        self.parts: dict[str, dict[str, list[np.ndarray]]] = {
            name: {r.name: [] for r in self.reducers[name]} for name in names}
        self.output_names = output_names
        self.outputs: list[dict[str, np.ndarray]] | None = [] if output_names is not None else None
        self.batch_axis: dict[str, int | None] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.num_samples = 0
        self.bytes_per_run = 0

    @property
    def probed(self) -> bool:
        return self.num_samples > 0

    def add(self, result: dict[str, np.ndarray], samples: list[Sample], batched: bool) -> None:
        first = _run_batch(samples[0])
        run_batch = None if first is None else first * len(samples)
        if not self.probed:
            self._probe(result, run_batch)
        # A batched run's tensors without batch axis were checked equal for every sample: count them per sample.
        copies = len(samples) if batched else 1
        for name in self.names:
            x = result[name]
            self._reduce(name, self._rows(name, x, run_batch, samples[0].source), copies)
            per_run = batched and self.batch_axis[name] == 0
            self.shapes[name] = (x.shape[0] // len(samples), *x.shape[1:]) if per_run else tuple(x.shape)
        if self.outputs is not None:
            self._keep_outputs(result, len(samples))
        self.num_samples += len(samples)

    def _probe(self, result: dict[str, np.ndarray], run_batch: int | None) -> None:
        """Classify tensors from the first (single-sample) run and measure its size."""
        for name, x in result.items():
            self.batch_axis[name] = 0 if run_batch is not None and x.ndim >= 1 and x.shape[0] == run_batch else None
        self.bytes_per_run = sum(x.nbytes for x in result.values())

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
            y = np.asarray(reducer(rows))
            if y.ndim == 0 or y.shape[0] != rows.shape[0]:
                raise ValueError(f"reducer {reducer.name!r} on tensor {name!r} returned shape {y.shape} for a "
                                 f"batch of {rows.shape[0]}: it must keep axis 0 (one row per sample)")
            if self.batch_axis[name] is None and copies > 1:
                y = np.repeat(y, copies, axis=0)
            self.parts[name][reducer.name].append(y)

    def _keep_outputs(self, result: dict[str, np.ndarray], n: int) -> None:
        assert self.outputs is not None and self.output_names is not None
        if n == 1:
            self.outputs.append({name: result[name] for name in self.output_names})
            return
        for i in range(n):  # an output without batch axis was checked to be the same for every sample
            self.outputs.append({name: result[name][i:i + 1].copy() if self.batch_axis[name] == 0 else result[name]
                                 for name in self.output_names})

    def result(self, seconds: float, batch_size: int) -> CollectedStats:
        stats = {name: {r: np.concatenate(parts, axis=0) for r, parts in by_reducer.items()}
                 for name, by_reducer in self.parts.items()}
        axes = {name: self.batch_axis[name] for name in self.names}
        return CollectedStats(stats, self.num_samples, seconds, dict(self.shapes), axes, batch_size, self.outputs)


def _run_batch(sample: Sample) -> int | None:
    """The batch size of a sample: the common first-axis size of its inputs (None if they disagree)."""
    sizes = {arr.shape[0] for arr in sample.values() if arr.ndim >= 1}
    return sizes.pop() if len(sizes) == 1 else None

