"""Raising a model's default-domain opset with onnx's version converter, without copying its weights through it.

The converter serializes the whole model into C++, rebuilds it, and parses it
back: on a model of 54 MB of weights that is about 0.3 s, nearly all of it
spent moving tensors the converter never reads (upgrade adapters turn
attributes into inputs; they do not look at initializer values). So the
large top-level initializers go through as stubs (name, type and dims, no
data) and the originals are put back into the result. Small initializers
(shapes, axes, scalars) pass whole, in case an adapter reads them; subgraph
initializers pass whole too.
"""
from __future__ import annotations

import onnx
from google.protobuf.message import Message
from onnx import version_converter

__all__ = ["STUB_BYTES", "convert_opset"]

#: Initializers larger than this (serialized) pass through the converter as stubs.
STUB_BYTES = 4096


def convert_opset(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
    """``model`` converted to default-domain opset ``target``: a new proto, ``model`` is left as it was.

    Raises what onnx's converter raises (bare RuntimeErrors from C++ among them).
    """
    light = onnx.ModelProto()
    _copy_fields(model, light, skip="graph")
    _copy_fields(model.graph, light.graph, skip="initializer")
    kept: dict[str, onnx.TensorProto] = {}
    for tensor in model.graph.initializer:
        if tensor.ByteSize() > STUB_BYTES and tensor.name not in kept:
            kept[tensor.name] = tensor
            light.graph.initializer.add(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims)
        else:
            light.graph.initializer.append(tensor)
    out = version_converter.convert_version(light, target)
    for tensor in out.graph.initializer:
        original = kept.get(tensor.name)
        if original is not None:
            tensor.CopyFrom(original)
    return out


def _copy_fields(source: Message, target: Message, skip: str) -> None:
    """Copy every set field of ``source`` but ``skip`` into the empty ``target`` of the same type."""
    for field, value in source.ListFields():
        if field.name == skip:
            continue
        if hasattr(value, "CopyFrom"):  # a message
            getattr(target, field.name).CopyFrom(value)
        elif hasattr(value, "extend"):  # a repeated field (whatever the protobuf version calls it)
            getattr(target, field.name).extend(value)
        else:
            setattr(target, field.name, value)
