"""QDQ form: the QuantizeLinear/DequantizeLinear parameters equivalent to a FakeQuantize range,
and the integer storage types that hold them.
"""
from __future__ import annotations

import numpy as np

from rewriter.algorithms.fq_math.grid import check_levels, zero_level
from rewriter.algorithms.fq_math.ranges import finite_stat

__all__ = ["STORAGE_RANGES", "qdq_params", "storage_dtype_for"]

#: Integer ranges of the storage types QuantizeLinear/DequantizeLinear may use.
STORAGE_RANGES: dict[str, tuple[int, int]] = {
    "int4": (-8, 7),
    "uint4": (0, 15),
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-32768, 32767),
    "uint16": (0, 65535),
    "int32": (-(2**31), 2**31 - 1),
}


def storage_dtype_for(level_low: int, level_high: int) -> str:
    """The narrowest storage type holding the integer range ``[level_low, level_high]``.

    Pass the ``qmin, qmax`` of ``qdq_params`` (the zero point is in that range
    by construction). At equal width a range with ``level_low >= 0`` prefers the
    unsigned type.

    ============================  =======  ==========================================
    range                         dtype    typical use
    ============================  =======  ==========================================
    within [-8, 7], low < 0       int4     2..4-bit signed weights (opset 21)
    within [0, 15]                uint4    2..4-bit unsigned (opset 21)
    within [-128, 127], low < 0   int8     8-bit weights, signed activations
    within [0, 255]               uint8    unsigned / asymmetric activations
    within [-2^15, 2^15-1]        int16    GNA 16-bit (opset 21)
    within [0, 65535]             uint16   16-bit unsigned (opset 21)
    within [-2^31, 2^31-1]        int32    32-bit (DequantizeLinear only in ONNX)
    ============================  =======  ==========================================

    Example:
        >>> storage_dtype_for(-7, 7), storage_dtype_for(0, 255), storage_dtype_for(-127, 127)
        ('int4', 'uint8', 'int8')
    """
    lo, hi = int(level_low), int(level_high)
    if lo > hi:
        raise ValueError(f"level_low ({lo}) must not exceed level_high ({hi})")
    order = ("uint4", "int4", "uint8", "int8", "uint16", "int16") if lo >= 0 else ("int4", "int8", "int16")
    for name in order + ("int32",):
        smin, smax = STORAGE_RANGES[name]
        if smin <= lo and hi <= smax:
            return name
    raise ValueError(f"no storage type holds the level range [{lo}, {hi}]")


def qdq_params(
    input_low: np.ndarray | float,
    input_high: np.ndarray | float,
    levels: int,
    storage_signed: bool,
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """QuantizeLinear/DequantizeLinear parameters equivalent to a FakeQuantize range.

    ``scale = float32((ih - il) / (levels - 1))``; the grid index of float zero
    is ``z = round(-il * (levels - 1) / (ih - il))`` (= ``round(-il / scale)``);
    the storage value of grid level ``k`` is ``k - offset`` with offset 0 for
    unsigned storage and ``levels // 2`` for signed storage. Hence:

    ====================================  ======  ====  ============  ======
    range (8 bits)                        levels  zp    qmin..qmax    dtype
    ====================================  ======  ====  ============  ======
    weights [-m, m]                       255     0     -127..127     int8
    signed activations [-128/127 m, m]    256     0     -128..127     int8
    unsigned activations [0, m]           256     0     0..255        uint8
    asymmetric [lo, hi], unsigned store   256     z     0..255        uint8
    4-bit weights [-m, m]                 15      0     -7..7         int4
    ====================================  ======  ====  ============  ======

    ``qmin``/``qmax`` bound the level range in storage units. When they are
    narrower than the storage type actually emitted (4-bit levels in int8, or
    255 levels in int8), the emitter must clip -- e.g. clamp the float input to
    ``[il, ih]`` before QuantizeLinear -- or QuantizeLinear saturates at the
    storage limits instead of the level limits. With that, the QDQ pair gives
    exactly ``fake_quantize``'s output (see its docstring).

    Returns:
        ``(scale float32, zero_point int64, qmin, qmax)``; scale and zero point
        have the bounds' shape.

    Raises:
        ValueError: on non-finite bounds, ``ih <= il``, or a range whose float
            zero is not on a grid level (use ``symmetric_range``/``asymmetric_range``).

    Example:
        >>> s, zp, qmin, qmax = qdq_params(np.float32(-1.0), np.float32(1.0), 255, storage_signed=True)
        >>> float(s), int(zp), qmin, qmax
        (0.007874015718698502, 0, -127, 127)
    """
    levels = check_levels(levels)
    steps = levels - 1
    il = finite_stat(input_low, "input_low")
    ih = finite_stat(input_high, "input_high")
    il, ih = np.broadcast_arrays(il, ih)
    if np.any(ih <= il):
        raise ValueError("input_high must exceed input_low in every channel")
    scale = ((ih - il) / steps).astype(np.float32)
    if np.any(scale == 0) or not np.isfinite(scale).all():
        raise ValueError("the range is too narrow or too wide for a float32 scale")
    z, on_grid = zero_level(il, ih, steps)
    if not on_grid.all():
        raise ValueError(
            "float zero is not on a grid level of this range, so a QDQ pair cannot represent it; "
            "compute the range with symmetric_range/asymmetric_range"
        )
    offset = levels // 2 if storage_signed else 0
    zero_point = (z - offset).astype(np.int64)
    return np.asarray(scale), np.asarray(zero_point), -offset, steps - offset
