"""The onnxruntime sessions of a statistics pass: creation, runs, and the fallback to the raw session.

The raw session copies every requested tensor out whole. Once the probe run
has shown which tensors can be reduced in the graph, a lean session (see
``rewriter.calibrate.in_graph``) takes over; a lean run that onnxruntime
rejects, or whose in-graph extrema may have skipped a NaN, is redone on the raw
session.

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
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping

import numpy as np
import onnx
import onnxruntime as ort

from rewriter.calibrate.in_graph import Layout, in_graph_nodes
from rewriter.calibrate.inputs import InputSpec, model_inputs
from rewriter.errors import UserError
from rewriter.ir.external import EXTERNAL_FOLDER_KEY, file_bytes, runtime_payload
# save_split writes tensors to external data beside the model.
from rewriter.ir.load import save_split, too_big_to_serialize

__all__ = ["LARGE_MODEL_BYTES", "RunFailed", "Session", "Sessions", "model_payload"]

# Protobuf cannot serialize 2 GiB; above this the session is built from a file with external data.
LARGE_MODEL_BYTES = int(1.8 * 1024**3)
# From this size on, a model holding its data in memory is saved for onnxruntime rather than serialized:
# serialized, its data is in memory three times while the session opens (the proto, the bytes, and
# onnxruntime's parse of them); from a file, onnxruntime maps it. (A model that keeps tensors in their file
# is serialized whatever its size: onnxruntime reads external data from one folder only.)
SAVED_FIRST_BYTES = 128 << 20


def _from_file(model: onnx.ModelProto) -> bool:
    """Is a session over ``model`` opened from a temporary file rather than from its bytes?"""
    return too_big_to_serialize(model, LARGE_MODEL_BYTES) or (
        too_big_to_serialize(model, SAVED_FIRST_BYTES) and not file_bytes(model))


class RunFailed(Exception):
    """onnxruntime rejected a run; the caller decides whom to blame."""


class Session:
    """One onnxruntime session over the model, exposing what its layout says."""

    def __init__(self, model: onnx.ModelProto, serialized: bytes | None, layout: Layout,
                 intra_op_threads: int | None, folder: str | None = None) -> None:
        """``serialized``: the model's bytes, or None for a large model (saved with external data);
        ``folder``: where the tensors it keeps in their file are (``model_payload``)."""
        self.layout = layout
        self.run_names = layout.run_names
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        present = _outputs(model)
        nodes, constants = in_graph_nodes(model, layout.in_graph)
        # Exposed by name only: onnxruntime infers the type from the producing node.
        outputs = [onnx.ValueInfoProto(name=n) for n in self.run_names if n not in present]
        if serialized is not None:
            # Serialized messages concatenate as a merge: repeated fields are appended. The model is
            # serialized once for both sessions and never touched.
            extra = onnx.ModelProto(graph=onnx.GraphProto(node=nodes, initializer=constants, output=outputs))
            payload: bytes | str = serialized + extra.SerializeToString()
        else:
            payload, folder = self._save_large(model, nodes, constants, outputs), None
        try:
            self._session: ort.InferenceSession | None = _create(payload, intra_op_threads, folder)
        except BaseException:
            self.close()  # no temporary model file left behind
            raise

    def _save_large(self, model: onnx.ModelProto, nodes: list[onnx.NodeProto], constants: list[onnx.TensorProto],
                    outputs: list[onnx.ValueInfoProto]) -> str:
        self._tmp = tempfile.TemporaryDirectory(prefix="rewriter-calib-")
        path = os.path.join(self._tmp.name, "model.onnx")
        graph = model.graph
        kept = len(graph.node), len(graph.initializer), len(graph.output)
        graph.node.extend(nodes)
        graph.initializer.extend(constants)
        graph.output.extend(outputs)
        try:
            save_split(model, path)
        finally:  # the caller's model is left as it was
            del graph.node[kept[0]:]
            del graph.initializer[kept[1]:]
            del graph.output[kept[2]:]
        return path

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The exposed tensors for ``feeds``; ``RunFailed`` when onnxruntime rejects them."""
        assert self._session is not None, "session used after close()"
        try:
            values = self._session.run(self.run_names, dict(feeds))
        except Exception as e:  # onnxruntime's pybind errors have no common public base class
            raise RunFailed(_ort_message(e)) from None
        result = dict(zip(self.run_names, values))
        for name in self.layout.from_feed:
            result[name] = feeds[name]
        return result

    def close(self) -> None:
        """Release the session and delete its temporary model file, if any."""
        self._session = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


