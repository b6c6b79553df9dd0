"""Constant folding: nodes whose inputs are all constant become initializers.

Node by node with ``onnx.reference.ReferenceEvaluator`` (a node that fails to
evaluate is kept); ``Shape`` of a tensor with a static shape folds too, so
``Shape -> Gather -> Unsqueeze -> Concat -> Reshape`` chains collapse into a
constant shape. Shapes are inferred again between rounds.
"""
from __future__ import annotations

import warnings
from collections import Counter
from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rewriter.ir.protos import DEFAULT_DOMAINS, NodeRow, replace_nodes
from rewriter.ir.shape_inference import ValueType, infer_shapes_in_place, value_types
from rewriter.ir.tensors import tensor_array

__all__ = ["fold_constants"]

# Never folded: random ops would freeze one draw; Q/DQ pairs already in the model stay visible.
_NO_FOLD = frozenset({
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
})
# A folded tensor may not grow the model by more than this unless it is at most twice its inputs
# (Expand/Tile/ConstantOfShape can turn a few bytes into megabytes of initializer).
_FOLD_GROWTH_BYTES = 16 << 20
_MAX_FOLD_ROUNDS = 4
# Ops that fold without all-constant inputs: Shape/Size of a static shape, Gather of such a Shape.
_SHAPE_READERS = frozenset({"Shape", "Size", "Gather"})


def fold_constants(m: onnx.ModelProto, log: list[str], rows: Sequence[NodeRow]) -> list[NodeRow]:
    """Fold, re-infer shapes (folded shapes make more Shape nodes static), repeat while it helps.

    ``rows``: the graph's ``node_rows``. Returns those of the nodes kept.
    """
    total: Counter[str] = Counter()
    skipped: dict[str, Counter[str]] = {}
    kept = list(rows)
    for _ in range(_MAX_FOLD_ROUNDS):
        folded = _fold_pass(m, total, skipped, kept)
        if not folded:
            break
        # Folding removes nodes and changes none it keeps: their rows stay right.
        kept = [row for i, row in enumerate(kept) if i not in folded]
        infer_shapes_in_place(m, [], kept)
    if total:
        parts = ", ".join(f"{op} x{n}" for op, n in sorted(total.items()))
        log.append(f"folded {sum(total.values())} constant node(s) into initializers ({parts})")
    for reason, ops in sorted(skipped.items()):
        parts = ", ".join(f"{op} x{n}" for op, n in sorted(ops.items()))
        log.append(f"kept {sum(ops.values())} constant node(s) {reason} ({parts})")
    return kept


