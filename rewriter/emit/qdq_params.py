"""QDQ parameters: what a planned tensor is stored as, and the integer values stored.

From a FakeQuantize range to the QuantizeLinear/DequantizeLinear parameters
(scale, zero point, level range and storage type), the default-domain opset
those parameters need (and the conversion of a model to it), and the integer
form of constants: quantized weights, int32 bias scales, Clip bounds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rewriter.algorithms.fq_math import STORAGE_RANGES, fake_quantize, qdq_params, storage_dtype_for
from rewriter.algorithms.types import TensorRange
from rewriter.errors import UserError
from rewriter.ir.layers import DEFAULT_DOMAINS
from rewriter.ir.opset import convert_opset
from rewriter.ir.tensors import slicing_axis
from rewriter.plan import FakeQuantizePoint

__all__ = ["default_opset"]

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
# QuantizeLinear/DequantizeLinear read and write float16 only from opset 19 on (float32 before): a float16
# tensor's pair carries a float16 scale, so DequantizeLinear gives back the type its readers expect.
_OPSET_FLOAT16 = 19
#: Float element types a QDQ pair can carry (numpy type of its scale). No QuantizeLinear takes double; opset 19
#: lets it take bfloat16, but onnxruntime's CPU provider has no bfloat16 QuantizeLinear, convolution or matrix
#: product, so such a model is refused instead of written broken.
QDQ_FLOAT_TYPES: dict[int, type[np.floating]] = {onnx.TensorProto.FLOAT: np.float32,
                                                 onnx.TensorProto.FLOAT16: np.float16}


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
    float_type: int = onnx.TensorProto.FLOAT  # the quantized tensor's element type: its scale's and DQ output's

    @property
    def float_numpy(self) -> type:
        """The numpy type the scale is stored in (the tensor's own float type)."""
        return QDQ_FLOAT_TYPES[self.float_type]

    @property
    def clip_needed(self) -> bool:
        """True when QuantizeLinear's saturation (the storage range) is wider than the levels."""
        return (self.qmin, self.qmax) != STORAGE_RANGES[self.dtype]

    def same_grid(self, other: _QParams) -> bool:
        """Same scale, zero point and level range: values on one are on the other."""
        return (self.dtype == other.dtype and self.axis == other.axis and self.qmin == other.qmin
                and self.qmax == other.qmax and np.array_equal(self.scale, other.scale)
                and np.array_equal(self.zero_point, other.zero_point))


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


def float_types(model: onnx.ModelProto, tensors: Iterable[str]) -> dict[str, int]:
    """The ONNX element type of each of ``tensors`` the main graph records (float32 assumed for the rest)."""
    g = model.graph
    known = {vi.name: vi.type.tensor_type.elem_type for vi in (*g.value_info, *g.output, *g.input)
             if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type}
    known.update({t.name: t.data_type for t in g.initializer})
    return {name: known.get(name, onnx.TensorProto.FLOAT) for name in tensors}


def check_qdq_float_types(model: onnx.ModelProto, tensors: Iterable[str]) -> None:
    """Refuse a plan that would put a QDQ pair on a tensor no QDQ pair can carry (bfloat16, double).

    Raises:
        UserError: naming the first such tensor, its type and what to do.
    """
    for name, elem in float_types(model, tensors).items():
        if elem not in QDQ_FLOAT_TYPES:
            kind = onnx.TensorProto.DataType.Name(elem).lower()
            raise UserError(
                f"tensor {name!r} is {kind}: QuantizeLinear/DequantizeLinear take float32 or float16 tensors "
                f"only, so no quantized form of it would load; convert the model to float32 (or float16) first, "
                f"or keep the nodes reading it float with --ignore-scope")


def _in_float_type(params: _QParams, float_type: int) -> _QParams:
    """``params`` for a tensor of ``float_type``: a float16 tensor's scale rounded to float16 (never to zero),
    so the stored integers are computed with the very scale DequantizeLinear multiplies by."""
    if float_type == onnx.TensorProto.FLOAT:
        return params
    tiny = np.float16(np.finfo(np.float16).smallest_subnormal)
    scale = np.maximum(params.scale.astype(np.float16), tiny).astype(np.float32)
    return replace(params, scale=scale, float_type=float_type)


def _required_opset(params: Iterable[tuple[_QParams, bool]]) -> int:
    """The default-domain opset the emitted nodes need, from (parameters, is a stored constant) pairs."""
    needed = _OPSET_QDQ
    for q, constant in params:
        # Constants are stored within qmin..qmax and need no Clip; activations may.
        if q.axis is not None or (q.clip_needed and not constant):
            needed = max(needed, _OPSET_PER_CHANNEL)
        needed = max(needed, _OPSET_FOR_DTYPE.get(q.dtype, _OPSET_QDQ))
        if q.float_type != onnx.TensorProto.FLOAT:
            needed = max(needed, _OPSET_FLOAT16)
    return needed


def default_opset(model: onnx.ModelProto) -> int:
    """The model's default-domain opset version."""
    return max((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), default=1)


def _with_opset(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
    """A copy of ``model`` at default-domain opset >= ``target`` (converted when older)."""
    current = default_opset(model)
    if current >= target:
        out = onnx.ModelProto()
        out.CopyFrom(model)
        return out
    try:
        out = convert_opset(model, target)
    except Exception as e:  # the converter raises bare RuntimeErrors from C++
        raise UserError(
            f"the model is at opset {current} and its quantized form needs opset {target} "
            f"(per-channel scales need 13, float16 tensors 19, 4/16-bit storage 21), but onnx's version converter "
            f"failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}; "
            f"re-export the model at opset {target} or newer") from None
    # The converter leaves the IR version alone; an old IR with a new opset is refused by runtimes.
    out.ir_version = max(out.ir_version, helper.find_min_ir_version_for(list(out.opset_import)))
    return out


def _int_tensor(values: np.ndarray, dtype: str, name: str) -> onnx.TensorProto:
    """An integer initializer of a storage type (4-bit types packed two per byte by onnx)."""
    np_dtype = helper.tensor_dtype_to_np_dtype(_ONNX_DTYPE[dtype])
    return numpy_helper.from_array(np.asarray(values).astype(np_dtype, copy=False), name)


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
        # tensor took 400 MB. The slices go into an array of the smallest type holding the levels:
        # int64 slices joined would make a result twice the size of a float32 weight.
        out = np.empty(w.shape, _holding(params.qmin, params.qmax))
        step = max(1, _CHUNK_VALUES // (w.size // w.shape[along]))
        for start in range(0, w.shape[along], step):
            index = (slice(None),) * along + (slice(start, start + step),)
            out[index] = _quantize_constant(w[index], params)
        return out
    fq = fake_quantize(w, params.input_low, params.input_high, params.levels, axis=params.axis)
    scale = _broadcast(params.scale, w.ndim, params.axis).astype(np.float64)
    zero_point = _broadcast(params.zero_point, w.ndim, params.axis)
    q = np.rint(fq.astype(np.float64) / scale).astype(np.int64) + zero_point
    return np.clip(q, params.qmin, params.qmax)


_CHUNK_VALUES = 1 << 20


def _holding(low: int, high: int) -> np.dtype:
    """The smallest integer type that holds every value in [low, high]."""
    for candidate in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32):
        info = np.iinfo(candidate)
        if info.min <= low and high <= info.max:
            return np.dtype(candidate)
    return np.dtype(np.int64)


def _broadcast(values: np.ndarray, ndim: int, axis: int | None) -> np.ndarray:
    if axis is None or values.ndim == 0:
        return values
    shape = [1] * ndim
    shape[axis % ndim] = values.shape[0]
    return values.reshape(shape)


def _float_clip_bounds(params: _QParams) -> tuple[np.ndarray, np.ndarray]:
    """The float values of levels qmin and qmax: QuantizeLinear rounds them back exactly."""
    low: np.ndarray = ((params.qmin - params.zero_point) * params.scale.astype(np.float64)).astype(params.float_numpy)
    high: np.ndarray = ((params.qmax - params.zero_point) * params.scale.astype(np.float64)).astype(params.float_numpy)
    if params.axis is not None:
        # Clip takes one bound for all channels; no target asks for per-channel 16-bit activations.
        raise ValueError("per-channel activations with fewer levels than their 16-bit storage are not supported")
    return np.asarray(low), np.asarray(high)


def _bias_scale(node: onnx.NodeProto, bias: np.ndarray, x: _QParams, w: _QParams) -> np.ndarray | None:
    """activation scale x weight scale, per output channel of ``node``; None when the values cannot take it.

    Which layers get an int32 bias, and that their weight's channel axis is the output axis, is the plan's
    decision (rules/integer_kernels.rules, rewriter.match.integer_chain); here only what the numbers allow:
    a 1-D float bias, one activation scale, and a weight scale per tensor or one per bias value.
    """
    if bias.ndim != 1 or x.axis is not None or not np.issubdtype(bias.dtype, np.floating):
        return None
    if w.axis is None:
        weight_scale = w.scale  # one scale: a per-tensor bias, no axis (fits any opset)
    elif w.scale.shape == bias.shape:
        weight_scale = w.scale
    else:
        return None
    # float32 product: the value onnxruntime computes for the fused kernel's bias scale.
    scale = (np.float32(x.scale) * weight_scale).astype(np.float32)
    return scale if np.all(scale > 0) else None