class Sessions:
    """The raw session (every tensor copied out) and, once the first runs are done, the lean one.

    The raw session is closed when the lean one opens (its buffers are the
    big ones) and reopened only if a lean run must be redone.
    """

    def __init__(self, model: onnx.ModelProto, kinds: Mapping[str, str], fetch: list[str], outputs: list[str],
                 intra_op_threads: int | None) -> None:
        self.model = model
        self.inputs: list[InputSpec] = model_inputs(model)
        self.threads = intra_op_threads
        self.large = _from_file(model)
        self._serialized: bytes | None = None
        self._folder: str | None = None
        self.raw_layout = Layout(raw=tuple(n for n in fetch if kinds[n] == "node"),
                                  from_feed=tuple(n for n in fetch if kinds[n] == "input"),
                                  outputs=tuple(outputs))
        self._raw: Session | None = Session(model, self.serialized(), self.raw_layout, intra_op_threads, self._folder)
        self.lean: Session | None = None
        self.reduced_in_graph: tuple[str, ...] = ()

    def serialized(self) -> bytes | None:
        """The model's bytes (serialized once for both sessions), None for a large model."""
        if self._serialized is None and not self.large:
            self._serialized, self._folder = runtime_payload(self.model)
        return self._serialized

    @property
    def current(self) -> Session:
        """The session runs go to: the lean one once open, else the raw one."""
        return self.lean if self.lean is not None else self.raw

    @property
    def raw(self) -> Session:
        """The raw session, reopened if the lean one replaced it."""
        if self._raw is None:
            self._raw = Session(self.model, self.serialized(), self.raw_layout, self.threads, self._folder)
        return self._raw

    def open_lean(self, layout: Layout) -> bool:
        """Switch to a session exposing ``layout``; False (staying raw) if onnxruntime cannot load it."""
        serialized = self.serialized()
        self._serialized = None  # needed again only if a lean run must be redone raw
        if self._raw is not None:  # closed first: the raw session's buffers are the peak of memory
            self._raw.close()
            self._raw = None
        try:
            self.lean = Session(self.model, serialized, layout, self.threads, self._folder)
        except UserError:
            return False  # the raw session reopens on the next run
        self.reduced_in_graph = tuple(g.tensor for g in layout.in_graph)
        return True

    def run(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], Session]:
        """Run on the current session; a lean run that fails or may have skipped a NaN is redone raw."""
        session = self.current
        if session is self.lean:
            try:
                result = session.run(feeds)
            except RunFailed:
                result = None
            if result is not None and session.layout.trusted(result):
                return result, session
            session = self.raw
        return session.run(feeds), session

    def close(self) -> None:
        """Close both sessions."""
        for session in (self._raw, self.lean):
            if session is not None:
                session.close()


def _outputs(model: onnx.ModelProto) -> set[str]:
    return {o.name for o in model.graph.output}


def session_options(intra_op_threads: int | None = None) -> ort.SessionOptions:
    """The options of every onnxruntime session the tool makes: full graph optimization (what a user's
    session runs), one op at a time, and ``intra_op_threads`` per op (None: onnxruntime's default)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Fatal only: a failed load or run comes back as an exception and is reported once, by us;
    # onnxruntime would also print it to stderr at error level first.
    options.log_severity_level = 4
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if intra_op_threads is not None:
        options.intra_op_num_threads = intra_op_threads
    return options


def model_payload(model: onnx.ModelProto) -> tuple[bytes | None, str | None]:
    """What ``Session`` takes for ``model``: its bytes (None when too large to serialize: ``Session`` saves it
    to a temporary file instead), and the folder of the tensors it keeps in their file (None: none)."""
    if _from_file(model):
        return None, None
    return runtime_payload(model)


def open_session(model: onnx.ModelProto, options: ort.SessionOptions) -> ort.InferenceSession:
    """An onnxruntime CPU session over ``model`` with ``options``; a model too large for protobuf to serialize
    goes through a temporary file with its tensors beside it (onnxruntime has read them when this returns).
    Tensors kept in their file (``rewriter.ir.external``) are read by onnxruntime from there."""
    if not _from_file(model):
        serialized, folder = runtime_payload(model)
        if folder is not None:
            options.add_session_config_entry(EXTERNAL_FOLDER_KEY, folder)
        return ort.InferenceSession(serialized, options, providers=["CPUExecutionProvider"])
    with tempfile.TemporaryDirectory(prefix="rewriter-session-") as tmp:
        path = os.path.join(tmp, "model.onnx")
        save_split(model, path)
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _create(payload: bytes | str, intra_op_threads: int | None, folder: str | None) -> ort.InferenceSession:
    options = session_options(intra_op_threads)
    if folder is not None:
        options.add_session_config_entry(EXTERNAL_FOLDER_KEY, folder)
    try:
        return ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # see Session.run
        raise UserError(f"onnxruntime cannot load the model for calibration: {_ort_message(e)}") from None


def _ort_message(e: BaseException) -> str:
    text = " ".join(str(e).split())
    # "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : message" -> "message"
    if text.startswith("[ONNXRuntimeError]"):
        text = text.split(" : ", 3)[-1]
    return text if len(text) <= 400 else text[:397] + "..."
