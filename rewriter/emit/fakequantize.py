"""Plan + ranges -> an ONNX model with FakeQuantize nodes of the org.openvinotoolkit domain.

The optional output, for OpenVINO, which reads FakeQuantize(X, input_low,
input_high, output_low, output_high; levels) from ONNX and chooses the integer
kernels itself (onnxruntime has no FakeQuantize kernel and refuses such a
file). The same consumer rewiring as the QDQ output: the consumers a point lists
(every consumer for an ``at_output`` point) read the quantized value, the others
keep reading float, and a graph output keeps its float value.

Activations get a FakeQuantize. A weight (a planned initializer) is stored in
the compressed form OpenVINO's own tools write and its low-precision
transformations read as an already quantized weight: an integer constant, then
``Cast`` to the weight's float type, ``Sub`` of the zero point (only when some
channel's zero point is not 0) and ``Mul`` by the scale. The integers are the
QDQ output's (int8/uint8 for up to 256 levels, 4-bit grids widened to 8 bits,
16-bit grids in 16 bits), so the file is as small as the QDQ one, and the
decompressed values are exactly the FakeQuantize of the float weight. A weight
with no integer form (float zero off its grid, more than 2^16 levels, a float
type other than float32/float16) keeps a FakeQuantize on its float values, and
its report entry says why.

Every node added carries the ``rewriter.source`` metadata of the QDQ output: the
decision of the plan point it carries out. The plan's requantized outputs and
int32 biases are QDQ storage details: OpenVINO makes those choices itself when
it compiles a FakeQuantize model.

The bounds, scales and zero points are initializers (``<tensor>_input_low``,
``<tensor>_input_high`` used for the output range too, as the ranges define
output = input range; ``<tensor>_scale``, ``<tensor>_zero_point``), shaped to
broadcast along the channel axis: ``()`` per tensor, ``[1, C, 1, 1]`` for
channel axis 1 of a rank-4 tensor.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rewriter.algorithms.fq_math import qdq_params
from rewriter.algorithms.types import TensorRange
from rewriter.emit.graph_edit import GraphEdit, stamp
from rewriter.emit.qdq import EmitResult, EmittedTensor, _note_kept_floats
from rewriter.emit.qdq import _entry as _stored_entry
from rewriter.emit.qdq_params import (QDQ_FLOAT_TYPES, _QParams, _in_float_type, _int_tensor, _params_for,
                                      _quantize_constant, _stored_bytes)
from rewriter.ir.tensors import tensor_array
from rewriter.plan import FakeQuantizePoint, QuantPlan, source_of

__all__ = ["FQ_DOMAIN", "FQ_DOMAIN_VERSION", "emit_fakequantize"]

FQ_DOMAIN = "org.openvinotoolkit"
FQ_DOMAIN_VERSION = 1

# The integer type a compressed weight is stored in, by the narrowest type its levels fit: 4-bit grids in 8 bits
# (plain int8/uint8 constants, which every OpenVINO release reads from ONNX).
_WEIGHT_STORAGE = {"int4": "int8", "uint4": "uint8", "int8": "int8", "uint8": "uint8", "int16": "int16",
                   "uint16": "uint16"}
# float16 holds every integer up to 2^11 exactly: the Cast and Sub of an 8-bit grid are exact in it, a 16-bit
# grid's are not.
_FLOAT16_STORAGE = ("int8", "uint8")


def emit_fakequantize(model: onnx.ModelProto, plan: QuantPlan, ranges: Mapping[str, TensorRange]) -> EmitResult:
    """Emit the plan as org.openvinotoolkit FakeQuantize nodes and compressed weights.

    Args:
        model: the (normalized) float model the plan was made for; not modified.
        plan: what to quantize and which consumers read the quantized values.
        ranges: the FakeQuantize parameters of every planned tensor, by tensor name.

    Returns:
        The model with FakeQuantize nodes, compressed weights and the
        org.openvinotoolkit opset import, and a report entry per point
        (activations: storage "float32", with the scale and zero point an
        integer runtime would use; compressed weights: their integer type and
        bytes before and after).

    Raises:
        ValueError: the plan and the model or the ranges disagree, or a
            per-channel tensor's rank is unknown.
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    _import_domain(copy)
    edit = GraphEdit(copy, original=model)
    report = []
    for point in plan.points:
        if point.tensor not in ranges:
            raise ValueError(f"no range for planned tensor {point.tensor!r}; run the range passes first")
        report.append(_emit_point(edit, point, ranges[point.tensor]))
    edit.finish()
    return EmitResult(edit.model, tuple(_note_kept_floats(report, edit)))


