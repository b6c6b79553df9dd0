"""Plan + ranges -> an ONNX model with QuantizeLinear/DequantizeLinear (the default output).

What gets emitted, per FakeQuantizePoint of the plan:

- an activation: ``QuantizeLinear -> DequantizeLinear`` on the tensor; the
  consumers the point lists (every consumer for an ``at_output`` point) read the
  DequantizeLinear output, the others keep reading float. A graph output keeps
  its name and its float value.
- a weight (an initializer): an integer initializer followed by a
  DequantizeLinear (per channel along ``point.channel_axis``); the float
  initializer goes when nothing reads it any more, so 8-bit weights take a
  quarter of the bytes.

Then what the plan's integer-chain phase decided, so that onnxruntime turns
the pairs into integer kernels:

- ``plan.requantized``: the output of a grid-preserving op (MaxPool, Reshape,
  Concat of unified inputs, ...) is quantized again with the parameters of the
  grid it reads -- lossless, the values are already on the grid;
- ``plan.int32_biases``: the float bias of a layer (Conv/ConvTranspose/Gemm
  input 2, or the constant added right after a MatMul) is stored as int32 with
  scale = activation scale x weight scale; a bias that does not fit int32 at
  that scale stays float, and the report says so;
- ``plan.activation_storage``: activations in uint8/uint16 ("unsigned") or
  int8/int16 ("signed"), whatever the sign of their grid.

Every node emitted carries a ``rewriter.source`` metadata entry naming the
decision (rule or spec entry, file:line:column) behind it.

Levels narrower than the storage type (the 255-level narrow range, 4-bit
activations) are emitted exactly: an integer Clip between QuantizeLinear and
DequantizeLinear (8-bit storage; it keeps the producer's ``op -> QuantizeLinear``
pair adjacent, so the producer still fuses) or a float Clip before
QuantizeLinear (16-bit storage, where onnxruntime has no integer Clip kernel).

The output is deterministic: names derive from tensor names
(``<tensor>_QuantizeLinear``, ``<tensor>_quantized``, ``<tensor>_scale``, ...),
and everything is visited in plan order, then graph order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper, version_converter

from rewriter.algorithms.fq_math import STORAGE_RANGES, fake_quantize, qdq_params, storage_dtype_for
from rewriter.algorithms.types import TensorRange
from rewriter.errors import UserError
from rewriter.ir.names import FreshNames, graph_names, subgraph_reads
from rewriter.ir.tensors import slicing_axis
from rewriter.plan import Decision, FakeQuantizePoint, IntegerBias, QuantPlan, Requantization, source_of
from rewriter.sources import SOURCE_KEY, source_text

__all__ = ["EmitResult", "EmittedTensor", "GraphEdit", "emit_qdq", "stamp"]

# ONNX element types of the storage types fq_math names.
_ONNX_DTYPE = {
    "int4": onnx.TensorProto.INT4,
    "uint4": onnx.TensorProto.UINT4,
    "int8": onnx.TensorProto.INT8,
    "uint8": onnx.TensorProto.UINT8,
    "int16": onnx.TensorProto.INT16,
    "uint16": onnx.TensorProto.UINT16,
    "int32": onnx.TensorProto.INT32,
}
_BITS = {"int4": 4, "uint4": 4, "int8": 8, "uint8": 8, "int16": 16, "uint16": 16, "int32": 32}
# QuantizeLinear/DequantizeLinear take 4- and 16-bit integers only from opset 21 on
# (onnxruntime >= 1.18 loads them; older runtimes refuse such a model).
_OPSET_FOR_DTYPE = {"int4": 21, "uint4": 21, "int16": 21, "uint16": 21}
# The "axis" attribute (per-channel scales) and Clip on integers (opset 12) both need opset 13.
_OPSET_PER_CHANNEL = 13
_OPSET_QDQ = 10
_DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class EmittedTensor:
    """What was emitted for one tensor.

    Attributes:
        tensor: the float tensor's name in the input model.
        role: "activation", "weight", "bias" (int32 bias added for fusion) or
            "requantized" (the output of a grid-preserving op, re-quantized
            with its input's parameters).
        storage_dtype: the integer type ("int8", "uint4", ...); "float32" for
            FakeQuantize output, where nothing is stored as integers.
        scale, zero_point: one value per tensor, or one per channel along ``axis``.
        axis: the channel axis, None per tensor.
        levels: number of grid levels (0 for an int32 bias, which has no level grid).
        qmin, qmax: the levels' range in storage units.
        input_low, input_high: the FakeQuantize range (empty for a bias).
        clipped: a Clip enforces qmin..qmax because the storage type is wider.
        consumers: "node:port" of the readers rewired to the quantized value.
        bytes_before, bytes_after: for constants, the float bytes and the
            integer + scale + zero-point bytes that replace them.
        note: anything a reviewer should know (a float copy kept, a fallback).
    """

    tensor: str
    role: str
    storage_dtype: str
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int | None
    levels: int
    qmin: int
    qmax: int
    input_low: tuple[float, ...] = ()
    input_high: tuple[float, ...] = ()
    clipped: bool = False
    consumers: tuple[str, ...] = ()
    bytes_before: int | None = None
    bytes_after: int | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for reports)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class EmitResult:
    """The emitted model and, per tensor, what was emitted: plan points in plan order, then
    re-quantized outputs and int32 biases in graph order."""

    model: onnx.ModelProto
    tensors: tuple[EmittedTensor, ...]

    def tensor(self, name: str, role: str | None = None) -> EmittedTensor | None:
        """The first entry for ``name`` (of ``role``, if given)."""
        return next((t for t in self.tensors if t.tensor == name and (role is None or t.role == role)), None)


@dataclass(frozen=True, eq=False)
class _QParams:
    """QDQ parameters of one quantized tensor, in the storage type emitted."""

    scale: np.ndarray  # float32, shape () or (C,)
    zero_point: np.ndarray  # int64, same shape
    qmin: int
    qmax: int
    dtype: str
    axis: int | None
    levels: int
    input_low: np.ndarray
    input_high: np.ndarray

    @property
    def clip_needed(self) -> bool:
        """True when QuantizeLinear's saturation (the storage range) is wider than the levels."""
        return (self.qmin, self.qmax) != STORAGE_RANGES[self.dtype]

    def same_grid(self, other: _QParams) -> bool:
        """Same scale, zero point and level range: values on one are on the other."""
        return (self.dtype == other.dtype and self.axis == other.axis and self.qmin == other.qmin
                and self.qmax == other.qmax and np.array_equal(self.scale, other.scale)
                and np.array_equal(self.zero_point, other.zero_point))


@dataclass(frozen=True)
class _Grid:
    """A tensor whose values are on a quantization grid: the DequantizeLinear output and its parameters."""

    tensor: str  # the float tensor the parameters were computed for
    params: _QParams
    scale_name: str
    zero_point_name: str
    clip_names: tuple[str, str] | None  # integer Clip bounds, reused when re-quantizing


# --------------------------------------------------------------------------------------
# Public entry point


def emit_qdq(model: onnx.ModelProto, plan: QuantPlan, ranges: Mapping[str, TensorRange]) -> EmitResult:
    """Emit the plan as QuantizeLinear/DequantizeLinear pairs and integer weights.

    Args:
        model: the (normalized) float model the plan was made for; not modified.
        plan: what to quantize and which consumers read the quantized values.
        ranges: the FakeQuantize parameters of every planned tensor, by tensor name.

    Returns:
        The quantized model (default-domain opset raised to 13 for per-channel
        scales and to 21 for 4/16-bit storage when needed) and a report entry
        per emitted tensor.

    Raises:
        ValueError: the plan and the model or the ranges disagree (a tensor,
            consumer or range is missing, a range is not representable).
        UserError: the model's opset cannot be converted to the one needed.
    """
    constants = {t.name for t in model.graph.initializer}
    wide = [p for p in plan.points if _range_for(p, ranges).levels > _MAX_QDQ_LEVELS]
    signed = plan.activation_storage == "signed"
    resolved = [(p, _params_for(p, _range_for(p, ranges), p.tensor in constants, signed)) for p in plan.points
                if p not in wide]
    target = _required_opset((q, p.tensor in constants) for p, q in resolved)
    edit = GraphEdit(_with_opset(model, target), original=model)
    emitter = _QdqEmitter(edit, plan)
    for point, params in resolved:
        emitter.emit_point(point, params)
    emitter.requantize(plan.requantized)
    emitter.quantize_biases(plan.int32_biases)
    edit.finish()
    skipped = [_wide_entry(p, _range_for(p, ranges)) for p in wide]
    return EmitResult(edit.model, tuple(_note_kept_floats(emitter.report, edit)) + tuple(skipped))


# ONNX QuantizeLinear stores at most 16 bits. A wider grid (GNA's 32-bit
# accumulator outputs) is finer than float32 resolves over most of its range,
# so the tensor stays float and the report says so.
_MAX_QDQ_LEVELS = 1 << 16


def _wide_entry(point: FakeQuantizePoint, rng: TensorRange) -> EmittedTensor:
    return EmittedTensor(
        tensor=point.tensor, role=point.role, storage_dtype="float32", scale=(), zero_point=(), axis=None,
        levels=rng.levels, qmin=rng.level_low, qmax=rng.level_high,
        input_low=tuple(np.atleast_1d(rng.input_low).astype(float)),
        input_high=tuple(np.atleast_1d(rng.input_high).astype(float)), clipped=False, consumers=(),
        bytes_before=None, bytes_after=None,
        note=f"{rng.levels}-level grid: no ONNX QuantizeLinear type holds it; kept float")


def _note_kept_floats(report: list[EmittedTensor], edit: GraphEdit) -> list[EmittedTensor]:
    """Say where a float constant stayed because something else still reads it."""
    out = []
    for entry in report:
        if entry.bytes_before is not None and not edit.removed(entry.tensor):
            note = "float initializer kept: other readers still need it"
            entry = replace(entry, note=f"{entry.note}; {note}" if entry.note else note)
        out.append(entry)
    return out


# --------------------------------------------------------------------------------------
# Parameters


def _range_for(point: FakeQuantizePoint, ranges: Mapping[str, TensorRange]) -> TensorRange:
    try:
        return ranges[point.tensor]
    except KeyError:
        raise ValueError(f"no range for planned tensor {point.tensor!r}; run the range passes first") from None


def _params_for(point: FakeQuantizePoint, rng: TensorRange, constant: bool, signed_activations: bool) -> _QParams:
    """QDQ parameters for a point: fq_math's scale/zero point in the storage type the plan says.

    The level grid is the range's; the storage type:

    - constants (weights) take the narrowest type holding their levels, signed
      when the levels are (int8 weights, int4 for 4-bit weights: a smaller file);
    - activations take the plan's ``activation_storage`` sign, in at least 8 bits
      (uint8/int8, or 16 bits past 256 levels): a signed grid is the same grid in
      uint8 with zero point 128, and the other way round. 4-bit activations live
      in 8 bits with a Clip at their levels (no runtime has 4-bit activation kernels).
    """
    axis = rng.axis if rng.axis is not None else point.channel_axis
    per_channel = np.ndim(rng.input_low) > 0 or np.ndim(rng.input_high) > 0
    if per_channel and axis is None:
        raise ValueError(f"range of {point.tensor!r} is per channel but neither the range nor the plan gives an axis")
    if not per_channel:
        axis = None
    signed = rng.level_low < 0 if constant else signed_activations
    scale, zero_point, qmin, qmax = qdq_params(rng.input_low, rng.input_high, rng.levels, storage_signed=signed)
    dtype = storage_dtype_for(qmin, qmax)
    if not constant and _BITS[dtype] < 8:
        dtype = "int8" if signed else "uint8"
    return _QParams(np.asarray(scale, np.float32), np.asarray(zero_point, np.int64), int(qmin), int(qmax), dtype,
                    axis, rng.levels, np.asarray(rng.input_low, np.float32), np.asarray(rng.input_high, np.float32))


def _required_opset(params: Iterable[tuple[_QParams, bool]]) -> int:
    """The default-domain opset the emitted nodes need, from (parameters, is a stored constant) pairs."""
    needed = _OPSET_QDQ
    for q, constant in params:
        # Constants are stored within qmin..qmax and need no Clip; activations may.
        if q.axis is not None or (q.clip_needed and not constant):
            needed = max(needed, _OPSET_PER_CHANNEL)
        needed = max(needed, _OPSET_FOR_DTYPE.get(q.dtype, _OPSET_QDQ))
    return needed


def default_opset(model: onnx.ModelProto) -> int:
    """The model's default-domain opset version."""
    return max((o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS), default=1)


def _with_opset(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
    """A copy of ``model`` at default-domain opset >= ``target`` (converted when older)."""
    current = default_opset(model)
    if current >= target:
        out = onnx.ModelProto()
        out.CopyFrom(model)
        return out
    try:
        out = version_converter.convert_version(model, target)
    except Exception as e:  # the converter raises bare RuntimeErrors from C++
        raise UserError(
            f"the model is at opset {current} and its quantized form needs opset {target} "
            f"(per-channel scales need 13, 4/16-bit storage needs 21), but onnx's version converter "
            f"failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}; "
            f"re-export the model at opset {target} or newer") from None
    # The converter leaves the IR version alone; an old IR with a new opset is refused by runtimes.
    out.ir_version = max(out.ir_version, helper.find_min_ir_version_for(list(out.opset_import)))
    return out


# --------------------------------------------------------------------------------------
# Graph editing shared by the emitters


class GraphEdit:
    """Node insertions and input rewiring on a model, applied in one pass by ``finish``.

    New nodes go right after a producer (or at the top of the graph) or right
    before a consumer, so the graph stays topologically sorted. Names are made
    unique against every name already in the graph.

    Args:
        model: the model to edit in place (the emitters pass a copy).
        original: the unedited model, for shape inference (edits leave tensors
            unproduced until ``finish``); ``model`` itself if not given.
    """

    def __init__(self, model: onnx.ModelProto, original: onnx.ModelProto | None = None) -> None:
        self.model = model
        self.original = original if original is not None else model
        self.graph = model.graph
        self.nodes = list(self.graph.node)
        self.by_name = {n.name: n for n in self.nodes if n.name}
        self.index = {id(n): i for i, n in enumerate(self.nodes)}
        self.producer: dict[str, onnx.NodeProto] = {o: n for n in self.nodes for o in n.output if o}
        self.readers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
        for n in self.nodes:
            for port, name in enumerate(n.input):
                if name:
                    self.readers.setdefault(name, []).append((n, port))
        self.inits = {t.name: t for t in self.graph.initializer}
        self.outputs = {o.name for o in self.graph.output}
        # unique(name): name, or name_1, name_2, ... if taken; the result is reserved.
        self.unique = FreshNames(graph_names(self.graph))
        self._top: list[onnx.NodeProto] = []
        self._after: dict[int, list[onnx.NodeProto]] = {}
        self._before: dict[int, list[onnx.NodeProto]] = {}
        self._new_inits: list[onnx.TensorProto] = []
        self._maybe_dead: list[str] = []
        self._shapes: dict[str, tuple[int | None, ...]] | None = None
        self._dropped: set[str] = set()
        self.inputs = {i.name for i in self.graph.input}

    # -- lookups ----------------------------------------------------------------------------

    def node(self, name: str) -> onnx.NodeProto:
        try:
            return self.by_name[name]
        except KeyError:
            raise ValueError(f"the plan names node {name!r}, which the model does not have") from None

    def point_readers(self, point: FakeQuantizePoint) -> list[tuple[onnx.NodeProto, int]]:
        """The (node, port) pairs that read ``point``'s quantized value, in graph order.

        The listed consumers, plus every reader for an output point (``at_output``).
        """
        listed = []
        for c in point.consumers:
            node = self.node(c.node)
            if c.port >= len(node.input) or node.input[c.port] != point.tensor:
                raise ValueError(f"the plan says {c.node} input {c.port} reads {point.tensor!r}; the model disagrees")
            listed.append((node, c.port))
        if point.at_output:
            seen = {(id(n), port) for n, port in listed}
            listed += [(n, port) for n, port in self.readers.get(point.tensor, ()) if (id(n), port) not in seen]
        return sorted(listed, key=lambda r: (self.index[id(r[0])], r[1]))

    def tensor_exists(self, name: str) -> bool:
        return name in self.producer or name in self.inits or name in self.outputs or name in self.inputs

    def elem_type(self, name: str) -> int | None:
        """The ONNX element type of a tensor, if the model records it."""
        if name in self.inits:
            return self.inits[name].data_type
        for vi in (*self.graph.input, *self.graph.output, *self.graph.value_info):
            if vi.name == name and vi.type.HasField("tensor_type"):
                return vi.type.tensor_type.elem_type
        return None

    def shape(self, name: str) -> tuple[int | None, ...] | None:
        """A tensor's shape (None for a symbolic or unknown dim), from the model's records or
        onnx shape inference (run once, on demand); None when even the rank is unknown."""
        if name in self.inits:
            return tuple(self.inits[name].dims)
        if self._shapes is None:
            self._shapes = _inferred_shapes(self.original)
        return self._shapes.get(name)

    def rank(self, name: str) -> int | None:
        shape = self.shape(name)
        return None if shape is None else len(shape)

    def constant_value(self, name: str) -> np.ndarray | None:
        t = self.inits.get(name)
        return numpy_helper.to_array(t) if t is not None else None

    # -- edits ------------------------------------------------------------------------------

    def add_initializer(self, tensor: onnx.TensorProto) -> str:
        self._new_inits.append(tensor)
        return tensor.name

    def insert_after_producer(self, tensor: str, nodes: list[onnx.NodeProto]) -> None:
        """Place ``nodes`` right after the node producing ``tensor`` (graph top for inputs/initializers)."""
        producer = self.producer.get(tensor)
        if producer is None:
            self._top.extend(nodes)
        else:
            self._after.setdefault(self.index[id(producer)], []).extend(nodes)

    def insert_before(self, node: onnx.NodeProto, nodes: list[onnx.NodeProto]) -> None:
        self._before.setdefault(self.index[id(node)], []).extend(nodes)

    def rewire(self, node: onnx.NodeProto, port: int, old: str, new: str) -> None:
        """Make input ``port`` of ``node`` read ``new`` instead of ``old``."""
        if port >= len(node.input) or node.input[port] != old:
            raise ValueError(f"node {node.name!r} input {port} is not {old!r}; the plan does not fit the model")
        node.input[port] = new
        self._maybe_dead.append(old)

    def finish(self) -> None:
        """Apply the insertions, add the new initializers and drop float initializers nobody reads."""
        order: list[onnx.NodeProto] = list(self._top)
        for i, n in enumerate(self.nodes):
            order.extend(self._before.get(i, ()))
            order.append(n)
            order.extend(self._after.get(i, ()))
        # Copies taken before the field is cleared: whether a message still lives after its
        # removal from a repeated field depends on the protobuf implementation.
        copies = [_copy_node(n) for n in order]
        del self.graph.node[:]
        self.graph.node.extend(copies)
        self.graph.initializer.extend(self._new_inits)
        self._drop_unread_initializers()

    def _drop_unread_initializers(self) -> None:
        read = {i for n in self.graph.node for i in n.input} | self.outputs | subgraph_reads(self.graph)
        self._dropped = {name for name in self._maybe_dead if name in self.inits and name not in read}
        for field in (self.graph.initializer, self.graph.input, self.graph.value_info):
            # Deleted in place, from the end: no copy of the (large) tensors that stay.
            for i in reversed(range(len(field))):
                if field[i].name in self._dropped:
                    del field[i]

    def removed(self, name: str) -> bool:
        """After ``finish``: whether the float initializer ``name`` was dropped."""
        return name in self._dropped


def stamp(node: onnx.NodeProto, decision: Decision | None) -> onnx.NodeProto:
    """Record in ``node``'s metadata the decision (rule or spec entry, file:line:column) that put it there."""
    if decision is not None:
        entry = node.metadata_props.add()
        entry.key, entry.value = SOURCE_KEY, source_text(decision)
    return node


def _copy_node(node: onnx.NodeProto) -> onnx.NodeProto:
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    return copy


def _inferred_shapes(model: onnx.ModelProto) -> dict[str, tuple[int | None, ...]]:
    """Shape per tensor name: onnx's shape inference over the recorded shapes (best effort)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference fails on some exports; the recorded shapes still count
        inferred = model
    shapes = {}
    g = inferred.graph
    for vi in (*g.input, *g.output, *g.value_info):
        tt = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and tt.HasField("shape"):
            shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
    return shapes


# --------------------------------------------------------------------------------------
# The QDQ emitter


_INT32_MAX = 2**31 - 1


class _QdqEmitter:
    def __init__(self, edit: GraphEdit, plan: QuantPlan) -> None:
        self.edit = edit
        self.plan = plan
        self.report: list[EmittedTensor] = []
        self.weights_by_tensor: dict[str, _Grid] = {}  # planned constant weight -> its grid
        self.by_tensor: dict[str, _Grid] = {}  # planned tensor -> the grid it was emitted on
        self.source: Decision | None = None  # the decision behind the nodes being emitted

    # -- plan points ------------------------------------------------------------------------

    def _node(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str], name: str,
              **attrs: Any) -> onnx.NodeProto:
        """A new node, carrying the decision that put it there in its metadata."""
        return stamp(helper.make_node(op_type, list(inputs), list(outputs), name=name, **attrs), self.source)

    def emit_point(self, point: FakeQuantizePoint, params: _QParams) -> None:
        self.source = source_of(point.trail)
        if not self.edit.tensor_exists(point.tensor):
            raise ValueError(f"the plan quantizes {point.tensor!r}, which the model does not have")
        readers = self.edit.point_readers(point)
        if not readers:
            # Only a graph output: it keeps its float value, so a pair would have no reader.
            self.report.append(_entry(point.tensor, point.role, params, note="graph output only; left float"))
            return
        if point.tensor in self.edit.inits:
            self._emit_weight(point, params, readers)
        else:
            note = "" if point.role == "activation" else "not an initializer: quantized at run time"
            self._emit_activation(point.tensor, point.role, params, readers, note)

    def _emit_activation(self, tensor: str, role: str, params: _QParams,
                         readers: list[tuple[onnx.NodeProto, int]], note: str = "") -> None:
        scale, zero_point = self._params_initializers(tensor, params)
        clip_names = self._clip_bounds(tensor, params) if params.clip_needed and params.dtype in ("int8", "uint8") \
            else None
        grid = _Grid(tensor, params, scale, zero_point, clip_names)
        dequantized = self._quantize_dequantize(tensor, grid)
        for node, port in readers:
            self.edit.rewire(node, port, tensor, dequantized)
        self.by_tensor[tensor] = grid
        self.report.append(_entry(tensor, role, params, readers, note=note))

    def _quantize_dequantize(self, tensor: str, grid: _Grid, on_grid: bool = False) -> str:
        """Insert Q (-> integer Clip) -> DQ after ``tensor``'s producer; return the DequantizeLinear output.

        ``on_grid``: the values are already levels of ``grid`` (a re-quantization),
        so QuantizeLinear lands within qmin..qmax and no Clip is needed.
        """
        e, q = self.edit, grid.params
        nodes = []
        source = tensor
        clip = q.clip_needed and not on_grid
        if clip and grid.clip_names is None:
            # 16-bit storage: onnxruntime has no int16 Clip, so clamp the float input to
            # the levels' float range [il, ih]; QuantizeLinear maps its ends onto qmin/qmax.
            low, high = _float_clip_bounds(q)
            lo_name = e.add_initializer(numpy_helper.from_array(low, e.unique(f"{tensor}_clip_low")))
            hi_name = e.add_initializer(numpy_helper.from_array(high, e.unique(f"{tensor}_clip_high")))
            source = e.unique(f"{tensor}_clipped")
            nodes.append(self._node("Clip", [tensor, lo_name, hi_name], [source], name=e.unique(f"{tensor}_Clip")))
        quantized = e.unique(f"{tensor}_quantized")
        nodes.append(self._node("QuantizeLinear", [source, grid.scale_name, grid.zero_point_name], [quantized],
                                name=e.unique(f"{tensor}_QuantizeLinear"), **_axis_attr(q)))
        if clip and grid.clip_names is not None:
            # QuantizeLinear saturates to the storage range; the levels end at qmin/qmax.
            clipped = e.unique(f"{tensor}_quantized_clipped")
            nodes.append(self._node("Clip", [quantized, *grid.clip_names], [clipped],
                                    name=e.unique(f"{tensor}_Clip")))
            quantized = clipped
        dequantized = e.unique(f"{tensor}_dequantized")
        nodes.append(self._node("DequantizeLinear", [quantized, grid.scale_name, grid.zero_point_name],
                                [dequantized], name=e.unique(f"{tensor}_DequantizeLinear"), **_axis_attr(q)))
        e.insert_after_producer(tensor, nodes)
        return dequantized

    def _emit_weight(self, point: FakeQuantizePoint, params: _QParams,
                     readers: list[tuple[onnx.NodeProto, int]]) -> None:
        e = self.edit
        tensor = point.tensor
        float_init = e.inits[tensor]
        w = numpy_helper.to_array(float_init)
        if params.axis is not None and not -w.ndim <= params.axis < w.ndim:
            raise ValueError(f"channel axis {params.axis} is out of range for weight {tensor!r} of rank {w.ndim}")
        values = _quantize_constant(w, params)
        q_name = e.add_initializer(_int_tensor(values, params.dtype, e.unique(f"{tensor}_quantized")))
        scale, zero_point = self._params_initializers(tensor, params)
        before = w.size * w.dtype.itemsize
        after = _stored_bytes(w.size, params.dtype) + params.scale.nbytes + _stored_bytes(params.zero_point.size,
                                                                                          params.dtype)
        if _gathered_table(params, w.ndim, readers):
            # An embedding table: gather int8 rows, then dequantize them (a scale per tensor or per last
            # axis commutes with the Gather). Dequantizing first would expand the whole table every run.
            for node, _ in readers:
                out = node.output[0]
                rows = e.unique(f"{out}_quantized")
                node.output[0] = rows
                e.rewire(node, 0, tensor, q_name)
                axis = {} if params.axis is None else {"axis": -1}
                e.insert_after_producer(out, [self._node(
                    "DequantizeLinear", [rows, scale, zero_point], [out], name=e.unique(f"{out}_DequantizeLinear"),
                    **axis)])
            self.report.append(_entry(tensor, point.role, params, readers, before, after, clipped=False,
                                      note="dequantized after the Gather"))
            return
        dequantized = e.unique(f"{tensor}_dequantized")
        dq = self._node("DequantizeLinear", [q_name, scale, zero_point], [dequantized],
                        name=e.unique(f"{tensor}_DequantizeLinear"), **_axis_attr(params))
        e.insert_before(readers[0][0], [dq])
        for node, port in readers:
            e.rewire(node, port, tensor, dequantized)
        self.weights_by_tensor[tensor] = _Grid(tensor, params, scale, zero_point, None)
        self.report.append(_entry(tensor, point.role, params, readers, before, after, clipped=False))

    def _params_initializers(self, tensor: str, params: _QParams) -> tuple[str, str]:
        e = self.edit
        scale = e.add_initializer(numpy_helper.from_array(params.scale, e.unique(f"{tensor}_scale")))
        zero_point = e.add_initializer(_int_tensor(params.zero_point, params.dtype, e.unique(f"{tensor}_zero_point")))
        return scale, zero_point

    def _clip_bounds(self, tensor: str, params: _QParams) -> tuple[str, str]:
        e = self.edit
        low = e.add_initializer(_int_tensor(np.array(params.qmin), params.dtype, e.unique(f"{tensor}_clip_qmin")))
        high = e.add_initializer(_int_tensor(np.array(params.qmax), params.dtype, e.unique(f"{tensor}_clip_qmax")))
        return low, high

    # -- the integer chain: re-quantized outputs and int32 biases, as planned ------------------------

    def requantize(self, items: Sequence[Requantization]) -> None:
        """Quantize each planned output again with the grid its input reads (values already on it)."""
        for item in items:
            self.source = item.trail[0] if item.trail else None
            grid = self.by_tensor.get(item.grid)
            if grid is None or grid.params.axis is not None:
                raise ValueError(f"the plan requantizes {item.tensor!r} with the grid of {item.grid!r}, which was "
                                 f"not emitted as a per-tensor activation")
            readers = list(self.edit.readers.get(item.tensor, ()))
            if not readers:
                raise ValueError(f"the plan requantizes {item.tensor!r}, which nothing reads")
            dequantized = self._quantize_dequantize(item.tensor, grid, on_grid=True)
            for reader, port in readers:
                self.edit.rewire(reader, port, item.tensor, dequantized)
            self.by_tensor[item.tensor] = grid
            producer = self.edit.producer.get(item.tensor)
            what = f"{producer.op_type} {producer.name}" if producer is not None else item.node
            self.report.append(_entry(item.tensor, "requantized", grid.params, readers, clipped=False,
                                      note=f"after {what}: the parameters of {grid.tensor} (lossless)"))

    def quantize_biases(self, items: Sequence[IntegerBias]) -> None:
        """Store each planned layer's float bias as int32, in the graph order of the node holding the bias.

        The bias is found where the layer has it now: input 2 of Conv/ConvTranspose/Gemm, or the constant of
        the Add right after a MatMul (bias correction may have added either after planning).
        """
        found = []
        for item in items:
            layer = self.edit.node(item.node)
            x, w = self.by_tensor.get(item.activation), self.weights_by_tensor.get(item.weight)
            if x is None or w is None:
                raise ValueError(f"the plan stores the bias of {item.node!r} as int32, but {item.activation!r} or "
                                 f"{item.weight!r} was not emitted as its quantized activation and weight")
            holder = self._bias_holder(layer)
            if holder is not None:
                found.append((self.edit.index[id(holder[0])], holder, layer, x, w, item))
        for _, (node, port), layer, x, w, item in sorted(found, key=lambda f: f[0]):
            self.source = item.trail[0] if item.trail else None
            self._quantize_bias(node, port, layer, x, w)

    def _bias_holder(self, layer: onnx.NodeProto) -> tuple[onnx.NodeProto, int] | None:
        """(node, input port) of the layer's constant bias, or None when it has none."""
        e = self.edit
        if layer.op_type != "MatMul":
            has = len(layer.input) > 2 and layer.input[2] in e.inits
            return (layer, 2) if has else None
        out = layer.output[0]
        readers = e.readers.get(out, ())
        if len(readers) != 1 or out in e.outputs:
            return None
        add, port = readers[0]
        if add.op_type != "Add" or add.domain not in _DEFAULT_DOMAINS or len(add.input) != 2:
            return None
        other = 1 - port
        return (add, other) if add.input[other] in e.inits else None

    def _quantize_bias(self, node: onnx.NodeProto, port: int, op: onnx.NodeProto, x: _Grid, w: _Grid) -> None:
        """Rewire input ``port`` of ``node`` (the bias of ``op``) to an int32 copy of that bias."""
        e = self.edit
        bias = node.input[port]
        b = numpy_helper.to_array(e.inits[bias])
        scale = _bias_scale(op, b, x.params, w.params)
        if scale is None:
            self._float_bias(node, port, f"its shape {b.shape} or type {b.dtype} does not follow the weight's "
                                         f"scales of {w.tensor}")
            return
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            q = np.rint(b.astype(np.float64) / scale.astype(np.float64))
        if not np.all(np.isfinite(q)) or np.max(np.abs(q), initial=0) > _INT32_MAX:
            # Not representable in int32 at this scale; onnxruntime quantizes a float bias itself.
            self._float_bias(node, port, f"its values exceed int32 at scale {x.tensor} x {w.tensor}")
            return
        q_name = e.add_initializer(numpy_helper.from_array(q.astype(np.int32), e.unique(f"{bias}_quantized")))
        s_name = e.add_initializer(numpy_helper.from_array(scale, e.unique(f"{bias}_scale")))
        zp_name = e.add_initializer(numpy_helper.from_array(np.zeros(scale.shape, np.int32),
                                                            e.unique(f"{bias}_zero_point")))
        dequantized = e.unique(f"{bias}_dequantized")
        axis = {"axis": 0} if scale.ndim == 1 else {}
        e.insert_before(node, [self._node("DequantizeLinear", [q_name, s_name, zp_name], [dequantized],
                                          name=e.unique(f"{bias}_DequantizeLinear"), **axis)])
        e.rewire(node, port, bias, dequantized)
        before = b.size * b.dtype.itemsize
        after = q.size * 4 + scale.nbytes + scale.size * 4
        self.report.append(EmittedTensor(
            tensor=bias, role="bias", storage_dtype="int32", scale=_floats(scale), zero_point=(0,) * scale.size,
            axis=0 if scale.ndim == 1 else None, levels=0, qmin=-_INT32_MAX - 1, qmax=_INT32_MAX,
            consumers=(f"{node.name}:{port}",), bytes_before=before, bytes_after=after,
            note=f"scale = scale of {x.tensor} x scale of {w.tensor}"))


    def _float_bias(self, node: onnx.NodeProto, port: int, why: str) -> None:
        bias = node.input[port]
        self.report.append(EmittedTensor(
            tensor=bias, role="bias", storage_dtype="float32", scale=(), zero_point=(), axis=None, levels=0,
            qmin=0, qmax=0, consumers=(f"{node.name}:{port}",), note=f"planned as int32 but kept float: {why}"))

# --------------------------------------------------------------------------------------
# Helpers


def _gathered_table(params: _QParams, rank: int, readers: Sequence[tuple[onnx.NodeProto, int]]) -> bool:
    """Whether every reader gathers rows of the table and its scales survive the Gather (per tensor or last axis)."""
    if not readers or any(node.op_type != "Gather" or port != 0 for node, port in readers):
        return False
    if params.axis is None:
        return True
    last = rank - 1
    gather_axes = [next((a.i for a in node.attribute if a.name == "axis"), 0) % rank for node, _ in readers]
    return params.axis % rank == last and all(a != last for a in gather_axes)


def _axis_attr(params: _QParams) -> dict[str, int]:
    return {} if params.axis is None else {"axis": int(params.axis)}


def _int_tensor(values: np.ndarray, dtype: str, name: str) -> onnx.TensorProto:
    """An integer initializer of a storage type (4-bit types packed two per byte by onnx)."""
    np_dtype = helper.tensor_dtype_to_np_dtype(_ONNX_DTYPE[dtype])
    return numpy_helper.from_array(np.asarray(values).astype(np_dtype), name)


def _stored_bytes(count: int, dtype: str) -> int:
    return math.ceil(count * _BITS[dtype] / 8)


def _quantize_constant(w: np.ndarray, params: _QParams) -> np.ndarray:
    """The integer values of a weight: fake_quantize's levels, shifted to storage units.

    fake_quantize returns (k - z) * scale exactly rounded, so dividing by the
    scale recovers the integer k - z without doubt, and DequantizeLinear gives
    back fake_quantize's values bit for bit.
    """
    along = slicing_axis(w, params.axis, _CHUNK_VALUES)
    if along is not None:
        # A large table (word embeddings: 11.7M values) in slices: float64 temporaries of the whole
        # tensor took 400 MB.
        parts = np.array_split(np.arange(w.shape[along]), -(-w.size // _CHUNK_VALUES))
        return np.concatenate([_quantize_constant(np.take(w, idx, axis=along), params) for idx in parts if idx.size],
                              axis=along)
    fq = fake_quantize(w, params.input_low, params.input_high, params.levels, axis=params.axis)
    scale = _broadcast(params.scale, w.ndim, params.axis).astype(np.float64)
    zero_point = _broadcast(params.zero_point, w.ndim, params.axis)
    q = np.rint(fq.astype(np.float64) / scale).astype(np.int64) + zero_point
    return np.clip(q, params.qmin, params.qmax)


_CHUNK_VALUES = 1 << 20


def _broadcast(values: np.ndarray, ndim: int, axis: int | None) -> np.ndarray:
    if axis is None or values.ndim == 0:
        return values
    shape = [1] * ndim
    shape[axis % ndim] = values.shape[0]
    return values.reshape(shape)


def _float_clip_bounds(params: _QParams) -> tuple[np.ndarray, np.ndarray]:
    """The float values of levels qmin and qmax: QuantizeLinear rounds them back exactly."""
    low = ((params.qmin - params.zero_point) * params.scale.astype(np.float64)).astype(np.float32)
    high = ((params.qmax - params.zero_point) * params.scale.astype(np.float64)).astype(np.float32)
    if params.axis is not None:
        # Clip takes one bound for all channels; no target asks for per-channel 16-bit activations.
        raise ValueError("per-channel activations with fewer levels than their 16-bit storage are not supported")
    return np.asarray(low, np.float32), np.asarray(high, np.float32)


def _bias_scale(node: onnx.NodeProto, bias: np.ndarray, x: _QParams, w: _QParams) -> np.ndarray | None:
    """activation scale x weight scale, per output channel of ``node``; None when no such int32 bias fits."""
    if bias.ndim != 1 or x.axis is not None or not np.issubdtype(bias.dtype, np.floating):
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "MatMul":
        # y = x @ W with W [K, N]: the bias runs along N, the weight's last axis.
        if len(w.scale.shape) and w.axis not in (-1, 1):
            return None
        out_axis = w.axis if w.axis is not None else 1
    elif node.op_type == "Gemm":
        # The fused kernel adds the bias unscaled: only alpha = beta = 1 keeps the meaning.
        if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            return None
        out_axis = 0 if attrs.get("transB", 0) else 1
    elif node.op_type == "ConvTranspose":
        if attrs.get("group", 1) != 1:
            return None
        out_axis = 1
    else:
        out_axis = 0
    if w.axis is None:
        weight_scale = w.scale  # one scale: a per-tensor bias, no axis (fits any opset)
    elif w.axis == out_axis and w.scale.shape == bias.shape:
        weight_scale = w.scale
    else:
        return None
    # float32 product: the value onnxruntime computes for the fused kernel's bias scale.
    scale = (np.float32(x.scale) * weight_scale).astype(np.float32)
    return scale if np.all(scale > 0) else None


def _floats(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in np.ravel(values))


def _entry(tensor: str, role: str, params: _QParams, readers: Iterable[tuple[onnx.NodeProto, int]] = (),
           bytes_before: int | None = None, bytes_after: int | None = None, note: str = "",
           clipped: bool | None = None) -> EmittedTensor:
    return EmittedTensor(
        tensor=tensor, role=role, storage_dtype=params.dtype, scale=_floats(params.scale),
        zero_point=tuple(int(z) for z in np.ravel(params.zero_point)), axis=params.axis, levels=params.levels,
        qmin=params.qmin, qmax=params.qmax, input_low=_floats(params.input_low),
        input_high=_floats(params.input_high), clipped=params.clip_needed if clipped is None else clipped,
        consumers=tuple(f"{n.name}:{p}" for n, p in readers), bytes_before=bytes_before, bytes_after=bytes_after,
        note=note)