class _Folder:
    """Evaluates one node at a time against the constants known so far."""

    def __init__(self, m: onnx.ModelProto) -> None:
        g = m.graph
        self.opsets = {("" if d.domain in DEFAULT_DOMAINS else d.domain): d.version for d in m.opset_import}
        self.inits = {t.name: t for t in g.initializer}
        self.arrays: dict[str, np.ndarray] = {}
        self._graph = g
        self._types: Mapping[str, ValueType] | None = None
        self.shape_of: dict[str, tuple[str, int, int]] = {}
        # Outer initializers are visible in subgraphs, so only graph outputs must stay node outputs.
        self.pinned = {o.name for o in g.output}
        self.functions = {(f.domain, f.name) for f in m.functions}
        # Why constant nodes stayed nodes: reason -> op type -> count.
        self.unfolded: dict[str, Counter[str]] = {}

    @property
    def types(self) -> Mapping[str, ValueType]:
        # Read on first need: a graph with nothing to fold never pays for decoding every value's type.
        if self._types is None:
            self._types = value_types(self._graph)
        return self._types

    def array(self, name: str) -> np.ndarray:
        if name not in self.arrays:
            self.arrays[name] = tensor_array(self.inits[name])
        return self.arrays[name]

    def fold(self, node: onnx.NodeProto) -> list[np.ndarray] | None:
        """The node's output values, or None if it is not constant (or not ours to fold)."""
        if node.op_type not in _SHAPE_READERS and not all(t in self.inits for t in node.input if t):
            return None  # reads a computed value: the common case, answered before the costlier checks
        if not self._eligible(node):
            return None
        if node.op_type in ("Shape", "Size"):
            return self._fold_shape(node)
        reads = [t for t in node.input if t]
        if not all(t in self.inits for t in reads):
            return self._fold_gather_of_shape(node)
        return self._evaluate(node)

    def _eligible(self, node: onnx.NodeProto) -> bool:
        return (
            node.domain in DEFAULT_DOMAINS
            and node.op_type not in _NO_FOLD
            and (node.domain, node.op_type) not in self.functions
            and len(node.input) > 0
            and not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)
            and not any(o in self.pinned for o in node.output)
        )

    def _fold_shape(self, node: onnx.NodeProto) -> list[np.ndarray] | None:
        src = node.input[0]
        dims: list[int | None] | None = (list(self.inits[src].dims) if src in self.inits
                                         else self.types.get(src, (None, None))[1])
        if dims is None:
            return None
        if node.op_type == "Size":
            size = _static(dims)
            return [np.array(int(np.prod(size)), np.int64)] if size is not None else None
        start, end = _shape_slice(node, len(dims))
        self.shape_of[node.output[0]] = (src, start, end)
        part = _static(dims[start:end])
        return [np.array(part, np.int64)] if part is not None else None

    def _fold_gather_of_shape(self, node: onnx.NodeProto) -> list[np.ndarray] | None:
        """``Gather(Shape(x), i)`` is constant when dim i of x is static, even if others are not."""
        if node.op_type != "Gather" or node.input[0] not in self.shape_of or node.input[1] not in self.inits:
            return None
        src, start, end = self.shape_of[node.input[0]]
        dims = self.types.get(src, (None, None))[1]
        if dims is None:
            return None
        part = np.array(dims[start:end], dtype=object)
        try:
            picked = np.take(part, self.array(node.input[1]), axis=0)
        except (IndexError, ValueError):
            return None
        if any(d is None for d in np.ravel(picked)):
            return None
        return [np.asarray(picked, dtype=np.int64)]

    def _evaluate(self, node: onnx.NodeProto) -> list[np.ndarray] | None:
        reads = [t for t in node.input if t]
        graph = helper.make_graph(
            [node], "fold",
            [helper.make_empty_tensor_value_info(t) for t in dict.fromkeys(reads)],
            [helper.make_empty_tensor_value_info(t) for t in node.output if t],
        )
        feeds = {t: self.array(t) for t in reads}
        from onnx.reference import ReferenceEvaluator  # heavy; only models with something to fold pay for it

        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                values = ReferenceEvaluator(graph, opsets=self.opsets).run(None, feeds)
        except Exception:  # noqa: BLE001 - an op the reference cannot run is simply left unfolded
            self._keep(node, "that the reference evaluator could not run")
            return None
        assert isinstance(values, list)  # a dict comes only from run(..., intermediate=True)
        return self._checked(node, values, sum(a.nbytes for a in feeds.values()))

    def _keep(self, node: onnx.NodeProto, reason: str) -> None:
        self.unfolded.setdefault(reason, Counter())[node.op_type] += 1

    def _checked(self, node: onnx.NodeProto, values: list[object], in_bytes: int) -> list[np.ndarray] | None:
        outs = [o for o in node.output if o]
        values = [np.asarray(v) if isinstance(v, np.generic) else v for v in values]
        result = [v for v in values if isinstance(v, np.ndarray)]
        if len(values) != len(outs) or len(result) != len(values):
            self._keep(node, "with sequence or optional outputs")
            return None
        for name, v in zip(outs, result):
            expected = self.types.get(name, (None, None))[0]
            if expected is not None and expected != v.dtype:
                # Trust the ONNX typing over a quirk of the reference implementation.
                self._keep(node, "whose evaluated type differs from the inferred one")
                return None
        out_bytes = sum(v.nbytes for v in result)
        if out_bytes > _FOLD_GROWTH_BYTES and out_bytes > 2 * in_bytes:
            self._keep(node, f"whose value would add over {_FOLD_GROWTH_BYTES >> 20} MiB to the model")
            return None
        return result

    def add(self, name: str, value: np.ndarray, g: onnx.GraphProto) -> None:
        tensor = numpy_helper.from_array(value, name)
        g.initializer.append(tensor)
        self.inits[name] = tensor
        self.arrays[name] = value


def _fold_pass(m: onnx.ModelProto, total: Counter[str], skipped: dict[str, Counter[str]],
               rows: list[NodeRow]) -> set[int]:
    """Fold what can be folded in one walk of the graph; the positions of the nodes folded."""
    g = m.graph
    folder = _Folder(m)
    inits = folder.inits
    folded: set[int] = set()
    for i, row in enumerate(rows):
        # Most nodes read a computed value: answered from the row, and only the others' protos are read.
        if row.op_type not in _SHAPE_READERS and not all(t in inits for t in row.inputs if t):
            continue
        node = g.node[i]
        values = folder.fold(node)
        if values is None:
            continue
        for name, value in zip([o for o in node.output if o], values):
            folder.add(name, value, g)
        total[node.op_type] += 1
        folded.add(i)
    # Only the last pass's reasons count: an earlier pass may have kept what a later one folded.
    skipped.clear()
    skipped.update(folder.unfolded)
    if folded:
        replace_nodes(g, [node for i, node in enumerate(g.node) if i not in folded])
    return folded


def _shape_slice(node: onnx.NodeProto, rank: int) -> tuple[int, int]:
    attrs = {a.name: a.i for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end", rank)
    # ONNX clamps like Python slicing does, after adding the rank to negative values.
    return slice(start, end).indices(rank)[:2]


def _static(dims: list[int | None]) -> list[int] | None:
    """``dims`` if every size in it is known, else None."""
    known = [d for d in dims if d is not None]
    return known if len(known) == len(dims) else None
