"""Plan + ranges -> an ONNX model with FakeQuantize nodes of the org.openvinotoolkit domain.

The optional output, for OpenVINO, which reads FakeQuantize(X, input_low,
input_high, output_low, output_high; levels) from ONNX and chooses the integer
kernels itself. The same consumer rewiring as the QDQ output: the consumers a
point lists (every consumer for an ``at_output`` point) read the FakeQuantize
output, the others keep reading float, and a graph output keeps its float
value. Weights stay float: OpenVINO compresses them when it compiles the model.
Each FakeQuantize carries the ``rewriter.source`` metadata of the QDQ output. The
plan's requantized outputs and int32 biases are QDQ storage details: OpenVINO
makes those choices itself when it compiles a FakeQuantize model.

The bounds are initializers (``<tensor>_input_low``, ``<tensor>_input_high``,
used for the output range too, as the ranges define output = input range),
shaped to broadcast along the channel axis: ``()`` per tensor,
``[1, C, 1, 1]`` for channel axis 1 of a rank-4 tensor.
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
from rewriter.emit.qdq import EmitResult, EmittedTensor
from rewriter.plan import FakeQuantizePoint, QuantPlan, source_of

__all__ = ["FQ_DOMAIN", "FQ_DOMAIN_VERSION", "emit_fakequantize"]

FQ_DOMAIN = "org.openvinotoolkit"
FQ_DOMAIN_VERSION = 1


def emit_fakequantize(model: onnx.ModelProto, plan: QuantPlan, ranges: Mapping[str, TensorRange]) -> EmitResult:
    """Emit the plan as org.openvinotoolkit FakeQuantize nodes.

    Args:
        model: the (normalized) float model the plan was made for; not modified.
        plan: what to quantize and which consumers read the quantized values.
        ranges: the FakeQuantize parameters of every planned tensor, by tensor name.

    Returns:
        The model with FakeQuantize nodes and the org.openvinotoolkit opset
        import, and a report entry per point (storage "float32"; scale and zero
        point are those an integer runtime would use).

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
    return EmitResult(edit.model, tuple(report))


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
