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
from onnx import helper, numpy_helper

from rewriter.calibrate.data import InputSpec, Sample, SampleChecker, model_inputs
from rewriter.calibrate.progress import Progress
from rewriter.errors import UserError
from rewriter.ir.names import FreshNames, graph_names

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

#: Samples per run when batching (see the module docstring for the measurement).
DEFAULT_BATCH_SIZE = 8
#: Cap on the exposed tensors' bytes in one run when the batch size is chosen automatically.
BATCH_MEMORY_BYTES = 256 * 2**20
# Protobuf cannot serialize 2 GiB; above this the session is built from a file with external data.
LARGE_MODEL_BYTES = int(1.8 * 1024**3)
#: The ``extrema_axis`` of a reducer that needs the raw tensor.
RAW = "raw"
# Element types reduced in the graph: onnxruntime's CPU ReduceMin/ReduceMax/ReduceSum take them.
_IN_GRAPH_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Reducer(Protocol):
    """Maps a batch of activations (N, ...) to per-sample statistics (N, ...).

    Optional ``max_samples: int | None``: the reducer is given only the first
    ``max_samples`` rows (samples) and its result has at most that many rows;
    the collector stops copying a tensor out of onnxruntime once no reducer of
    it wants raw data any more.
    """

    name: str

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


class ExtremaReducer(Reducer, Protocol):
    """A reducer that only needs each sample's minimum and maximum.

    ``extrema_axis`` None: per tensor, ``from_extrema`` is given ``mins`` and
    ``maxs`` of shape (N,) (each sample's min and max over all its values);
    1: per channel on axis 1, shapes (N, C), for tensors of rank 3 and more
    (rank 2 and less, and any other axis, go the raw way: ``__call__``);
    ``RAW``: this instance needs the raw values after all. The extrema
    have the tensor's dtype. ``from_extrema(mins, maxs)`` must return what
    ``__call__`` returns on the tensor, exactly.
    """

    @property
    def extrema_axis(self) -> int | str | None: ...

    def from_extrema(self, mins: np.ndarray, maxs: np.ndarray) -> np.ndarray: ...


