"""Shape inference over a model (weights left out for speed), and the value types it records."""
from __future__ import annotations

import math
import warnings
from typing import Iterator, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper

from rewriter.ir.load import TENSOR_DATA_FIELDS, _values_bytes, error_summary, light_copy
from rewriter.ir.protos import NodeRow

__all__ = ["INFERENCE_FAILED", "infer_shapes_in_place", "value_types", "with_inferred_shapes"]

# Tensors with more elements than this are weights, not shape values: inference gets their dims only.
_SHAPE_DATA_ELEMENTS = 1024


def infer_shapes_in_place(m: onnx.ModelProto, log: list[str], rows: Sequence[NodeRow] | None = None) -> None:
    """Refresh ``value_info`` and output types in place; on failure keep what the model has.

    ``rows``: the main graph's ``node_rows``, when the caller has them (only the protos of nodes with
    attributes are then read).
    """
    _refresh_in_place(m, *_without_weights(m, rows), log)


def _refresh_in_place(m: onnx.ModelProto, light: onnx.ModelProto, float_weights: list[int], log: list[str]) -> None:
    """Copy onnx's types of ``light`` (``m`` itself or its copy without weights) into ``m``. When it is ``m``,
    the values of its initializers at ``float_weights`` are out of it for the time of inference."""
    taken = _take_float_values(m.graph.initializer, float_weights)
    try:
        inferred = _inferred(light, log)
    finally:
        _give_back(m.graph.initializer, taken)
    if inferred is not None:
        _copy_types(inferred, m)


def with_inferred_shapes(box: list[onnx.ModelProto], log: list[str], rows: Sequence[NodeRow]) -> onnx.ModelProto:
    """The model taken out of ``box`` (left empty) as ``infer_shapes_in_place`` leaves it.

    A model with no big tensors and no subgraphs is inferred whole, and onnx's answer is that model with the
    value_info and output types the copy back would give: it is returned as it is (copying 100k value_info
    entries back takes 0.045 s at 100k nodes), and the model is let go as soon as it is serialized for
    onnx, so the two are never in memory together (the box hands over the caller's last reference; a
    million-node model is about a gigabyte). Its float tensors of more than ``_FLOAT_SHAPE_DATA_ELEMENTS``
    values go to onnx without their values, which come back into the answer. Otherwise (inference on a
    copy without the weights, or onnx also filling subgraphs' value_info, which the copy back leaves out)
    the model itself, refreshed in place. When inference fails, the model as it came, and a line in
    ``log``. ``rows``: the main graph's ``node_rows``.
    """
    m = box.pop()
    light, float_weights = _without_weights(m, rows)
    if light is m and not any(r.bodies for r in rows):
        taken = _take_float_values(m.graph.initializer, float_weights)
        try:
            data = _serialized(m)
        except Exception as e:  # noqa: BLE001 - over protobuf's 2 GB, say; it only costs shape information
            _note_failure(e, log)
            _give_back(m.graph.initializer, taken)
            return m
        del m, light
        inferred = _inferred(data, log)
        if inferred is None:
            inferred = onnx.load_from_string(data)
        del data
        _give_back(inferred.graph.initializer, taken)
        return inferred
    _refresh_in_place(m, light, float_weights, log)
    return m


# Float tensors with more values than this go to inference without them. onnx reads a float tensor's values
# only as Resize's or Upsample's scales (one per dimension) or as Range's and OneHot's scalars; a weight of a
# few hundred values (a small convolution's) is never read, yet serializing it, parsing it in C++ and back
# again is most of the bytes inference handles on a graph of many small layers (83% of the benchmark graph).
_FLOAT_SHAPE_DATA_ELEMENTS = 64
_FLOAT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
                          onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT8E4M3FN, onnx.TensorProto.FLOAT8E4M3FNUZ,
                          onnx.TensorProto.FLOAT8E5M2, onnx.TensorProto.FLOAT8E5M2FNUZ})