def _import_domain(model: onnx.ModelProto) -> None:
    if not any(o.domain == FQ_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(FQ_DOMAIN, FQ_DOMAIN_VERSION))


def _emit_point(edit: GraphEdit, point: FakeQuantizePoint, rng: TensorRange) -> EmittedTensor:
    if not edit.tensor_exists(point.tensor):
        raise ValueError(f"the plan quantizes {point.tensor!r}, which the model does not have")
    readers = edit.point_readers(point)
    axis = rng.axis if rng.axis is not None else point.channel_axis
    entry = _entry(point, rng, axis, readers)
    if not readers:
        return replace(entry, note="graph output only; left float")
    if point.tensor in edit.inits:
        params, why_float = _compressed_params(edit, point, rng)
        if params is not None:
            return _emit_compressed_weight(edit, point, params, readers)
        entry = replace(entry, note=f"float weight with a FakeQuantize: {why_float}")
    tensor = point.tensor
    low, high = _bounds(edit, tensor, rng, axis)
    il = edit.add_initializer(numpy_helper.from_array(low, edit.unique(f"{tensor}_input_low")))
    ih = edit.add_initializer(numpy_helper.from_array(high, edit.unique(f"{tensor}_input_high")))
    out = edit.unique(f"{tensor}_fakequantized")
    node = stamp(helper.make_node("FakeQuantize", [tensor, il, ih, il, ih], [out],
                                  name=edit.unique(f"{tensor}_FakeQuantize"), domain=FQ_DOMAIN,
                                  levels=int(rng.levels)), source_of(point.trail))
    if tensor in edit.inits:
        edit.insert_before(readers[0][0], [node])
    else:
        edit.insert_after_producer(tensor, [node])
    for reader, port in readers:
        edit.rewire(reader, port, tensor, out)
    return entry


def _compressed_params(edit: GraphEdit, point: FakeQuantizePoint,
                       rng: TensorRange) -> tuple[_QParams | None, str]:
    """The integer form of a planned constant, or None and why it has none."""
    float_type = edit.inits[point.tensor].data_type
    if float_type not in QDQ_FLOAT_TYPES:
        return None, f"a {onnx.TensorProto.DataType.Name(float_type).lower()} constant has no compressed form here"
    try:
        params = _params_for(point, rng, constant=True, signed_activations=False)
    except ValueError as e:
        return None, f"no integer form: {e}"
    dtype = _WEIGHT_STORAGE.get(params.dtype)
    if dtype is None:
        return None, f"{rng.levels} levels: no integer type up to 16 bits holds them"
    if float_type == onnx.TensorProto.FLOAT16 and dtype not in _FLOAT16_STORAGE:
        return None, f"{rng.levels} levels do not convert to float16 exactly"
    return _in_float_type(replace(params, dtype=dtype), float_type), ""