class SubsampleReducer(Reducer, Protocol):
    """A reducer that only needs ``count`` evenly spaced values of each sample.

    The collector gives ``from_subsample`` ``flat[:, ::step][:, :count]`` in
    the tensor's dtype, where ``flat`` is the batch reshaped to (N, -1)
    (``subsample_axis`` None) or to (N, C, -1) with the slicing on the last
    axis (``subsample_axis`` 1, tensors of rank 3 and more), and
    ``step = max(1, flat.shape[-1] // count)``; ``RAW`` or any other axis:
    ``__call__`` gets the tensor.
    """

    count: int

    @property
    def subsample_axis(self) -> int | str | None: ...

    def from_subsample(self, values: np.ndarray) -> np.ndarray: ...


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
            onnxruntime after the first runs (see the module docstring).
    """

    stats: dict[str, dict[str, np.ndarray]]
    num_samples: int
    seconds: float
    observed_shapes: dict[str, tuple[int, ...]]
    batch_axis: dict[str, int | None]
    batch_size: int
    outputs: list[dict[str, np.ndarray]] | None = field(default=None)
    reduced_in_graph: tuple[str, ...] = ()


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
            not in ``tensors`` is observed too). Reducers that are
            ``ExtremaReducer`` s may be fed in-graph extrema instead of the tensor.
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
    if intra_op_threads is not None and intra_op_threads < 1:
        raise ValueError(f"intra_op_threads must be at least 1, got {intra_op_threads}")
    fetch = list(dict.fromkeys([*tensors, *reducers]))
    _check_reducers(reducers)
    kinds = _locate(model, fetch)
    outputs = [o.name for o in model.graph.output] if keep_outputs else []
    collector = _Collector(fetch, reducers, outputs if keep_outputs else None)
    sessions = _Sessions(model, kinds, fetch, outputs, intra_op_threads)
    if total is None and isinstance(samples, Sized):
        total = len(samples)
    start = time.perf_counter()
    try:
        with Progress(total, label="calibrating", enabled=progress) as bar:
            loop = _Loop(sessions, collector, batch_size, bar)
            for i, sample in enumerate(samples):
                loop.feed(sample, i)
            loop.flush()
    finally:
        sessions.close()
    seconds = time.perf_counter() - start
    if collector.num_samples == 0:
        raise UserError("the calibration data has no samples")
    return collector.result(seconds, loop.batch_size_used, sessions.reduced_in_graph)


def _check_reducers(reducers: Mapping[str, Sequence[Reducer]]) -> None:
    for tensor, items in reducers.items():
        names = [r.name for r in items]
        if len(set(names)) != len(names):
            raise ValueError(f"tensor {tensor!r}: reducer names must be unique, got {names}")


def _in_graph_axis(value: object) -> int | str | None:
    if value is None or (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value == 1):
        return None if value is None else 1
    return RAW


def _service(reducer: Reducer) -> tuple[str, int | None, int]:
    """How the lean session can feed ``reducer``: ("extrema", axis, 0), ("subsample", axis, count) or (RAW, None, 0)."""
    if callable(getattr(reducer, "from_extrema", None)):
        axis = _in_graph_axis(getattr(reducer, "extrema_axis", RAW))
        if axis != RAW:
            return "extrema", axis, 0  # type: ignore[return-value]
    if callable(getattr(reducer, "from_subsample", None)):
        axis = _in_graph_axis(getattr(reducer, "subsample_axis", RAW))
        count = getattr(reducer, "count", None)
        if axis != RAW and isinstance(count, (int, np.integer)) and count >= 1:
            return "subsample", axis, int(count)  # type: ignore[return-value]
    return RAW, None, 0


def _max_samples(reducer: Reducer) -> int | None:
    limit = getattr(reducer, "max_samples", None)
    if limit is not None and limit < 1:
        raise ValueError(f"reducer {reducer.name!r}: max_samples must be at least 1 or None, got {limit}")
    return limit


# ----------------------------------------------------------------------------- what a session exposes


@dataclass(frozen=True)
class _Subsample:
    """``count`` evenly spaced values per sample (per channel with ``axis`` 1), output ``out``."""

    axis: int | None
    count: int
    out: str


@dataclass(frozen=True)
class _InGraph:
    """What the lean session computes from one tensor instead of handing it out.

    With ``extrema``: per-sample min, max and a NaN check on ``axis`` (None:
    (N,) over everything but the batch; 1: (N, C)). The check is a ReduceSum
    of the same values: NaN when the tensor holds a NaN (or both infinities,
    or sums past the float range), and onnxruntime's ReduceMin/ReduceMax may
    skip a NaN where numpy's propagate it.
    """

    tensor: str
    extrema: bool
    axis: int | None
    min: str = ""
    max: str = ""
    check: str = ""
    subsamples: tuple[_Subsample, ...] = ()

    @property
    def outputs(self) -> list[str]:
        return [*((self.min, self.max, self.check) if self.extrema else ()), *(s.out for s in self.subsamples)]

    def subsample(self, axis: int | None, count: int) -> str:
        return next(s.out for s in self.subsamples if s.axis == axis and s.count == count)


@dataclass(frozen=True)
class _Layout:
    """Which tensors one session hands out whole, which it reduces in the graph."""

    raw: tuple[str, ...]  # node outputs copied out whole
    from_feed: tuple[str, ...]  # graph inputs, taken from the feeds
    in_graph: tuple[_InGraph, ...] = ()
    outputs: tuple[str, ...] = ()  # model outputs returned for keep_outputs

    @property
    def run_names(self) -> list[str]:
        return list(dict.fromkeys([*self.raw, *self.outputs, *(n for g in self.in_graph for n in g.outputs)]))

    def trusted(self, result: Mapping[str, np.ndarray]) -> bool:
        """False when an in-graph reduction may have skipped a NaN (onnxruntime's may; numpy's do not)."""
        return not any(g.extrema and np.isnan(result[g.check]).any() for g in self.in_graph)

    def batch_axis(self, name: str, tensors: Mapping[str, int | None]) -> int | None | str:
        """The batch axis of an output of this layout; ``"skip"`` for the NaN checks (sums, not statistics)."""
        for g in self.in_graph:
            if g.extrema and name == g.check:
                return "skip"
            if name in g.outputs:
                return 0
        return tensors[name]


# ----------------------------------------------------------------------------- the sessions


class _RunFailed(Exception):
    """onnxruntime rejected a run; the caller decides whom to blame."""


class _Session:
    """One onnxruntime session over the model, exposing what its layout says."""

    def __init__(self, model: onnx.ModelProto, serialized: bytes | None, layout: _Layout,
                 intra_op_threads: int | None) -> None:
        """``serialized``: the model's bytes, or None for a large model (saved with external data)."""
        self.layout = layout
        self.run_names = layout.run_names
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        present = _outputs(model)
        nodes, constants = _in_graph_nodes(model, layout.in_graph)
        # Exposed by name only: onnxruntime infers the type from the producing node.
        outputs = [onnx.ValueInfoProto(name=n) for n in self.run_names if n not in present]
        if serialized is not None:
            # Serialized messages concatenate as a merge: repeated fields are appended. The model is
            # serialized once for both sessions and never touched.
            extra = onnx.ModelProto(graph=onnx.GraphProto(node=nodes, initializer=constants, output=outputs))
            payload: bytes | str = serialized + extra.SerializeToString()
        else:
            payload = self._save_large(model, nodes, constants, outputs)
        try:
            self._session: ort.InferenceSession | None = _create(payload, intra_op_threads)
        except BaseException:
            self.close()  # no temporary model file left behind
            raise

    def _save_large(self, model: onnx.ModelProto, nodes: list[onnx.NodeProto], constants: list[onnx.TensorProto],
                    outputs: list[onnx.ValueInfoProto]) -> str:
        from rewriter.ir.load import save_model  # writes tensors to <name>.data beside the model

        self._tmp = tempfile.TemporaryDirectory(prefix="rewriter-calib-")
        path = os.path.join(self._tmp.name, "model.onnx")
        graph = model.graph
        kept = len(graph.node), len(graph.initializer), len(graph.output)
        graph.node.extend(nodes)
        graph.initializer.extend(constants)
        graph.output.extend(outputs)
        try:
            save_model(model, path)
        finally:  # the caller's model is left as it was
            del graph.node[kept[0]:]
            del graph.initializer[kept[1]:]
            del graph.output[kept[2]:]
        return path

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self._session is not None, "session used after close()"
        try:
            values = self._session.run(self.run_names, dict(feeds))
        except Exception as e:  # onnxruntime's pybind errors have no common public base class
            raise _RunFailed(_ort_message(e)) from None
        result = dict(zip(self.run_names, values))
        for name in self.layout.from_feed:
            result[name] = feeds[name]
        return result

    def close(self) -> None:
        self._session = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


