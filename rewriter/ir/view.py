"""Build the onnx-free ``GraphView`` that the matcher and planner read.

Only the main graph is viewed: the bodies of If/Loop/Scan nodes are not
expanded (their graph attributes are left out of ``NodeInfo.attrs``), so a
node inside a loop body is never matched or quantized; ``NodeInfo.body_nodes``
counts them, so the plan can say how many stay float.
"""
from __future__ import annotations

from functools import lru_cache
from itertools import chain
from math import prod
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rewriter.ir.external import in_file, tensor_values
from rewriter.ir.graph import ZERO_CHECK_VALUES, GraphView, NodeInfo, TensorInfo, node_indexer
from rewriter.ir.names import body_node_count
from rewriter.ir.order import topological_order
from rewriter.ir.protos import NodeRow, node_rows
from rewriter.ir.tensors import tensor_array

_A = onnx.AttributeProto


def _dtype_names() -> dict[int, str]:
    names = {}
    for code in onnx.TensorProto.DataType.values():
        if code == onnx.TensorProto.UNDEFINED:
            continue
        try:
            names[code] = helper.tensor_dtype_to_np_dtype(code).name
        except (KeyError, ValueError, TypeError):
            names[code] = onnx.TensorProto.DataType.Name(code).lower()
    # numpy calls strings "object", which says nothing to a reader of the plan.
    names[onnx.TensorProto.STRING] = "string"
    return names


_DTYPE_NAMES = _dtype_names()
# The attributes of every node that has none: one read-only mapping shared by them all, not an empty dict each
# (most nodes of a large graph; a million empty dicts are 64 MB).
_NO_ATTRIBUTES: Mapping[str, Any] = MappingProxyType({})


def graph_view(model: onnx.ModelProto, rows: Sequence[NodeRow] | None = None, *, in_order: bool = False) -> GraphView:
    """The main graph of ``model`` as a ``GraphView``.

    Nodes are taken in the model's order when it is topological (as after
    ``normalize``), else in a stable topological order. Every value the graph
    defines (inputs, outputs, initializers, value_info, node outputs) gets a
    ``TensorInfo``; values without type information get ``dtype=None,
    shape=None``. Attributes become plain Python: int, float (the shortest
    decimal that round-trips through float32, so ``1e-05`` and not
    ``9.99999974e-06``), str, lists of those, numpy arrays for tensors; graph,
    sparse-tensor and type attributes are left out. Subgraphs (If/Loop/Scan
    bodies) are not expanded: their nodes are not in the view.

    Speed: one pass over the nodes and one over the value entries (about 1 CPU-s
    for 100,000 nodes, most of it reading the protobuf's value entries), so it is
    fine to call once per model.

    Args:
        model: a (normalized) ONNX model.
        rows: ``node_rows`` of the model's main graph, if the caller has them (``NormalizeResult.rows``):
            then only the node names are read from the protobuf here.
        in_order: the caller knows the nodes are in topological order (a normalized model: ``normalize``
            sorts them), so the order is not checked again (a pass over every name, a second at a million
            nodes).

    Returns:
        The view, with producer/consumer indexes built.
    """
    g = model.graph
    # Each node's fields are read from the proto once (field access is the cost on a large graph).
    protos = list(g.node)
    fields = rows if rows is not None and len(rows) == len(protos) else node_rows(protos)
    order = range(len(protos)) if in_order else _node_order(protos, fields)
    # One str object per value name. Each read of a protobuf field makes a new str, so a value's name as its
    # writer's output and as each reader's input were equal but distinct objects; every table keyed by
    # name (the view's indexes, the planner's) then compared the strings' bytes on a hit. With one object
    # per name a hit is settled by identity, which on a graph too large for the cache saves a memory read
    # per lookup, and the graph holds each name once.
    names: dict[str, str] = {}
    one = names.setdefault
    nodes = []
    # The view's indexes, filled as each node is made (GraphView.from_indexes).
    indexes, index = node_indexer()
    # In the model's order, as the untyped values' entries come: the view's order may differ.
    outputs_by_row = [row.outputs for row in fields]
    for k, i in enumerate(order):
        row = fields[i]
        outputs = outputs_by_row[i] = tuple(map(one, row.outputs, row.outputs))
        node = NodeInfo(row.name, row.op_type, tuple(map(one, row.inputs, row.inputs)), outputs,
                        _attrs(protos[i]) if row.attributes else _NO_ATTRIBUTES, row.domain, k,
                        body_node_count(protos[i]) if row.bodies else 0)
        nodes.append(node)
        index(node)
    return GraphView.from_indexes(tuple(nodes), _tensor_infos(g, outputs_by_row, one), g.name, indexes)


