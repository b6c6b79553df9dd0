"""Deferred graph editing shared by the emitters: node insertions and input rewiring, applied in one pass.

The emitters (QDQ and FakeQuantize) decide node by node what to insert and
which consumer inputs to rewire; ``GraphEdit`` records those edits and applies
them in ``finish`` so that the graph stays topologically sorted, and ``stamp``
records on each new node the decision that put it there.
"""
from __future__ import annotations

import numpy as np
import onnx

from rewriter.ir.names import FreshNames, graph_names, subgraph_reads
from rewriter.ir.tensors import tensor_array
from rewriter.plan import Decision, FakeQuantizePoint
from rewriter.sources import SOURCE_KEY, source_text

__all__ = ["GraphEdit", "stamp"]


class GraphEdit:
    """Node insertions and input rewiring on a model, applied in one pass by ``finish``.

    New nodes go right after a producer (or at the top of the graph) or right
    before a consumer, so the graph stays topologically sorted. Names are made
    unique against every name already in the graph.

    Args:
        model: the model to edit in place (the emitters pass a copy).
        original: the unedited model, for shape inference (edits leave tensors
            unproduced until ``finish``); ``model`` itself if not given.
    """

    def __init__(self, model: onnx.ModelProto, original: onnx.ModelProto | None = None) -> None:
        self.model = model
        self.original = original if original is not None else model
        self.graph = model.graph
        self.nodes = list(self.graph.node)
        self.by_name = {n.name: n for n in self.nodes if n.name}
        self.index = {id(n): i for i, n in enumerate(self.nodes)}
        self.producer: dict[str, onnx.NodeProto] = {o: n for n in self.nodes for o in n.output if o}
        self.readers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
        for n in self.nodes:
            for port, name in enumerate(n.input):
                if name:
                    self.readers.setdefault(name, []).append((n, port))
        self.inits = {t.name: t for t in self.graph.initializer}
        self.outputs = {o.name for o in self.graph.output}
        # unique(name): name, or name_1, name_2, ... if taken; the result is reserved.
        self.unique = FreshNames(graph_names(self.graph))
        self._top: list[onnx.NodeProto] = []
        self._after: dict[int, list[onnx.NodeProto]] = {}
        self._before: dict[int, list[onnx.NodeProto]] = {}
        self._new_inits: list[onnx.TensorProto] = []
        self._maybe_dead: list[str] = []
        self._shapes: dict[str, tuple[int | None, ...]] | None = None
        self._dropped: set[str] = set()
        self.inputs = {i.name for i in self.graph.input}

    # -- lookups ----------------------------------------------------------------------------

    def node(self, name: str) -> onnx.NodeProto:
        try:
            return self.by_name[name]
        except KeyError:
            raise ValueError(f"the plan names node {name!r}, which the model does not have") from None

    def point_readers(self, point: FakeQuantizePoint) -> list[tuple[onnx.NodeProto, int]]:
        """The (node, port) pairs that read ``point``'s quantized value, in graph order.

        The listed consumers, plus every reader for an output point (``at_output``).
        """
        listed = []
        for c in point.consumers:
            node = self.node(c.node)
            if c.port >= len(node.input) or node.input[c.port] != point.tensor:
                raise ValueError(f"the plan says {c.node} input {c.port} reads {point.tensor!r}; the model disagrees")
            listed.append((node, c.port))
        if point.at_output:
            seen = {(id(n), port) for n, port in listed}
            listed += [(n, port) for n, port in self.readers.get(point.tensor, ()) if (id(n), port) not in seen]
        return sorted(listed, key=lambda r: (self.index[id(r[0])], r[1]))

    def tensor_exists(self, name: str) -> bool:
        return name in self.producer or name in self.inits or name in self.outputs or name in self.inputs

    def elem_type(self, name: str) -> int | None:
        """The ONNX element type of a tensor, if the model records it."""
        if name in self.inits:
            return self.inits[name].data_type
        for vi in (*self.graph.input, *self.graph.output, *self.graph.value_info):
            if vi.name == name and vi.type.HasField("tensor_type"):
                return vi.type.tensor_type.elem_type
        return None

    def shape(self, name: str) -> tuple[int | None, ...] | None:
        """A tensor's shape (None for a symbolic or unknown dim), from the model's records or
        onnx shape inference (run once, on demand); None when even the rank is unknown."""
        if name in self.inits:
            return tuple(self.inits[name].dims)
        if self._shapes is None:
            self._shapes = _inferred_shapes(self.original)
        return self._shapes.get(name)

    def rank(self, name: str) -> int | None:
        shape = self.shape(name)
        return None if shape is None else len(shape)

    def constant_value(self, name: str) -> np.ndarray | None:
        t = self.inits.get(name)
        return tensor_array(t) if t is not None else None

    # -- edits ------------------------------------------------------------------------------

    def add_initializer(self, tensor: onnx.TensorProto) -> str:
        self._new_inits.append(tensor)
        return tensor.name

    def insert_after_producer(self, tensor: str, nodes: list[onnx.NodeProto]) -> None:
        """Place ``nodes`` right after the node producing ``tensor`` (graph top for inputs/initializers)."""
        producer = self.producer.get(tensor)
        if producer is None:
            self._top.extend(nodes)
        else:
            self._after.setdefault(self.index[id(producer)], []).extend(nodes)

    def insert_before(self, node: onnx.NodeProto, nodes: list[onnx.NodeProto]) -> None:
        self._before.setdefault(self.index[id(node)], []).extend(nodes)

    def rewire(self, node: onnx.NodeProto, port: int, old: str, new: str) -> None:
        """Make input ``port`` of ``node`` read ``new`` instead of ``old``."""
        if port >= len(node.input) or node.input[port] != old:
            raise ValueError(f"node {node.name!r} input {port} is not {old!r}; the plan does not fit the model")
        node.input[port] = new
        self._maybe_dead.append(old)

    def finish(self) -> None:
        """Apply the insertions, add the new initializers and drop float initializers nobody reads."""
        order: list[onnx.NodeProto] = list(self._top)
        for i, n in enumerate(self.nodes):
            order.extend(self._before.get(i, ()))
            order.append(n)
            order.extend(self._after.get(i, ()))
        # Copies taken before the field is cleared: whether a message still lives after its
        # removal from a repeated field depends on the protobuf implementation.
        copies = [_copy_node(n) for n in order]
        del self.graph.node[:]
        self.graph.node.extend(copies)
        self.graph.initializer.extend(self._new_inits)
        self._drop_unread_initializers()

    def _drop_unread_initializers(self) -> None:
        read = {i for n in self.graph.node for i in n.input} | self.outputs | subgraph_reads(self.graph)
        self._dropped = {name for name in self._maybe_dead if name in self.inits and name not in read}
        for field in (self.graph.initializer, self.graph.input, self.graph.value_info):
            # Deleted in place, from the end: no copy of the (large) tensors that stay.
            for i in reversed(range(len(field))):
                if field[i].name in self._dropped:
                    del field[i]

    def removed(self, name: str) -> bool:
        """After ``finish``: whether the float initializer ``name`` was dropped."""
        return name in self._dropped


def stamp(node: onnx.NodeProto, decision: Decision | None) -> onnx.NodeProto:
    """Record in ``node``'s metadata the decision (rule or spec entry, file:line:column) that put it there."""
    if decision is not None:
        entry = node.metadata_props.add()
        entry.key, entry.value = SOURCE_KEY, source_text(decision)
    return node


def _copy_node(node: onnx.NodeProto) -> onnx.NodeProto:
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    return copy


def _inferred_shapes(model: onnx.ModelProto) -> dict[str, tuple[int | None, ...]]:
    """Shape per tensor name: onnx's shape inference over the recorded shapes (best effort)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference fails on some exports; the recorded shapes still count
        inferred = model
    shapes = {}
    g = inferred.graph
    for vi in (*g.input, *g.output, *g.value_info):
        tt = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and tt.HasField("shape"):
            # A negative dim_value is dynamic (paddle2onnx's -1 batch), like a dim_param.
            shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None
                                    for d in tt.shape.dim)
    return shapes