def _take_float_values(initializers: Sequence[onnx.TensorProto], positions: list[int]) -> list[tuple[int, str, bytes]]:
    """Take the ``raw_data`` out of the initializers at ``positions`` (``_without_weights`` lists the float ones of
    more than ``_FLOAT_SHAPE_DATA_ELEMENTS`` values): (position, name, bytes) of each, for ``_give_back``.

    The model is changed in place, not copied: the values leave it for the time of inference and come back
    into onnx's answer, whose initializers are the model's. Taking them out and putting them back copies
    each value twice; serializing them for onnx, onnx's parse, its answer and the parse of that copied them
    four times, each copy in fresh memory (on a million-node graph of small layers, about 300 MB each).
    """
    taken = []
    for i in positions:
        t = initializers[i]
        taken.append((i, t.name, t.raw_data))
        t.ClearField("raw_data")
    return taken


def _give_back(initializers: Sequence[onnx.TensorProto], taken: list[tuple[int, str, bytes]]) -> None:
    """Put the values ``_take_float_values`` took back into the tensors of the same names in ``initializers``."""
    by_name: dict[str, onnx.TensorProto] | None = None
    count = len(initializers)
    for i, name, raw in taken:
        t = initializers[i] if i < count else None
        if t is None or t.name != name:
            # onnx keeps the initializers in their order, so this is not expected; by name all the same.
            if by_name is None:
                by_name = {}
                for held in initializers:
                    by_name.setdefault(held.name, held)
            t = by_name[name]
        t.raw_data = raw


def _serialized(m: onnx.ModelProto) -> bytes:
    return m.SerializeToString()


