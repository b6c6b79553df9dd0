"""qdq_params + fake_quantize against onnxruntime's QuantizeLinear -> DequantizeLinear.

For each case we compute a range with our range functions, turn it into QDQ
parameters, run a two-node ONNX model in onnxruntime and demand the SAME
float32 bits as fake_quantize. Exactness is expected, not approximate: for a
range with zero on the grid, fake_quantize returns (k - z) * float32(scale),
and DequantizeLinear computes (q - zero_point) * scale in float32 with q - zp =
k - z, i.e. the same single rounded multiply.

Inputs are levels plus offsets of at most 0.45 of a step (and points beyond
the range): off the rounding ties, where ``round(x / scale) + zp`` and
``round((x - il) / (ih - il) * (levels - 1))`` cannot pick different levels.
When the level range is narrower than the storage type (255 levels in int8,
4 bits in int8, 2-3 bits in int4), the model clamps the float input to
[input_low, input_high] first, as qdq_params' docstring asks an emitter to do.
"""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from rewriter.algorithms import fq_math as fq  # noqa: E402

_TENSOR_TYPES = {
    "int4": TensorProto.INT4, "uint4": TensorProto.UINT4, "int8": TensorProto.INT8,
    "uint8": TensorProto.UINT8, "int16": TensorProto.INT16, "uint16": TensorProto.UINT16,
}
# QuantizeLinear supports int16/uint16 and int4/uint4 from opset 21; 8-bit from 10
# (per-channel `axis` from 13).
_OPSET = {"int4": 21, "uint4": 21, "int16": 21, "uint16": 21, "int8": 13, "uint8": 13}

C = 3          # channels on axis 1 of x: (N, C, S)
S = 40


def _qdq_model(il, ih, scale, zp, dtype: str, per_channel: bool, clip: bool) -> bytes:
    shape_c = [C] if per_channel else []
    bshape = [1, C, 1] if per_channel else []
    inits = [
        helper.make_tensor("scale", TensorProto.FLOAT, shape_c, np.ravel(scale).astype(np.float32).tolist()),
        helper.make_tensor("zp", _TENSOR_TYPES[dtype], shape_c, np.ravel(zp).astype(int).tolist()),
        helper.make_tensor("lo", TensorProto.FLOAT, bshape, np.ravel(il).astype(np.float32).tolist()),
        helper.make_tensor("hi", TensorProto.FLOAT, bshape, np.ravel(ih).astype(np.float32).tolist()),
    ]
    attrs = {"axis": 1} if per_channel else {}
    nodes = []
    source = "x"
    if clip:
        # Max/Min rather than Clip: Clip's bounds must be scalars, ours may be per channel.
        nodes += [helper.make_node("Max", ["x", "lo"], ["x_lo"]), helper.make_node("Min", ["x_lo", "hi"], ["x_c"])]
        source = "x_c"
    nodes += [
        helper.make_node("QuantizeLinear", [source, "scale", "zp"], ["q"], **attrs),
        helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["y"], **attrs),
    ]
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, C, S])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, C, S])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET[dtype])])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _inputs(il: np.ndarray, ih: np.ndarray, levels: int, rng: np.random.Generator) -> np.ndarray:
    """(2, C, S) float32: levels + offsets in [-0.45, 0.45] steps, bounds, zero, and beyond the range."""
    il = np.broadcast_to(np.asarray(il, np.float64), (C,))
    ih = np.broadcast_to(np.asarray(ih, np.float64), (C,))
    steps = levels - 1
    x = np.empty((2, C, S))
    for c in range(C):
        step = (ih[c] - il[c]) / steps
        k = rng.integers(0, levels, size=2 * S)
        u = rng.uniform(-0.45, 0.45, size=2 * S)
        vals = il[c] + (k + u) * step
        vals[:6] = [il[c], ih[c], 0.0, il[c] - 7 * step, ih[c] + 7 * step, ih[c] * 10 + 1]
        x[:, c] = vals.reshape(2, S)
    return x.astype(np.float32)


