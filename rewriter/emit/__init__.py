"""Emission: plan + ranges -> a quantized ONNX model.

``emit_qdq`` writes standard QuantizeLinear/DequantizeLinear (the default, for
onnxruntime); ``emit_fakequantize`` writes FakeQuantize nodes of the
org.openvinotoolkit domain on activations and compressed integer weights (for
OpenVINO only: onnxruntime cannot load them). Both return an ``EmitResult``: the
model and what was emitted per tensor. ``rewriter.emit.ort_check`` shows what
onnxruntime fuses.
"""
from __future__ import annotations

from rewriter.emit.fakequantize import emit_fakequantize
from rewriter.emit.qdq import EmitResult, EmittedTensor, emit_qdq

__all__ = ["EmitResult", "EmittedTensor", "emit_fakequantize", "emit_qdq"]
