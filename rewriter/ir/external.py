"""Weights left in their file: a large model's external data is referenced, never read in whole.

A model whose external data is large (``load_model`` decides) keeps each such
tensor as a reference: ``data_location`` stays EXTERNAL and the ``location``
entry is made the data file's absolute path, which marks the tensor as one of
ours (ONNX files always hold relative locations). Copies of the model then
cost nothing for its weights, and its values are read through a read-only
memory map (``tensor_values``), so only the pages a computation touches are
in memory, and only while it holds the array.

onnxruntime refuses absolute locations; ``runtime_payload`` gives it the model
with the locations made relative to their common folder, and that folder
(``session.model_external_initializers_file_folder_path``): it maps the file
itself, as it does for a model loaded from a path. ``save_model`` copies the
referenced data into the output's own data file, so a written model never
points at the input's.
"""
from __future__ import annotations

import math
import os
from typing import Iterator

import numpy as np
import onnx
from onnx import helper

__all__ = ["EXTERNAL_FOLDER_KEY", "file_bytes", "file_chunks", "in_file", "keep_in_file", "runtime_payload",
           "tensor_values", "tensors"]

#: The onnxruntime session option naming the folder of the external data of a model given as bytes.
EXTERNAL_FOLDER_KEY = "session.model_external_initializers_file_folder_path"


def tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor that can hold data: initializers and tensor attributes, subgraphs included (the graph's
    own tensors first, then each subgraph's, in node order)."""
    yield from graph.initializer
    # One walk over the nodes' attributes for tensors and subgraphs alike: every model is walked so at load,
    # and most nodes have no attribute at all.
    tensor, tensor_list, body, body_list = (onnx.AttributeProto.TENSOR, onnx.AttributeProto.TENSORS,
                                            onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    bodies: list[onnx.GraphProto] = []
    for node in graph.node:
        attributes = node.attribute
        if not attributes:
            continue
        for attr in attributes:
            kind = attr.type
            if kind == tensor:
                yield attr.t
            elif kind == tensor_list:
                yield from attr.tensors
            elif kind == body:
                bodies.append(attr.g)
            elif kind == body_list:
                bodies.extend(attr.graphs)
    for sub in bodies:
        yield from tensors(sub)


def _entries(t: onnx.TensorProto) -> dict[str, str]:
    return {e.key: e.value for e in t.external_data}


def in_file(t: onnx.TensorProto) -> bool:
    """Is ``t`` a reference made by ``keep_in_file`` (its values still in the data file)?"""
    if t.data_location != onnx.TensorProto.EXTERNAL:
        return False
    location = next((e.value for e in t.external_data if e.key == "location"), "")
    return os.path.isabs(location)


def _span(t: onnx.TensorProto) -> tuple[str, int, int]:
    """(file, offset, length) of a reference."""
    entries = _entries(t)
    return entries["location"], int(entries.get("offset", "0")), int(entries["length"])


def _dtype(t: onnx.TensorProto) -> np.dtype:
    # Raw data is little-endian by the ONNX spec, whatever the host.
    return np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).newbyteorder("<")


def keep_in_file(t: onnx.TensorProto, folder: str) -> None:
    """Turn an external-data tensor of a model in ``folder`` into a reference to its data.

    Raises:
        ValueError: the location leaves ``folder``, the tensor's type has no fixed size, or the
            file is shorter than the tensor's data.
        OSError: the data file cannot be read.
    """
    entries = _entries(t)
    location = entries.get("location", "")
    base = os.path.realpath(folder)
    path = os.path.realpath(os.path.join(base, location))
    if not location or os.path.isabs(location) or os.path.commonpath([base, path]) != base:
        raise ValueError(f"tensor {t.name!r}: external data location {location!r} is not a file in the model's folder")
    if t.data_type == onnx.TensorProto.STRING:
        raise ValueError(f"tensor {t.name!r}: string tensors cannot be kept in external data")
    offset = int(entries.get("offset", "0"))
    length = math.prod(t.dims) * _dtype(t).itemsize
    if int(entries.get("length", str(length))) != length:
        raise ValueError(f"tensor {t.name!r}: external data length {entries['length']} does not match its "
                         f"shape ({length} bytes)")
    size = os.stat(path).st_size
    if offset + length > size:
        raise ValueError(f"tensor {t.name!r}: {os.path.basename(path)} holds {size} bytes, "
                         f"fewer than offset {offset} + length {length}")
    del t.external_data[:]
    for key, value in (("location", path), ("offset", str(offset)), ("length", str(length))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value


def tensor_values(t: onnx.TensorProto) -> np.ndarray:
    """The values of a reference as a read-only array mapped from its file (pages are read when touched;
    the mapping goes with the last array that uses it)."""
    path, offset, length = _span(t)
    dtype = _dtype(t)
    if length == 0:
        return np.zeros(tuple(t.dims), dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(t.dims))


def file_chunks(t: onnx.TensorProto, chunk_bytes: int = 64 << 20) -> Iterator[memoryview]:
    """A reference's bytes, a chunk at a time: each chunk is read into a buffer of its own, so copying
    a tensor never holds more than one chunk of it in memory."""
    path, offset, length = _span(t)
    with open(path, "rb") as f:
        f.seek(offset)
        left = length
        while left:
            chunk = f.read(min(chunk_bytes, left))
            if not chunk:
                raise OSError(f"{path}: ends before the data of tensor {t.name!r}")
            left -= len(chunk)
            yield memoryview(chunk)


def file_bytes(model: onnx.ModelProto) -> int:
    """How many bytes of ``model``'s tensors are references (0 for a model held whole in memory)."""
    return sum(_span(t)[2] for t in tensors(model.graph) if in_file(t))


def runtime_payload(model: onnx.ModelProto) -> tuple[bytes, str | None]:
    """``model``'s bytes for onnxruntime, and the folder its references are relative to (None: no references).

    The locations are made relative only while serializing; ``model`` is left as it was (a copy of it
    would copy whatever weights it holds in memory).
    """
    refs = [t for t in tensors(model.graph) if in_file(t)]
    if not refs:
        return model.SerializeToString(), None
    paths = {id(t): _span(t)[0] for t in refs}
    folder = os.path.commonpath([os.path.dirname(p) for p in paths.values()])
    entries = [next(e for e in t.external_data if e.key == "location") for t in refs]
    try:
        for t, entry in zip(refs, entries):
            entry.value = os.path.relpath(paths[id(t)], folder)
        return model.SerializeToString(), folder
    finally:
        for t, entry in zip(refs, entries):
            entry.value = paths[id(t)]