def _stats(mode: str, role: str, signed: bool | None, rng: np.random.Generator, per_channel: bool):
    shape = (C,) if per_channel else ()
    hi = rng.uniform(0.05, 6.0, size=shape)
    if signed is False:
        lo = rng.uniform(0.0, 0.5, size=shape) * hi
    else:
        lo = -rng.uniform(0.05, 6.0, size=shape)
    return lo, hi


CASES = [
    # (bits, mode, role, signed, storage dtype)
    (8, "symmetric", "weight", None, "int8"),           # 255 levels in int8: needs the clamp
    (8, "symmetric", "activation", True, "int8"),       # the 128/127 range, zp 0
    (8, "symmetric", "activation", False, "uint8"),     # [0, m], zp 0
    (8, "asymmetric", "activation", None, "uint8"),
    (8, "asymmetric", "weight", None, "int8"),
    (4, "symmetric", "weight", None, "int8"),           # 4-bit levels in 8-bit storage: clamp
    (16, "symmetric", "activation", True, "int16"),
    (16, "symmetric", "weight", None, "int16"),         # 65535 levels: clamp
    (16, "asymmetric", "activation", None, "uint16"),
    (4, "symmetric", "weight", None, "int4"),
    (4, "symmetric", "activation", True, "int4"),
    (4, "asymmetric", "activation", None, "uint4"),
    (3, "asymmetric", "weight", None, "int4"),          # 8 levels in int4: clamp
    (2, "symmetric", "weight", None, "int4"),           # 3 levels
]


def _supported(dtype: str) -> bool:
    """Whether this onnxruntime runs QuantizeLinear/DequantizeLinear with this storage type."""
    try:
        model = _qdq_model(np.float32(-1), np.float32(1), np.float32(0.5), np.int64(0), dtype, False, False)
        ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        return True
    except Exception:  # noqa: BLE001 -- any load failure means "not supported here"
        return False


@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
@pytest.mark.parametrize("bits, mode, role, signed, dtype", CASES,
                         ids=[f"{c[0]}b-{c[1][:4]}-{c[2][:3]}-{c[4]}" for c in CASES])
def test_qdq_in_onnxruntime_equals_fake_quantize(bits, mode, role, signed, dtype, per_channel):
    if not _supported(dtype):
        pytest.skip(f"onnxruntime {ort.__version__} cannot run QuantizeLinear with {dtype} storage")
    rng = np.random.default_rng(bits * 100 + len(dtype) + per_channel)
    _, _, levels = fq.level_bounds(bits, mode, role, signed)
    lo, hi = _stats(mode, role, signed, rng, per_channel)
    if mode == "symmetric":
        il, ih = fq.symmetric_range(lo, np.maximum(np.abs(lo), hi), levels, role, signed=signed)
    else:
        il, ih = fq.asymmetric_range(lo, hi, levels)
    storage_signed = dtype.startswith("int")
    scale, zp, qmin, qmax = fq.qdq_params(il, ih, levels, storage_signed)
    smin, smax = fq.STORAGE_RANGES[dtype]
    assert smin <= qmin and qmax <= smax
    assert fq.storage_dtype_for(qmin, qmax) in (dtype, "int4", "uint4")
    clip = (qmin, qmax) != (smin, smax)

    x = _inputs(il, ih, levels, rng)
    session = ort.InferenceSession(_qdq_model(il, ih, scale, zp, dtype, per_channel, clip),
                                   providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": x})
    expected = fq.fake_quantize(x, il, ih, levels, axis=1 if per_channel else None)
    assert y.dtype == expected.dtype == np.float32
    mismatch = np.flatnonzero(y != expected)
    assert mismatch.size == 0, (x.ravel()[mismatch[:5]], y.ravel()[mismatch[:5]], expected.ravel()[mismatch[:5]])
    # Zero is exact both ways.
    assert np.all(expected[x == 0] == 0) and np.all(y[x == 0] == 0)

