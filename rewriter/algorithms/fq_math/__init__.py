"""Quantization math: level grids, FakeQuantize, range formulas and QDQ parameters.

Three modules, one job each, all re-exported here: ``grid`` (integer level
grids and the FakeQuantize formula), ``ranges`` (statistics to FakeQuantize
ranges whose zero is a grid level) and ``qdq`` (the equivalent
QuantizeLinear/DequantizeLinear parameters and storage types).

Pure numpy, pure functions. Statistics and bounds are arrays of shape ``()``
(per tensor) or ``(C,)`` (per channel); range functions return float32 arrays of
the same shape. The formulas are those of docs "Quantization math" in
design.md and of the original tool (POT) as recorded in pot-facts.md, section d.
Where we deliberately differ from POT the docstring says so.

The one invariant everything here protects: **float zero is exactly a grid
level** of every range we compute, so zero padding, ReLU zeros and zero bias
terms are quantized without error, and ``fake_quantize(0) == 0`` exactly.

Example:
    >>> import numpy as np
    >>> lo, hi = symmetric_range(np.float32(-1.0), np.float32(3.7624), 256, "activation")
    >>> round(float(lo), 5), round(float(hi), 5)   # the 128/127 ratio of signed 8-bit activations
    (-3.79203, 3.7624)
    >>> scale, zp, qmin, qmax = qdq_params(lo, hi, 256, storage_signed=True)
    >>> int(zp), qmin, qmax, storage_dtype_for(qmin, qmax)
    (0, -128, 127, 'int8')
    >>> float(fake_quantize(np.float32(0.0), lo, hi, 256))
    0.0
"""
from __future__ import annotations

from rewriter.algorithms.fq_math.grid import fake_quantize, level_bounds
from rewriter.algorithms.fq_math.qdq import STORAGE_RANGES, qdq_params, storage_dtype_for
from rewriter.algorithms.fq_math.ranges import (
    ZERO_FILTER_EPS_ASYMMETRIC,
    ZERO_FILTER_EPS_SYMMETRIC,
    ZERO_FILTER_RATIO,
    asymmetric_range,
    fix_zero_filters_asymmetric,
    fix_zero_filters_symmetric,
    symmetric_range,
    tune_range,
    tune_range_unified_zp,
)
from rewriter.levels import normalize_role

__all__ = [
    "STORAGE_RANGES",
    "ZERO_FILTER_EPS_ASYMMETRIC",
    "ZERO_FILTER_EPS_SYMMETRIC",
    "ZERO_FILTER_RATIO",
    "asymmetric_range",
    "fake_quantize",
    "fix_zero_filters_asymmetric",
    "fix_zero_filters_symmetric",
    "level_bounds",
    "normalize_role",
    "qdq_params",
    "storage_dtype_for",
    "symmetric_range",
    "tune_range",
    "tune_range_unified_zp",
]