def _inferred(light: onnx.ModelProto | bytes, log: list[str]) -> onnx.ModelProto | None:
    """onnx's inference of ``light`` (a model, or one serialized), or None (and a line in ``log``) when it
    fails."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return onnx.shape_inference.infer_shapes(light, check_type=False, strict_mode=False, data_prop=True)
    except Exception as e:  # noqa: BLE001 - any failure of inference only costs us shape information
        _note_failure(e, log)
        return None


#: How the line a failed inference leaves in the log begins.
INFERENCE_FAILED = "shape inference failed"


def _note_failure(error: Exception, log: list[str]) -> None:
    message = f"{INFERENCE_FAILED} ({error_summary(error)}); continuing without it"
    if message not in log:
        log.append(message)


def _copy_types(inferred: onnx.ModelProto, m: onnx.ModelProto) -> None:
    # Straight from the inferred copy (extend copies each entry once; replace_entries would copy twice).
    del m.graph.value_info[:]
    m.graph.value_info.extend(inferred.graph.value_info)
    for mine, theirs in zip(m.graph.output, inferred.graph.output):
        mine.CopyFrom(theirs)


def _without_weights(m: onnx.ModelProto, rows: Sequence[NodeRow] | None) -> tuple[onnx.ModelProto, list[int]]:
    """A copy without the data of big tensors: inference needs only their dims and types.

    It is several times faster on real models (no serializing of the weights) and keeps
    models over 2 GB under protobuf's limit; the weights are never copied (``light_copy``).
    Small tensors keep their data, since data propagation reads shape values (always short
    int vectors) from them. With no big tensor, ``m`` itself, and the positions of its float initializers
    that inference need not see the values of (``_take_float_values``); with a copy, no positions.
    """
    min_bytes = _SHAPE_DATA_ELEMENTS * 8 + 1  # an int64 vector of _SHAPE_DATA_ELEMENTS stays
    float_weights = _small_weights(m, min_bytes, rows)
    if float_weights is not None:
        return m, float_weights  # nothing big to leave out: inference only reads its input
    # The rows say whether any node holds a subgraph (without one, the copy's subgraph search is skipped: it
    # reads every node's attributes). The copy's nodes are the model's, in order: the rows are theirs too.
    light, _ = light_copy(m, min_bytes, main_graph_only=rows is not None and not any(r.bodies for r in rows))
    for a in _big_tensor_attributes(light.graph.node, rows):
        for name in TENSOR_DATA_FIELDS:
            a.t.ClearField(name)
    return light, []


def _small_weights(m: onnx.ModelProto, min_bytes: int, rows: Sequence[NodeRow] | None) -> list[int] | None:
    """None when ``_without_weights`` would leave a big tensor out; else the positions of the float initializers
    of more than ``_FLOAT_SHAPE_DATA_ELEMENTS`` values held in ``raw_data``. One pass over the initializers
    answers both (a million-node graph has half a million)."""
    positions = []
    for i, t in enumerate(m.graph.initializer):
        # Sized by shape: protobuf's ByteSize serializes the tensor (upb keeps no sizes). Each field is read
        # once (half a million initializers at a million nodes, each read a protobuf access).
        data_type, size = t.data_type, math.prod(t.dims)
        if _values_bytes(t, data_type, size) >= min_bytes:
            return None
        if size > _FLOAT_SHAPE_DATA_ELEMENTS and data_type in _FLOAT_TYPES and t.HasField("raw_data"):
            positions.append(i)
    if any(True for _ in _big_tensor_attributes(m.graph.node, rows)):
        return None
    return positions


def _big_tensor_attributes(nodes: Sequence[onnx.NodeProto], rows: Sequence[NodeRow] | None
                           ) -> Iterator[onnx.AttributeProto]:
    """The tensor attributes of ``nodes`` (a Constant's value, say) with more than ``_SHAPE_DATA_ELEMENTS``
    values. Only a node with attributes can hold one: ``rows`` (the nodes' ``node_rows``) say which, without
    reading every node's proto."""
    holders = (n for n in nodes if len(n.attribute)) if rows is None else (nodes[i] for i, r in enumerate(rows)
                                                                             if r.attributes)
    for n in holders:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR and math.prod(a.t.dims) > _SHAPE_DATA_ELEMENTS:
                yield a


ValueType = tuple[np.dtype | None, list[int | None] | None]


def value_types(g: onnx.GraphProto) -> Mapping[str, ValueType]:
    """Known (numpy dtype, dims) per value name; dims hold None for unknown or symbolic sizes.

    Decoded when asked for: the folding steps ask for the few values a Shape or a MatMul reads, and a
    graph's types are as many as its values (decoding all of them was a twentieth of normalizing a
    TorchScript export). Each value gets its own list of dims."""
    return _ValueTypes(g)


class _ValueTypes(Mapping[str, ValueType]):
    def __init__(self, g: onnx.GraphProto) -> None:
        # The graph's inputs, outputs and value_info by name. A name may have several entries (a graph output
        # also in value_info, say): the last one with a tensor type counts, so the earlier ones are kept too.
        self._entries: dict[str, onnx.ValueInfoProto] = {}
        self._earlier: dict[str, list[onnx.ValueInfoProto]] = {}
        for vi in (*g.input, *g.output, *g.value_info):
            earlier = self._entries.get(vi.name)
            if earlier is not None:
                self._earlier.setdefault(vi.name, []).append(earlier)
            self._entries[vi.name] = vi
        # Most values share one of a few types: each distinct one is decoded once (its bytes are far cheaper
        # to read than its dims one by one).
        self._decoded: dict[bytes, ValueType | None] = {}

    def _known(self, name: str) -> ValueType | None:
        vi = self._entries.get(name)
        if vi is None:
            return None
        for entry in (vi, *reversed(self._earlier.get(name, ()))):
            key = entry.type.SerializeToString()
            if key in self._decoded:
                known = self._decoded[key]
            else:
                known = self._decoded[key] = _decoded_type(entry.type)
            if known is not None:
                return known[0], None if known[1] is None else list(known[1])
        return None

    def __getitem__(self, name: str) -> ValueType:
        known = self._known(name)
        if known is None:
            raise KeyError(name)
        return known

    def __iter__(self) -> Iterator[str]:
        return (name for name in self._entries if self._known(name) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _decoded_type(tp: onnx.TypeProto) -> ValueType | None:
    """(numpy dtype, dims) of a tensor type, None for any other type."""
    if not tp.HasField("tensor_type"):
        return None
    tt = tp.tensor_type
    try:
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type) if tt.elem_type else None
    except KeyError:  # an element type numpy has no dtype for (a newer ONNX type): its dims still count
        dtype = None
    # A negative dim_value is dynamic (paddle2onnx's -1 batch), like a dim_param.
    dims = ([d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None for d in tt.shape.dim]
            if tt.HasField("shape") else None)
    return dtype, dims