class _Sessions:
    """The raw session (every tensor copied out) and, once the first runs are done, the lean one.

    The raw session is closed when the lean one opens (its buffers are the
    big ones) and reopened only if a lean run must be redone.
    """

    def __init__(self, model: onnx.ModelProto, kinds: Mapping[str, str], fetch: list[str], outputs: list[str],
                 intra_op_threads: int | None) -> None:
        self.model = model
        self.inputs: list[InputSpec] = model_inputs(model)
        self.threads = intra_op_threads
        self.large = model.ByteSize() >= LARGE_MODEL_BYTES
        self._serialized: bytes | None = None
        self.raw_layout = _Layout(raw=tuple(n for n in fetch if kinds[n] == "node"),
                                  from_feed=tuple(n for n in fetch if kinds[n] == "input"),
                                  outputs=tuple(outputs))
        self._raw: _Session | None = _Session(model, self.serialized(), self.raw_layout, intra_op_threads)
        self.lean: _Session | None = None
        self.reduced_in_graph: tuple[str, ...] = ()

    def serialized(self) -> bytes | None:
        """The model's bytes (serialized once for both sessions), None for a large model."""
        if self._serialized is None and not self.large:
            self._serialized = self.model.SerializeToString()
        return self._serialized

    @property
    def current(self) -> _Session:
        return self.lean if self.lean is not None else self.raw

    @property
    def raw(self) -> _Session:
        if self._raw is None:
            self._raw = _Session(self.model, self.serialized(), self.raw_layout, self.threads)
        return self._raw

    def open_lean(self, layout: _Layout) -> bool:
        """Switch to a session exposing ``layout``; False (staying raw) if onnxruntime cannot load it."""
        serialized = self.serialized()
        self._serialized = None  # needed again only if a lean run must be redone raw
        if self._raw is not None:  # closed first: the raw session's buffers are the peak of memory
            self._raw.close()
            self._raw = None
        try:
            self.lean = _Session(self.model, serialized, layout, self.threads)
        except UserError:
            return False  # the raw session reopens on the next run
        self.reduced_in_graph = tuple(g.tensor for g in layout.in_graph)
        return True

    def run(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], _Session]:
        """Run on the current session; a lean run that fails or may have skipped a NaN is redone raw."""
        session = self.current
        if session is self.lean:
            try:
                result = session.run(feeds)
            except _RunFailed:
                result = None
            if result is not None and session.layout.trusted(result):
                return result, session
            session = self.raw
        return session.run(feeds), session

    def close(self) -> None:
        for session in (self._raw, self.lean):
            if session is not None:
                session.close()


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


