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

from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rewriter.algorithms.types import TensorRange
from rewriter.emit.graph_edit import GraphEdit, stamp
from rewriter.emit.qdq_params import (_QParams, _bias_scale, _float_clip_bounds, _in_float_type, check_qdq_float_types,
                                      float_types,
                                      _int_tensor, _params_for, _quantize_constant, _required_opset, _stored_bytes,
                                      _with_opset, default_opset)
from rewriter.ir.layers import DEFAULT_DOMAINS
from rewriter.ir.tensors import tensor_array
from rewriter.plan import Decision, FakeQuantizePoint, IntegerBias, QuantPlan, Requantization, source_of

# GraphEdit, stamp and default_opset are re-exported: callers have always found them here.
__all__ = ["EmitResult", "EmittedTensor", "GraphEdit", "default_opset", "emit_qdq", "stamp"]


@dataclass(frozen=True)
class EmittedTensor:
    """What was emitted for one tensor.

    Attributes:
        tensor: the float tensor's name in the input model.
        role: "activation", "weight", "bias" (int32 bias added for fusion) or
            "requantized" (the output of a grid-preserving op, re-quantized
            with its input's parameters).
        storage_dtype: the integer type ("int8", "uint4", ...); "float32" where
            nothing is stored as integers (FakeQuantize output's activations, a
            tensor left float).
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
        UserError: the model's opset cannot be converted to the one needed, or a planned tensor is of a
            float type no QDQ pair carries (bfloat16, double). A float16 tensor's pair carries float16
            scales (opset 19).
    """
    constants = {t.name for t in model.graph.initializer}
    wide = [p for p in plan.points if _range_for(p, ranges).levels > _MAX_QDQ_LEVELS]
    signed = plan.activation_storage == "signed"
    kept = [p for p in plan.points if p not in wide]
    check_qdq_float_types(model, [p.tensor for p in kept])
    types = float_types(model, [p.tensor for p in kept])
    resolved = [(p, _in_float_type(_params_for(p, _range_for(p, ranges), p.tensor in constants, signed),
                                   types[p.tensor])) for p in kept]
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


def _range_for(point: FakeQuantizePoint, ranges: Mapping[str, TensorRange]) -> TensorRange:
    try:
        return ranges[point.tensor]
    except KeyError:
        raise ValueError(f"no range for planned tensor {point.tensor!r}; run the range passes first") from None


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
        w = tensor_array(float_init)
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
        scale = e.add_initializer(numpy_helper.from_array(params.scale.astype(params.float_numpy),
                                                          e.unique(f"{tensor}_scale")))
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
        if add.op_type != "Add" or add.domain not in DEFAULT_DOMAINS or len(add.input) != 2:
            return None
        other = 1 - port
        return (add, other) if add.input[other] in e.inits else None

    def _quantize_bias(self, node: onnx.NodeProto, port: int, op: onnx.NodeProto, x: _Grid, w: _Grid) -> None:
        """Rewire input ``port`` of ``node`` (the bias of ``op``) to an int32 copy of that bias."""
        e = self.edit
        bias = node.input[port]
        b = tensor_array(e.inits[bias])
        scale = _bias_scale(op, b, x.params, w.params)
        if scale is not None and b.dtype == np.float16:
            # DequantizeLinear gives its scale's type: a float16 bias needs a float16 scale, with the
            # integers computed from that very scale.
            scale = scale.astype(np.float16)
            scale = scale if np.all(scale > 0) else None
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