def _node_order(protos: list[onnx.NodeProto], rows: Sequence[NodeRow]) -> range | list[int]:
    produced = set(chain.from_iterable(row.outputs for row in rows))
    seen: set[str] = set()
    for row in rows:
        for t in row.inputs:
            # Only a name produced by a later node breaks the order; others are inputs or constants.
            if t in produced and t not in seen:
                return topological_order(protos, rows)
        seen.update(row.outputs)
    return range(len(rows))


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in node.attribute:
        t = a.type
        if t == _A.INT:
            out[a.name] = a.i
        elif t == _A.INTS:
            out[a.name] = list(a.ints)
        elif t == _A.FLOAT:
            out[a.name] = _f32(a.f)
        elif t == _A.FLOATS:
            out[a.name] = [_f32(v) for v in a.floats]
        elif t == _A.STRING:
            out[a.name] = a.s.decode("utf-8", errors="replace")
        elif t == _A.STRINGS:
            out[a.name] = [s.decode("utf-8", errors="replace") for s in a.strings]
        elif t == _A.TENSOR:
            out[a.name] = tensor_array(a.t)
        elif t == _A.TENSORS:
            out[a.name] = [tensor_array(x) for x in a.tensors]
        # GRAPH(S), SPARSE_TENSOR(S), TYPE_PROTO(S): subgraphs are not viewed; the rest is too rare to model.
    return out


@lru_cache(maxsize=4096)
def _f32(v: float) -> float:
    # The attribute holds a float32; its shortest round-trip decimal is what the model's author wrote.
    return float(str(np.float32(v)))


def _tensor_infos(g: onnx.GraphProto, node_outputs: list[tuple[str, ...]],
                  one: Callable[[str, str], str]) -> dict[str, TensorInfo]:
    """Every value's ``TensorInfo``, keyed and named by the str object ``one(name, name)`` gives."""
    inits = {one(t.name, t.name): t for t in g.initializer}
    sparse = {one(t.values.name, t.values.name): t for t in g.sparse_initializer}
    outputs = {vi.name for vi in g.output}
    inputs = {vi.name for vi in g.input}
    infos: dict[str, TensorInfo] = {}
    # Most values share one of a few types: each distinct type is decoded once (a TypeProto's bytes are
    # far cheaper to read than its dims one by one).
    decoded: dict[bytes, tuple[str | None, tuple[int | str | None, ...] | None]] = {}
    # Later entries win: a graph input's or output's declared type over an inferred one. A name keeps the place
    # of its first entry (a later one replaces the record in place); constants get theirs below.
    for vi in (*g.value_info, *g.output, *g.input):
        name = vi.name
        name = one(name, name)
        if name in inits or name in sparse:
            continue
        key = vi.type.SerializeToString()
        known = decoded.get(key)
        if known is None:
            known = decoded[key] = _type_of(vi.type)
        dtype, shape = known
        infos[name] = TensorInfo(name, dtype, shape, False, name in inputs, name in outputs)
    for name, t in inits.items():
        dims, data_type = tuple(t.dims), t.data_type
        # Most constants are weights, too large to be checked: sized here, without a call each.
        infos[name] = TensorInfo(name, _DTYPE_NAMES.get(data_type), dims, True, False, name in outputs,
                                 prod(dims) <= ZERO_CHECK_VALUES and _all_zero(t, dims, data_type))
    for name, st in sparse.items():
        infos[name] = TensorInfo(name, _DTYPE_NAMES.get(st.values.data_type), tuple(st.dims), is_constant=True,
                                 is_graph_output=name in outputs)
    # Untyped node outputs; a read of a name nobody defines is a checker error, and GraphView.tensor()
    # answers it anyway.
    for names in node_outputs:
        for name in names:
            if name and name not in infos:
                infos[name] = TensorInfo(name, None, None, False, False, name in outputs)
    return infos


def _all_zero(t: onnx.TensorProto, dims: tuple[int, ...], data_type: int) -> bool:
    """Is ``t`` (of ``dims`` and ``data_type``, read by the caller) a small constant of zeros only?"""
    size = prod(dims)
    if size > ZERO_CHECK_VALUES:
        return False
    if t.data_location == onnx.TensorProto.EXTERNAL:
        # A large model's tensor kept in its file is read as the same model loaded whole would be.
        return in_file(t) and not np.any(tensor_values(t))
    if data_type == onnx.TensorProto.FLOAT:
        raw = t.raw_data
        if len(raw) == 4 * size:
            # The common case read from the bytes (numpy costs more than the check on a few values): a float32
            # is 0 exactly when its bytes are, but for the sign bit of -0.0 (0x80 in its last byte), so a
            # byte other than 0x00 and 0x80 means a value that is not 0.
            if not raw.strip(b"\x00"):
                return True
            if raw.translate(None, b"\x00\x80"):
                return False
            return not np.frombuffer(raw, "<f4").any()
    try:
        return not np.any(numpy_helper.to_array(t))
    except (ValueError, TypeError):  # string tensors and types numpy cannot hold
        return False


def _type_of(tp: onnx.TypeProto) -> tuple[str | None, tuple[int | str | None, ...] | None]:
    if not tp.HasField("tensor_type"):
        return None, None  # sequences, maps, optionals: no tensor type to report
    tt = tp.tensor_type
    dtype = _DTYPE_NAMES.get(tt.elem_type)
    if not tt.HasField("shape"):
        return dtype, None
    return dtype, tuple(_dim(d) for d in tt.shape.dim)


def _dim(d: onnx.TensorShapeProto.Dimension) -> int | str | None:
    kind = d.WhichOneof("value")
    if kind == "dim_value":
        # A negative size (paddle2onnx writes -1 for the batch) is dynamic, as onnxruntime reads it.
        return d.dim_value if d.dim_value >= 0 else None
    if kind == "dim_param" and d.dim_param:
        return d.dim_param
    return None


__all__ = ["graph_view"]