# ----------------------------------------------------------------------------- in-graph reductions


def _default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return 1


def _in_graph_nodes(model: onnx.ModelProto, in_graph: Sequence[_InGraph]) -> tuple[list[onnx.NodeProto],
                                                                                     list[onnx.TensorProto]]:
    """The nodes computing each ``_InGraph``'s outputs, and the constants they use.

    A tensor is viewed as (N, S) by Flatten(axis=1) or as (N, C, S) by
    Reshape([0, 0, -1]); extrema reduce S with keepdims=0 (``axes`` is an
    input of ReduceSum from opset 13 and of ReduceMin/ReduceMax from opset 18,
    an attribute before); a subsample is Slice(0, step * count, step) on S,
    with ``step = max(1, S // count)`` computed in the graph from Shape, since
    S may change from sample to sample.
    """
    if not in_graph:
        return [], []
    opset = _default_opset(model)
    fresh = FreshNames(graph_names(model.graph))
    nodes: list[onnx.NodeProto] = []
    constants: dict[tuple[int, ...], onnx.TensorProto] = {}

    def constant(*value: int) -> str:
        if value not in constants:
            stem = "_".join(str(v).replace("-", "m") for v in value)
            constants[value] = numpy_helper.from_array(np.array(value, np.int64), fresh(f"rewriter_calib/const_{stem}"))
        return constants[value].name

    def node(op: str, inputs: list[str], stem: str, **attrs: object) -> str:
        out = fresh(f"{stem}/{op}")
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    # onnxruntime's default execution order is a reverse DFS that starts from the leaf nodes with the
    # highest index: appending the groups latest producer first makes each reduction run right after
    # its tensor is made. Appended the other way, every reduction ran at the end and kept all its
    # tensors alive: +1 GB peak memory on ResNet-50 at batch 8 (+160 MB this way).
    position = {out: i for i, n in enumerate(model.graph.node) for out in n.output}
    for g in sorted(in_graph, key=lambda g: -position.get(g.tensor, -1)):
        stem = f"rewriter_calib/{g.tensor}"
        views: dict[int | None, str] = {}

        def view(axis: int | None) -> str:
            if axis not in views:
                if axis is None:
                    views[axis] = node("Flatten", [g.tensor], stem, axis=1)
                else:
                    views[axis] = node("Reshape", [g.tensor, constant(0, 0, -1)], stem)
            return views[axis]

        if g.extrema:
            flat, last = view(g.axis), 1 if g.axis is None else 2
            for op, out, since in (("ReduceMin", g.min, 18), ("ReduceMax", g.max, 18), ("ReduceSum", g.check, 13)):
                if opset >= since:
                    nodes.append(helper.make_node(op, [flat, constant(last)], [out], name=out, keepdims=0))
                else:
                    nodes.append(helper.make_node(op, [flat], [out], name=out, axes=[last], keepdims=0))
        shapes: dict[int | None, str] = {}
        for sub in g.subsamples:
            flat, last = view(sub.axis), 1 if sub.axis is None else 2
            if sub.axis not in shapes:
                shapes[sub.axis] = node("Gather", [node("Shape", [flat], stem), constant(last)], stem, axis=0)
            quotient = node("Div", [shapes[sub.axis], constant(sub.count)], stem)
            step = node("Where", [node("Less", [quotient, constant(1)], stem), constant(1), quotient], stem)
            end = node("Mul", [step, constant(sub.count)], stem)
            nodes.append(helper.make_node("Slice", [flat, constant(0), end, constant(last), step], [sub.out],
                                          name=sub.out))
    return nodes, list(constants.values())