def _emit_compressed_weight(edit: GraphEdit, point: FakeQuantizePoint, params: _QParams,
                            readers: list[tuple[onnx.NodeProto, int]]) -> EmittedTensor:
    """integer constant -> Cast -> (Sub zero point) -> Mul scale, read by the point's consumers."""
    tensor = point.tensor
    w = tensor_array(edit.inits[tensor])
    if params.axis is not None and not -w.ndim <= params.axis < w.ndim:
        raise ValueError(f"channel axis {params.axis} is out of range for weight {tensor!r} of rank {w.ndim}")
    source = source_of(point.trail)
    stored = edit.add_initializer(_int_tensor(_quantize_constant(w, params), params.dtype,
                                              edit.unique(f"{tensor}_quantized")))
    shape = _broadcast_shape(w.ndim, params.axis, params.scale.size)
    value = edit.unique(f"{tensor}_converted")
    nodes = [helper.make_node("Cast", [stored], [value], name=edit.unique(f"{tensor}_Cast"),
                              to=params.float_type)]
    zero_point_bytes = 0
    if np.any(params.zero_point != 0):
        zero_point: np.ndarray = params.zero_point.astype(params.float_numpy).reshape(shape)
        zp = edit.add_initializer(numpy_helper.from_array(zero_point, edit.unique(f"{tensor}_zero_point")))
        shifted = edit.unique(f"{tensor}_shifted")
        nodes.append(helper.make_node("Sub", [value, zp], [shifted], name=edit.unique(f"{tensor}_Sub")))
        value, zero_point_bytes = shifted, zero_point.nbytes
    scale: np.ndarray = params.scale.astype(params.float_numpy).reshape(shape)
    scale_name = edit.add_initializer(numpy_helper.from_array(scale, edit.unique(f"{tensor}_scale")))
    dequantized = edit.unique(f"{tensor}_dequantized")
    nodes.append(helper.make_node("Mul", [value, scale_name], [dequantized], name=edit.unique(f"{tensor}_Mul")))
    edit.insert_before(readers[0][0], [stamp(n, source) for n in nodes])
    for node, port in readers:
        edit.rewire(node, port, tensor, dequantized)
    before = w.size * w.dtype.itemsize
    after = _stored_bytes(w.size, params.dtype) + scale.nbytes + zero_point_bytes
    return _stored_entry(tensor, point.role, params, readers, before, after, clipped=False)


def _broadcast_shape(rank: int, axis: int | None, channels: int) -> tuple[int, ...]:
    """() per tensor; ``channels`` along ``axis`` and 1 elsewhere per channel."""
    if axis is None:
        return ()
    shape = [1] * rank
    shape[axis % rank] = channels
    return tuple(shape)


def _bounds(edit: GraphEdit, tensor: str, rng: TensorRange, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """input_low/input_high as arrays that broadcast against the tensor along ``axis``."""
    dtype = np.float16 if edit.elem_type(tensor) == onnx.TensorProto.FLOAT16 else np.float32
    low, high = np.asarray(rng.input_low, dtype), np.asarray(rng.input_high, dtype)
    if low.ndim == 0 and high.ndim == 0:
        return low, high
    rank = edit.rank(tensor)
    if axis is None or rank is None:
        raise ValueError(f"per-channel range of {tensor!r} needs its channel axis and rank "
                         f"(axis {axis}, rank {rank})")
    low, high = np.broadcast_arrays(low, high)
    shape = [1] * rank
    shape[axis % rank] = -1
    return np.ascontiguousarray(low.reshape(shape)), np.ascontiguousarray(high.reshape(shape))


def _entry(point: FakeQuantizePoint, rng: TensorRange, axis: int | None,
           readers: list[tuple[onnx.NodeProto, int]]) -> EmittedTensor:
    signed = rng.level_low < 0
    note = ""
    try:
        scale, zero_point, qmin, qmax = qdq_params(rng.input_low, rng.input_high, rng.levels, storage_signed=signed)
    except ValueError as e:
        # FakeQuantize takes any range; only the integer form needs float zero on a level.
        scale = (np.asarray(rng.input_high, np.float64) - rng.input_low) / (rng.levels - 1)
        zero_point, qmin, qmax = np.zeros(0, np.int64), rng.level_low, rng.level_high
        note = f"no integer form: {e}"
    per_channel = np.ndim(rng.input_low) > 0 or np.ndim(rng.input_high) > 0
    return EmittedTensor(
        tensor=point.tensor, role=point.role, storage_dtype="float32",
        scale=tuple(float(v) for v in np.ravel(scale)), zero_point=tuple(int(v) for v in np.ravel(zero_point)),
        axis=axis if per_channel else None, levels=rng.levels, qmin=int(qmin), qmax=int(qmax),
        input_low=tuple(float(v) for v in np.ravel(rng.input_low)),
        input_high=tuple(float(v) for v in np.ravel(rng.input_high)),
        consumers=tuple(f"{n.name}:{p}" for n, p in readers), note=note)
