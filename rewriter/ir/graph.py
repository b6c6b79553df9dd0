"""A read-only, onnx-free view of a graph for the matcher and the planner.

Built from an ONNX model by ``rewriter.ir.view.graph_view``. Nodes are kept
in topological order; every lookup the matcher needs is a dict access, so
matching stays linear in the number of nodes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from rewriter.records import direct_init


# A large graph's view builds hundreds of thousands of these: direct_init fills their slots directly.
@direct_init
@dataclass(frozen=True, slots=True)
class TensorInfo:
    """A value in the graph. ``shape`` dims are ints, symbolic names (str) or None.

    ``is_zero``: a small constant (up to ``ZERO_CHECK_VALUES`` values) whose every value is 0, such as a
    Pad's constant value; larger constants are never read just to answer it.
    """

    name: str
    dtype: str | None = None
    shape: tuple[int | str | None, ...] | None = None
    is_constant: bool = False
    is_graph_input: bool = False
    is_graph_output: bool = False
    is_zero: bool = False


#: Constants with at most this many values are checked for being all zeros.
ZERO_CHECK_VALUES = 16


@direct_init
@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node. ``inputs`` may hold "" for an omitted optional input.

    ``body_nodes``: how many nodes its If/Loop/Scan bodies hold, at any depth; they are not in the view.
    """

    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    domain: str = ""
    index: int = 0
    body_nodes: int = 0


#: A view's indexes, as ``GraphView.from_indexes`` takes them: producer, consumers, by_op and by_name.
GraphIndexes = tuple[dict[str, tuple[int, int]], dict[str, list[tuple[int, int]]], dict[str, list[int]],
                     dict[str, int]]


def node_indexer() -> tuple[GraphIndexes, Callable[[NodeInfo], None]]:
    """Empty indexes, and the function that adds one node (at its ``index``) to them.

    ``GraphView`` indexes its nodes with it, and ``graph_view`` each node as it makes it (a pass of its own
    would read every node and its names again: on a graph far larger than the cache, a few memory reads
    each). Nodes are added in order: a name written twice keeps its last writer, readers are listed in order.
    """
    producer: dict[str, tuple[int, int]] = {}
    consumers: dict[str, list[tuple[int, int]]] = {}
    by_op: dict[str, list[int]] = {}
    by_name: dict[str, int] = {}

    def add(node: NodeInfo) -> None:
        i = node.index
        by_name[node.name] = i
        same_op = by_op.get(node.op_type)
        if same_op is None:
            by_op[node.op_type] = [i]
        else:
            same_op.append(i)
        for port, t in enumerate(node.outputs):
            if t:
                producer[t] = (i, port)
        for port, t in enumerate(node.inputs):
            if t:
                readers = consumers.get(t)
                if readers is None:
                    consumers[t] = [(i, port)]
                else:
                    readers.append((i, port))

    return (producer, consumers, by_op, by_name), add


class GraphView:
    """Topologically ordered nodes plus producer/consumer indexes.

    Args:
        nodes: nodes in topological order (their ``index`` must match position).
        tensors: every named value, constants included.
    """

    def __init__(self, nodes: list[NodeInfo], tensors: Mapping[str, TensorInfo], name: str = "") -> None:
        self.name = name
        self.nodes: tuple[NodeInfo, ...] = tuple(nodes)
        self.tensors: dict[str, TensorInfo] = dict(tensors)
        indexes, add = node_indexer()
        for i, node in enumerate(self.nodes):
            if node.index != i:
                raise ValueError(f"node {node.name!r} has index {node.index}, expected {i}")
            add(node)
        self.producer, self.consumers, self.by_op, self.by_name = indexes

    @classmethod
    def from_indexes(cls, nodes: tuple[NodeInfo, ...], tensors: dict[str, TensorInfo], name: str,
                     indexes: GraphIndexes) -> GraphView:
        """A view whose indexes its builder filled with ``node_indexer`` while making its nodes, each at its
        position; the view takes ``tensors`` and the indexes as they are (no copy)."""
        view = cls.__new__(cls)
        view.name = name
        view.nodes = nodes
        view.tensors = tensors
        view.producer, view.consumers, view.by_op, view.by_name = indexes
        return view

    def tensor(self, name: str) -> TensorInfo:
        info = self.tensors.get(name)
        return info if info is not None else TensorInfo(name)

    def is_constant(self, name: str) -> bool:
        # Asked for most inputs of most nodes while planning: one dict lookup, no placeholder built.
        info = self.tensors.get(name) if name else None
        return info is not None and info.is_constant

    def producer_of(self, tensor: str) -> NodeInfo | None:
        hit = self.producer.get(tensor)
        return self.nodes[hit[0]] if hit else None

    def consumers_of(self, tensor: str) -> list[tuple[NodeInfo, int]]:
        return [(self.nodes[i], port) for i, port in self.consumers.get(tensor, ())]

    def fanout(self, tensor: str) -> int:
        """Consumers of a tensor, a graph output counting as one."""
        return len(self.consumers.get(tensor, ())) + int(self.tensor(tensor).is_graph_output)

    def __len__(self) -> int:
        return len(self.nodes)