# ----------------------------------------------------------------------------- the loop


class _Loop:
    """Feeds samples to the sessions, batching when the model allows, and hands results on.

    Phases: the first run (the probe) goes to the raw session and decides the
    lean layout. If there is one, the raw session takes single samples only
    until every reducer with ``max_samples`` has its rows (few runs, and the
    least memory), then the lean session takes over; otherwise the raw
    session does it all, batched as before.
    """

    def __init__(self, sessions: _Sessions, collector: _Collector, batch_size: int | None, bar: Progress) -> None:
        self.sessions = sessions
        self.collector = collector
        self.checker = SampleChecker(sessions.inputs)
        self.requested = batch_size
        self.limit = 1
        self.can_batch = batch_size != 1 and _dynamic_batch(sessions.inputs)
        self.verified = False
        self.lean_layout: _Layout | None = None
        self.batch_size_used = 1
        self.bar = bar
        self.pending: list[Sample] = []
        self.pending_key: tuple[object, ...] | None = None

    def feed(self, raw: Mapping[str, np.ndarray], index: int) -> None:
        where = getattr(raw, "source", "") or f"sample {index}"
        sample = self.checker.check(raw, where)
        if not self.collector.probed:
            self._single(sample)  # the first run shows which tensors have a batch axis
            self.lean_layout = self.collector.lean_layout(self.sessions.raw_layout, FreshNames(graph_names(self.sessions.model.graph)),
                                                          _default_opset(self.sessions.model))
            if self.lean_layout is None:
                self.limit = self._limit(self.collector.bytes_per_run)
            self._maybe_go_lean()
            return
        key = _batch_key(sample) if self.can_batch and self.limit > 1 else None
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

    def _limit(self, bytes_per_run: int) -> int:
        automatic = max(1, min(DEFAULT_BATCH_SIZE, BATCH_MEMORY_BYTES // max(bytes_per_run, 1)))
        return self.requested or automatic

    def _maybe_go_lean(self) -> None:
        """Open the lean session once the raw runs have given every row only they can give."""
        if self.lean_layout is None or self.collector.wants_raw_rows():
            return
        layout, self.lean_layout = self.lean_layout, None
        if self.sessions.open_lean(layout):
            self.limit = self._limit(self.collector.lean_bytes_per_run(layout))
        else:
            self.limit = self._limit(self.collector.bytes_per_run)

    def _single(self, sample: Sample) -> None:
        try:
            result, session = self.sessions.run(sample)
        except _RunFailed as e:
            shapes = ", ".join(f"{k} {tuple(v.shape)} {v.dtype}" for k, v in sample.items())
            raise UserError(f"{sample.source}: onnxruntime rejected the sample ({e}); inputs given: {shapes}") from None
        self.collector.add(result, [sample], batched=False, layout=session.layout)
        self.bar.update(1)
        self._maybe_go_lean()

    def _batched(self, batch: list[Sample]) -> None:
        feeds = {name: np.concatenate([s[name] for s in batch], axis=0) for name in batch[0]}
        try:
            result, session = self.sessions.run(feeds)
        except _RunFailed:
            result = None  # e.g. a Reshape with batch 1 written into the model
        if result is not None and not self.verified:
            self.verified = True
            if not self._agrees(batch, result, session):
                result = None
        if result is None:
            self.can_batch = False
            for sample in batch:
                self._single(sample)
            return
        self.collector.add(result, batch, batched=True, layout=session.layout)
        self.batch_size_used = max(self.batch_size_used, len(batch))
        self.bar.update(len(batch))
        self._maybe_go_lean()

    def _agrees(self, batch: list[Sample], batched: dict[str, np.ndarray], session: _Session) -> bool:
        """A batched run equals runs of its first and last samples alone (shapes and values).

        Rows 0 and N-1 of batch-axis tensors must match those runs; a tensor without
        a batch axis must equal both (it depends on the shapes only, like a position
        embedding) and is then counted once per sample. Comparing with two samples
        catches models that pick one sample out of the batch (``Gather(x, 0)``)
        as well as ones that mix samples (a reduction over the batch axis).
        """
        n = len(batch)
        try:
            refs = (session.run(batch[0]), session.run(batch[-1]))
        except _RunFailed:
            return False
        for name, got in batched.items():
            axis = session.layout.batch_axis(name, self.collector.batch_axis)
            if axis == "skip":
                continue
            if axis == 0:
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
    """Applies the reducers to each run's tensors (or in-graph extrema) and keeps only their results."""

    def __init__(self, names: list[str], reducers: Mapping[str, Sequence[Reducer]],
                 output_names: list[str] | None) -> None:
        self.names = names
        self.reducers = {name: tuple(reducers.get(name, ())) for name in names}
        self.parts: dict[str, dict[str, list[np.ndarray]]] = {
            name: {r.name: [] for r in self.reducers[name]} for name in names}
        self.limits = {(name, r.name): _max_samples(r) for name in names for r in self.reducers[name]}
        self.rows = {key: 0 for key in self.limits}
        self.output_names = output_names
        self.outputs: list[dict[str, np.ndarray]] | None = [] if output_names is not None else None
        self.batch_axis: dict[str, int | None] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, np.dtype] = {}
        self.probe_bytes: dict[str, int] = {}
        self.num_samples = 0
        self.bytes_per_run = 0

    @property
    def probed(self) -> bool:
        return self.num_samples > 0

    def wants(self, name: str, reducer: Reducer) -> bool:
        limit = self.limits[name, reducer.name]
        return limit is None or self.rows[name, reducer.name] < limit

    def wants_raw_rows(self) -> bool:
        """Whether a reducer with ``max_samples`` still wants rows (they come from raw runs)."""
        return any(limit is not None and self.rows[key] < limit for key, limit in self.limits.items())

    def add(self, result: dict[str, np.ndarray], samples: list[Sample], batched: bool, layout: _Layout) -> None:
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

    def _from_graph(self, name: str, g: _InGraph, result: dict[str, np.ndarray], run_batch: int | None,
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
            kind, axis, count = _service(reducer)
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

    def lean_layout(self, raw: _Layout, fresh: FreshNames, opset: int) -> _Layout | None:
        """What the runs expose once every reducer with ``max_samples`` has its rows (after the probe run).

        None when that is what ``raw`` exposes already.
        """
        kept: list[str] = []
        in_graph: list[_InGraph] = []
        for name in raw.raw:
            wanting = [r for r in self.reducers[name] if self.limits[name, r.name] is None]
            if not wanting:
                continue  # nothing left to learn from it
            services = {_service(r) for r in wanting}
            if not self._fits_in_graph(name, services, opset):
                kept.append(name)
                continue
            stem = f"rewriter_calib/{name}"
            extrema = [axis for kind, axis, _ in services if kind == "extrema"]
            axis = 1 if 1 in extrema else None
            subsamples = tuple(_Subsample(a, c, fresh(f"{stem}/subsample_{c}" + ("_c" if a else "")))
                               for kind, a, c in sorted(services, key=str) if kind == "subsample")
            if extrema:
                in_graph.append(_InGraph(name, True, axis, fresh(f"{stem}/min"), fresh(f"{stem}/max"),
                                         fresh(f"{stem}/sum"), subsamples))
            else:
                in_graph.append(_InGraph(name, False, None, subsamples=subsamples))
        if not in_graph and tuple(kept) == raw.raw:
            return None
        return _Layout(tuple(kept), raw.from_feed, tuple(in_graph), raw.outputs)

    def _fits_in_graph(self, name: str, services: set[tuple[str, int | None, int]], opset: int) -> bool:
        """Whether the lean session can serve every reducer still wanting ``name`` from the graph."""
        shape = self.shapes.get(name, ())
        if any(kind == RAW for kind, _, _ in services) or self.batch_axis.get(name) != 0:
            return False
        if self.dtypes.get(name) not in _IN_GRAPH_DTYPES or int(np.prod(shape[1:])) == 0:
            return False  # empty: numpy's error, not onnxruntime's value
        if any(kind == "subsample" for kind, _, _ in services) and opset < 10:
            return False  # Slice takes its steps as an input from opset 10
        # (N, C) has nothing to reduce per channel: the reducers decide what that means, on the tensor.
        return len(shape) >= 3 or all(axis is None for _, axis, _ in services)

    def lean_bytes_per_run(self, layout: _Layout) -> int:
        exposed = sum(self.probe_bytes.get(n, 0) for n in (*layout.raw, *layout.outputs, *layout.from_feed))
        small = 0
        for g in layout.in_graph:
            channels = self.shapes[g.tensor][1] if len(self.shapes[g.tensor]) >= 3 else 1
            small += 3 * 8 * (channels if g.axis == 1 else 1) if g.extrema else 0
            small += sum(8 * s.count * (channels if s.axis == 1 else 1) for s in g.subsamples)
        return exposed + small

    def _keep_outputs(self, result: dict[str, np.ndarray], n: int) -> None:
        assert self.outputs is not None and self.output_names is not None
        if n == 1:
            self.outputs.append({name: result[name] for name in self.output_names})
            return
        for i in range(n):  # an output without batch axis was checked to be the same for every sample
            self.outputs.append({name: result[name][i:i + 1].copy() if self.batch_axis[name] == 0 else result[name]
                                 for name in self.output_names})

    def result(self, seconds: float, batch_size: int, in_graph: tuple[str, ...]) -> CollectedStats:
        stats = {name: {r: np.concatenate(parts, axis=0) for r, parts in by_reducer.items()}
                 for name, by_reducer in self.parts.items()}
        axes = {name: self.batch_axis[name] for name in self.names}
        return CollectedStats(stats, self.num_samples, seconds, dict(self.shapes), axes, batch_size, self.outputs,
                              in_graph)


def _run_batch(sample: Sample) -> int | None:
    """The batch size of a sample: the common first-axis size of its inputs (None if they disagree)."""
    sizes = {arr.shape[0] for arr in sample.values() if arr.ndim >= 1}
    return sizes.pop() if len(sizes) == 1 else None
