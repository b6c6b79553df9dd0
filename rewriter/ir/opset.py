"""Raising a model's default-domain opset with onnx's version converter, without copying its weights through it.

The converter serializes the whole model into C++, rebuilds it, and parses it
back: on a model of 54 MB of weights that is about 0.3 s, nearly all of it
spent moving tensors the converter never reads (upgrade adapters turn
attributes into inputs; they do not look at initializer values). So the
main graph's large initializers go through as stubs (name, type and dims, no
data) and the originals are put back into the result. Small initializers
(shapes, axes, scalars) pass whole, in case an adapter reads them; subgraphs
pass whole too (the converter may rebuild them, so their tensors could not be
paired back safely).
"""
from __future__ import annotations

import onnx
from onnx import version_converter

from rewriter.ir.load import light_copy

__all__ = ["STUB_BYTES", "convert_opset"]

#: Main-graph initializers of this many bytes of values or more pass through the converter as stubs.
STUB_BYTES = 4096


def convert_opset(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
    """``model`` converted to default-domain opset ``target``: a new proto, ``model`` is left as it was.

    Raises what onnx's converter raises (bare RuntimeErrors from C++ among them).
    """
    light, stubbed = light_copy(model, STUB_BYTES, main_graph_only=True)
    originals = {original.name: original for original, _ in stubbed}
    if len(originals) != len(stubbed):  # names repeated (a model the checker refuses): no pairing by name
        return version_converter.convert_version(model, target)
    out = version_converter.convert_version(light, target)
    for tensor in out.graph.initializer:
        original = originals.get(tensor.name)
        if original is not None:
            tensor.CopyFrom(original)
    return out
