"""Normalization: make an exported model regular before planning, float semantics unchanged.

Exporters write the same network in many shapes: weights in ``Constant``
nodes, shape arithmetic that is really constant, BatchNormalization after
every convolution, empty or repeated node names. The planner should see one
shape, so ``normalize`` rewrites a copy of the model:

1. nodes in topological order, every node named (``<op_type>_<n>`` for empty or
   repeated names, counted per op type in graph order);
2. initializers dropped from the graph inputs (IR >= 4; they are weights);
3. shape inference (``strict_mode=False, data_prop=True``), skipped if it fails;
4. ``Constant`` nodes become initializers; ``Identity`` of an initializer is bypassed;
5. constant folding, node by node with ``onnx.reference.ReferenceEvaluator``
   (a node that fails to evaluate is kept); ``Shape`` of a tensor with a static
   shape folds too, so ``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``
   chains collapse into a constant shape;
6. BatchNormalization folded into a preceding Conv, ConvTranspose, Gemm, or
   MatMul with a constant 2-D weight, when nothing else reads the producer's output;
7. nodes whose outputs nobody reads and unused initializers removed, shapes
   inferred again.

The opset is left alone. Subgraphs (If/Loop/Scan bodies) are not rewritten,
but the names they read from the outer graph are respected.

Example:
    >>> result = normalize(onnx.load("model.onnx"))   # doctest: +SKIP
    >>> print("\\n".join(result.actions))              # doctest: +SKIP
    folded BatchNormalization bn1 into Conv conv1
"""
from __future__ import annotations

import heapq
import math
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rewriter.ir.layers import DEFAULT_DOMAINS
from rewriter.ir.load import error_summary
from rewriter.ir.names import FreshNames, graph_names, node_outer_reads

# Never folded: random ops would freeze one draw; Q/DQ pairs already in the model stay visible.
_NO_FOLD = frozenset({
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
})
# A folded tensor may not grow the model by more than this unless it is at most twice its inputs
# (Expand/Tile/ConstantOfShape can turn a few bytes into megabytes of initializer).
_FOLD_GROWTH_BYTES = 16 << 20
_MAX_FOLD_ROUNDS = 4
# Tensors with more elements than this are weights, not shape values: inference gets their dims only.
_SHAPE_DATA_ELEMENTS = 1024
_DATA_FIELDS = ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data")
_FLOATS = (np.float16, np.float32, np.float64)


@dataclass(frozen=True)
class NormalizeResult:
    """The normalized model and one line per change made, in the order made."""

    model: onnx.ModelProto
    actions: tuple[str, ...] = ()


def normalize(model: onnx.ModelProto) -> NormalizeResult:
    """Return a normalized copy of ``model`` (see the module docstring); ``model`` is not changed.

    Args:
        model: a loaded ONNX model (``rewriter.ir.load.load_model``).

    Returns:
        The new model and the list of what was done.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    log: list[str] = []
    _sort_graph(m.graph, log)
    _name_nodes(m.graph, log)
    _drop_initializer_inputs(m, log)
    _infer_shapes(m, log)
    _constants_to_initializers(m.graph, log)
    _bypass_constant_identities(m.graph, log)
    _fold_until_stable(m, log)
    _fold_batchnorms(m, log)
    _remove_dead_nodes(m.graph, log)
    _remove_unused(m.graph, log)
    _sort_graph(m.graph, log)
    _name_nodes(m.graph, log)
    _prune_value_info(m.graph)
    _infer_shapes(m, log)
    return NormalizeResult(m, tuple(log))


def sort_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with the main graph's nodes in topological order (stable)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    _sort_graph(m.graph, [])
    return m


# --- graph order and names -------------------------------------------------------------------


def topological_order(nodes: Sequence[onnx.NodeProto]) -> list[int]:
    """Indices of ``nodes`` in a topological order, as close to the given order as possible.

    Names read inside subgraphs count as inputs of the node holding the subgraph.
    Inputs nobody produces (graph inputs, initializers) impose no order; nodes
    on a cycle keep their relative order at the end rather than raising.
    """
    producer = {out: i for i, n in enumerate(nodes) for out in n.output if out}
    users: list[list[int]] = [[] for _ in nodes]
    pending = [0] * len(nodes)
    for i, n in enumerate(nodes):
        deps = {producer[t] for t in _node_reads(n) if t in producer} - {i}
        pending[i] = len(deps)
        for d in deps:
            users[d].append(i)
    ready = [i for i, p in enumerate(pending) if p == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            pending[u] -= 1
            if pending[u] == 0:
                heapq.heappush(ready, u)
    if len(order) < len(nodes):
        placed = set(order)
        order.extend(i for i in range(len(nodes)) if i not in placed)
    return order


def _sort_graph(g: onnx.GraphProto, log: list[str]) -> None:
    order = topological_order(g.node)
    if order == list(range(len(order))):
        return
    nodes = [g.node[i] for i in order]
    _replace_nodes(g, nodes)
    log.append("reordered nodes into topological order")


def _name_nodes(g: onnx.GraphProto, log: list[str]) -> None:
    """Keep unique names; give empty and repeated ones (after the first) ``<op_type>_<n>``."""
    taken = {n.name for n in g.node if n.name}
    seen: set[str] = set()
    next_n: Counter[str] = Counter()
    renamed = 0
    for node in g.node:
        if node.name and node.name not in seen:
            seen.add(node.name)
            continue
        n = next_n[node.op_type]
        while f"{node.op_type}_{n}" in taken:
            n += 1
        node.name = f"{node.op_type}_{n}"
        next_n[node.op_type] = n + 1
        taken.add(node.name)
        seen.add(node.name)
        renamed += 1
    if renamed:
        log.append(f"named {renamed} node(s) that had an empty or repeated name")


# --- inputs, shapes, constants ---------------------------------------------------------------


def _drop_initializer_inputs(m: onnx.ModelProto, log: list[str]) -> None:
    """Initializers listed as graph inputs are overridable, so runtimes do not treat them as constants.

    IR < 4 required that listing; raising the IR version to 4 (the opset is untouched) lets us drop
    it, and lets folding add initializers without matching inputs.
    """
    if m.ir_version < 4:
        log.append(f"raised the IR version from {m.ir_version} to 4 (initializers need not be graph inputs)")
        m.ir_version = 4
    inits = {t.name for t in m.graph.initializer}
    dropped = [i for i, vi in enumerate(m.graph.input) if vi.name in inits]
    if dropped:
        _delete(m.graph.input, dropped)
        log.append(f"removed {len(dropped)} initializer(s) from the graph inputs (they are weights)")


def _infer_shapes(m: onnx.ModelProto, log: list[str]) -> None:
    """Refresh ``value_info`` and output types in place; on failure keep what the model has."""
    light = _without_weights(m)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inferred = onnx.shape_inference.infer_shapes(light, check_type=False, strict_mode=False, data_prop=True)
    except Exception as e:  # noqa: BLE001 - any failure of inference only costs us shape information
        message = f"shape inference failed ({error_summary(e)}); continuing without it"
        if message not in log:
            log.append(message)
        return
    _replace(m.graph.value_info, list(inferred.graph.value_info))
    for mine, theirs in zip(m.graph.output, inferred.graph.output):
        mine.CopyFrom(theirs)


def _without_weights(m: onnx.ModelProto) -> onnx.ModelProto:
    """A copy without the data of big tensors: inference needs only their dims and types.

    It is several times faster on real models (no serializing of the weights) and keeps
    models over 2 GB under protobuf's limit. Small tensors keep their data, since data
    propagation reads shape values (always short int vectors) from them.
    """
    light = onnx.ModelProto()
    light.CopyFrom(m)
    tensors = list(light.graph.initializer)
    tensors += [a.t for n in light.graph.node for a in n.attribute if a.type == onnx.AttributeProto.TENSOR]
    for t in tensors:
        if math.prod(t.dims) > _SHAPE_DATA_ELEMENTS:
            for name in _DATA_FIELDS:
                t.ClearField(name)
    return light


def _constants_to_initializers(g: onnx.GraphProto, log: list[str]) -> None:
    outputs = {o.name for o in g.output}
    keep, converted = [], 0
    for node in g.node:
        tensor = _constant_value(node) if node.op_type == "Constant" and node.domain in DEFAULT_DOMAINS else None
        # A graph output must stay a node output: runtimes differ on initializers as outputs.
        if tensor is None or node.output[0] in outputs:
            keep.append(node)
            continue
        tensor.name = node.output[0]
        g.initializer.append(tensor)
        converted += 1
    if converted:
        _replace_nodes(g, keep)
        log.append(f"turned {converted} Constant node(s) into initializers")


def _constant_value(node: onnx.NodeProto) -> onnx.TensorProto | None:
    if len(node.attribute) != 1:
        return None
    a = node.attribute[0]
    if a.name == "value":
        t = onnx.TensorProto()
        t.CopyFrom(a.t)
        return t
    dense = {
        "value_float": lambda: np.array(a.f, np.float32),
        "value_floats": lambda: np.array(a.floats, np.float32),
        "value_int": lambda: np.array(a.i, np.int64),
        "value_ints": lambda: np.array(a.ints, np.int64),
        "value_string": lambda: np.array(a.s, object),
        "value_strings": lambda: np.array(list(a.strings), object),
    }.get(a.name)
    # sparse_value stays a node: densifying could blow the model up.
    return numpy_helper.from_array(dense()) if dense else None


def _bypass_constant_identities(g: onnx.GraphProto, log: list[str]) -> None:
    """Let readers of ``Identity(initializer)`` read the initializer (PyTorch does this for tied weights)."""
    inits = {t.name for t in g.initializer}
    pinned = {o.name for o in g.output} | _subgraph_reads(g)
    alias: dict[str, str] = {}
    keep = []
    for node in g.node:
        src = node.input[0] if node.op_type == "Identity" and len(node.input) == 1 else ""
        src = alias.get(src, src)
        if src in inits and node.output[0] not in pinned and node.domain in DEFAULT_DOMAINS:
            alias[node.output[0]] = src
        else:
            keep.append(node)
    if not alias:
        return
    for node in keep:
        for k, name in enumerate(node.input):
            if name in alias:
                node.input[k] = alias[name]
    _replace_nodes(g, keep)
    log.append(f"bypassed {len(alias)} Identity node(s) of initializers")


# --- constant folding ------------------------------------------------------------------------


def _fold_until_stable(m: onnx.ModelProto, log: list[str]) -> None:
    """Fold, re-infer shapes (folded shapes make more Shape nodes static), repeat while it helps."""
    total: Counter[str] = Counter()
    skipped: dict[str, Counter[str]] = {}
    for _ in range(_MAX_FOLD_ROUNDS):
        folded = _fold_pass(m, total, skipped)
        if not folded:
            break
        _infer_shapes(m, [])
    if total:
        parts = ", ".join(f"{op} x{n}" for op, n in sorted(total.items()))
        log.append(f"folded {sum(total.values())} constant node(s) into initializers ({parts})")
    for reason, ops in sorted(skipped.items()):
        parts = ", ".join(f"{op} x{n}" for op, n in sorted(ops.items()))
        log.append(f"kept {sum(ops.values())} constant node(s) {reason} ({parts})")


class _Folder:
    """Evaluates one node at a time against the constants known so far."""

    def __init__(self, m: onnx.ModelProto) -> None:
        g = m.graph
        self.opsets = {("" if d.domain in DEFAULT_DOMAINS else d.domain): d.version for d in m.opset_import}
        self.inits = {t.name: t for t in g.initializer}
        self.arrays: dict[str, np.ndarray] = {}
        self.types = _value_types(g)
        self.shape_of: dict[str, tuple[str, int, int]] = {}
        # Outer initializers are visible in subgraphs, so only graph outputs must stay node outputs.
        self.pinned = {o.name for o in g.output}
        self.functions = {(f.domain, f.name) for f in m.functions}
        # Why constant nodes stayed nodes: reason -> op type -> count.
        self.unfolded: dict[str, Counter[str]] = {}

    def array(self, name: str) -> np.ndarray:
        if name not in self.arrays:
            self.arrays[name] = numpy_helper.to_array(self.inits[name])
        return self.arrays[name]

    def fold(self, node: onnx.NodeProto) -> list[np.ndarray] | None:
        """The node's output values, or None if it is not constant (or not ours to fold)."""
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
        dims = list(self.inits[src].dims) if src in self.inits else self.types.get(src, (None, None))[1]
        if dims is None:
            return None
        if node.op_type == "Size":
            return [np.array(int(np.prod(dims)), np.int64)] if None not in dims else None
        start, end = _shape_slice(node, len(dims))
        self.shape_of[node.output[0]] = (src, start, end)
        part = dims[start:end]
        return [np.array(part, np.int64)] if None not in part else None

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
            return self._keep(node, "that the reference evaluator could not run")
        return self._checked(node, values, sum(a.nbytes for a in feeds.values()))

    def _keep(self, node: onnx.NodeProto, reason: str) -> None:
        self.unfolded.setdefault(reason, Counter())[node.op_type] += 1

    def _checked(self, node: onnx.NodeProto, values: list[object], in_bytes: int) -> list[np.ndarray] | None:
        outs = [o for o in node.output if o]
        result = [np.asarray(v) if isinstance(v, np.generic) else v for v in values]
        if len(result) != len(outs) or not all(isinstance(v, np.ndarray) for v in result):
            return self._keep(node, "with sequence or optional outputs")
        for name, v in zip(outs, result):
            expected = self.types.get(name, (None, None))[0]
            if expected is not None and expected != v.dtype:
                # Trust the ONNX typing over a quirk of the reference implementation.
                return self._keep(node, "whose evaluated type differs from the inferred one")
        out_bytes = sum(v.nbytes for v in result)
        if out_bytes > _FOLD_GROWTH_BYTES and out_bytes > 2 * in_bytes:
            return self._keep(node, f"whose value would add over {_FOLD_GROWTH_BYTES >> 20} MiB to the model")
        return result

    def add(self, name: str, value: np.ndarray, g: onnx.GraphProto) -> None:
        tensor = numpy_helper.from_array(value, name)
        g.initializer.append(tensor)
        self.inits[name] = tensor
        self.arrays[name] = value


def _fold_pass(m: onnx.ModelProto, total: Counter[str], skipped: dict[str, Counter[str]]) -> bool:
    g = m.graph
    folder = _Folder(m)
    keep: list[onnx.NodeProto] = []
    for node in g.node:
        values = folder.fold(node)
        if values is None:
            keep.append(node)
            continue
        for name, value in zip([o for o in node.output if o], values):
            folder.add(name, value, g)
        total[node.op_type] += 1
    # Only the last pass's reasons count: an earlier pass may have kept what a later one folded.
    skipped.clear()
    skipped.update(folder.unfolded)
    if len(keep) == len(g.node):
        return False
    _replace_nodes(g, keep)
    return True


def _shape_slice(node: onnx.NodeProto, rank: int) -> tuple[int, int]:
    attrs = {a.name: a.i for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end", rank)
    # ONNX clamps like Python slicing does, after adding the rank to negative values.
    return slice(start, end).indices(rank)[:2]


# --- BatchNormalization folding --------------------------------------------------------------


def _fold_batchnorms(m: onnx.ModelProto, log: list[str]) -> None:
    g = m.graph
    if not any(n.op_type == "BatchNormalization" for n in g.node):
        return
    ctx = _BnContext(g)
    removed: set[int] = set()
    added: dict[int, list[onnx.NodeProto]] = {}
    for bi, bn in enumerate(g.node):
        if bn.op_type != "BatchNormalization" or bn.domain not in DEFAULT_DOMAINS:
            continue
        pi = ctx.producer.get(bn.input[0])
        if pi is None or pi in removed:
            continue
        prod = g.node[pi]
        extra = ctx.fold(prod, bn)
        if extra is None:
            continue
        removed.add(bi)
        added[pi] = extra
        log.append(f"folded BatchNormalization {bn.name} into {prod.op_type} {prod.name}")
    if not removed:
        return
    nodes = []
    for i, node in enumerate(g.node):
        if i not in removed:
            nodes.append(node)
        nodes.extend(added.get(i, ()))
    _replace_nodes(g, nodes)


class _BnContext:
    """Indexes of the graph that decide whether a BatchNormalization can be folded, and the folding.

    Each ``_<op>`` method folds per-channel ``factor`` and ``shift`` (bn(y) = y * factor + shift)
    into the producer and returns the nodes to add after it, or None if the shapes do not fit.
    """

    def __init__(self, g: onnx.GraphProto) -> None:
        self.g = g
        self.inits = {t.name: t for t in g.initializer}
        self.producer = {o: i for i, n in enumerate(g.node) for o in n.output if o}
        self.readers: Counter[str] = Counter(t for n in g.node for t in _node_reads(n))
        self.readers.update(o.name for o in g.output)
        self.types = _value_types(g)
        self._fresh = FreshNames(graph_names(g))

    def fold(self, prod: onnx.NodeProto, bn: onnx.NodeProto) -> list[onnx.NodeProto] | None:
        """Fold ``bn`` into ``prod``: the nodes to add after ``prod``, or None if it cannot be done."""
        params = self._bn_params(bn)
        if params is None or prod.domain not in DEFAULT_DOMAINS:
            return None
        if self.readers[prod.output[0]] != 1 or len(prod.input) < 2 or prod.input[1] not in self.inits:
            return None
        if len(prod.input) > 2 and prod.input[2] and prod.input[2] not in self.inits:
            return None
        fold = {"Conv": self._conv, "ConvTranspose": self._conv_transpose, "Gemm": self._gemm,
                "MatMul": self._matmul}.get(prod.op_type)
        return fold(prod, bn, *params) if fold else None

    def _bn_params(self, bn: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-channel (factor, shift) with bn(x) = x * factor + shift, in float64."""
        attrs = {a.name: a for a in bn.attribute}
        if "training_mode" in attrs and attrs["training_mode"].i:
            return None
        if "spatial" in attrs and attrs["spatial"].i == 0:
            return None  # per-activation statistics (opset < 9): not a per-channel affine map
        if any(bn.output[1:]) or len(bn.input) != 5 or not all(t in self.inits for t in bn.input[1:]):
            return None
        scale, shift, mean, var = (numpy_helper.to_array(self.inits[t]).astype(np.float64) for t in bn.input[1:])
        if not all(a.ndim == 1 and a.shape == scale.shape for a in (shift, mean, var)):
            return None
        eps = attrs["epsilon"].f if "epsilon" in attrs else 1e-5
        factor = scale / np.sqrt(var + np.float64(np.float32(eps)))
        return factor, shift - mean * factor

    def _weight(self, prod: onnx.NodeProto) -> np.ndarray | None:
        w = numpy_helper.to_array(self.inits[prod.input[1]])
        return w if w.dtype in _FLOATS else None

    def _bias(self, prod: onnx.NodeProto, index: int) -> np.ndarray | None:
        if len(prod.input) > index and prod.input[index]:
            return numpy_helper.to_array(self.inits[prod.input[index]]).astype(np.float64)
        return None

    def _conv(self, prod: onnx.NodeProto, bn: onnx.NodeProto, factor: np.ndarray, shift: np.ndarray) -> list[onnx.NodeProto] | None:
        w = self._weight(prod)
        if w is None or w.ndim < 3 or w.shape[0] != factor.size:
            return None
        new_w = w.astype(np.float64) * factor.reshape((-1,) + (1,) * (w.ndim - 1))
        b = self._bias(prod, 2)
        new_b = (0.0 if b is None else b) * factor + shift
        self._finish(prod, bn, new_w.astype(w.dtype), new_b.astype(w.dtype), bias_index=2)
        return []

    def _conv_transpose(self, prod: onnx.NodeProto, bn: onnx.NodeProto, factor: np.ndarray, shift: np.ndarray) -> list[onnx.NodeProto] | None:
        w = self._weight(prod)
        group = next((a.i for a in prod.attribute if a.name == "group"), 1)
        if w is None or w.ndim < 3 or w.shape[0] % group or w.shape[1] * group != factor.size:
            return None
        # Weight is [C_in, C_out/group, k...]; output channel (g, j) lives in rows of group g, column j.
        grouped = w.astype(np.float64).reshape((group, w.shape[0] // group) + w.shape[1:])
        f = factor.reshape((group, 1, w.shape[1]) + (1,) * (w.ndim - 2))
        new_w = (grouped * f).reshape(w.shape)
        b = self._bias(prod, 2)
        new_b = (0.0 if b is None else b) * factor + shift
        self._finish(prod, bn, new_w.astype(w.dtype), new_b.astype(w.dtype), bias_index=2)
        return []

    def _gemm(self, prod: onnx.NodeProto, bn: onnx.NodeProto, factor: np.ndarray, shift: np.ndarray) -> list[onnx.NodeProto] | None:
        w = self._weight(prod)
        attrs = {a.name: a for a in prod.attribute}
        trans_b = attrs["transB"].i if "transB" in attrs else 0
        if w is None or w.ndim != 2 or w.shape[0 if trans_b else 1] != factor.size:
            return None
        f = factor[:, None] if trans_b else factor[None, :]
        new_w = w.astype(np.float64) * f
        c = self._bias(prod, 2)
        beta = attrs["beta"].f if "beta" in attrs else 1.0
        # Broadcasting C against [N] also covers scalar, [N], [1, N] and [M, N] biases.
        new_c = (0.0 if c is None else np.float64(beta) * c) * factor + shift
        self._set_attr(prod, "beta", 1.0)
        self._finish(prod, bn, new_w.astype(w.dtype), new_c.astype(w.dtype), bias_index=2)
        return []

    def _matmul(self, prod: onnx.NodeProto, bn: onnx.NodeProto, factor: np.ndarray, shift: np.ndarray) -> list[onnx.NodeProto] | None:
        w = self._weight(prod)
        a_dims = self.types.get(prod.input[0], (None, None))[1]
        # BatchNormalization normalizes axis 1: the weight's columns only when the product is 2-D.
        if w is None or w.ndim != 2 or w.shape[1] != factor.size or a_dims is None or len(a_dims) != 2:
            return None
        new_w = (w.astype(np.float64) * factor[None, :]).astype(w.dtype)
        self._set_initializer(prod, 1, new_w, f"{prod.input[1]}.bn_folded")
        bias_name = self._fresh(f"{prod.name}.bias")
        self.g.initializer.append(numpy_helper.from_array(shift.astype(w.dtype), bias_name))
        add = helper.make_node("Add", [prod.output[0], bias_name], [bn.output[0]], name=self._fresh(f"{prod.name}_bias"))
        return [add]

    def _finish(self, prod: onnx.NodeProto, bn: onnx.NodeProto, w: np.ndarray, b: np.ndarray, bias_index: int) -> None:
        self._set_initializer(prod, 1, w, f"{prod.input[1]}.bn_folded")
        has_bias = len(prod.input) > bias_index and prod.input[bias_index]
        if has_bias:
            self._set_initializer(prod, bias_index, b, f"{prod.input[bias_index]}.bn_folded")
        else:
            name = self._fresh(f"{prod.name}.bias")
            self.g.initializer.append(numpy_helper.from_array(b, name))
            while len(prod.input) < bias_index:
                prod.input.append("")
            if len(prod.input) == bias_index:
                prod.input.append(name)
            else:
                prod.input[bias_index] = name
        prod.output[0] = bn.output[0]

    def _set_initializer(self, node: onnx.NodeProto, index: int, value: np.ndarray, fresh: str) -> None:
        """Give ``node`` the new value: in place if only it reads the initializer, else as a new one."""
        name = node.input[index]
        if self.readers[name] == 1:
            self.inits[name].CopyFrom(numpy_helper.from_array(value, name))
            return
        new = self._fresh(fresh)
        self.readers[name] -= 1
        self.readers[new] += 1
        tensor = numpy_helper.from_array(value, new)
        self.g.initializer.append(tensor)
        self.inits[new] = tensor
        node.input[index] = new

    @staticmethod
    def _set_attr(node: onnx.NodeProto, name: str, value: float) -> None:
        for a in node.attribute:
            if a.name == name:
                a.f = value
                return
        node.attribute.append(helper.make_attribute(name, value))


# --- cleanup ---------------------------------------------------------------------------------


def _remove_dead_nodes(g: onnx.GraphProto, log: list[str]) -> None:
    """Drop nodes none of whose outputs is read (ONNX ops have no side effects)."""
    needed = {o.name for o in g.output}
    dead: list[int] = []
    for i in range(len(g.node) - 1, -1, -1):
        node = g.node[i]
        if any(o in needed for o in node.output if o):
            needed.update(_node_reads(node))
        else:
            dead.append(i)
    if dead:
        _delete(g.node, dead)
        log.append(f"removed {len(dead)} node(s) whose outputs nobody reads")


def _remove_unused(g: onnx.GraphProto, log: list[str]) -> None:
    used = {t for n in g.node for t in _node_reads(n)} | {o.name for o in g.output}
    unused = [i for i, t in enumerate(g.initializer) if t.name not in used]
    if not unused:
        return
    gone = {g.initializer[i].name for i in unused}
    _delete(g.initializer, unused)
    # An unused initializer listed as an input (IR < 4) would otherwise turn into a required input.
    _delete(g.input, [i for i, vi in enumerate(g.input) if vi.name in gone])
    log.append(f"removed {len(unused)} unused initializer(s)")


def _prune_value_info(g: onnx.GraphProto) -> None:
    # Folded and renamed tensors leave stale entries that could contradict re-inference.
    live = {o for n in g.node for o in n.output} - {t.name for t in g.initializer}
    _replace(g.value_info, [vi for vi in g.value_info if vi.name in live])


# --- helpers ---------------------------------------------------------------------------------


def _node_reads(node: onnx.NodeProto) -> list[str]:
    """Names the node reads: its inputs and the outer names its subgraphs read."""
    return [t for t in node.input if t] + node_outer_reads(node)


def _subgraph_reads(g: onnx.GraphProto) -> set[str]:
    """Outer names read by the subgraphs of the main graph's nodes (they must keep their names)."""
    return {name for node in g.node for name in node_outer_reads(node)}


def _value_types(g: onnx.GraphProto) -> dict[str, tuple[np.dtype | None, list[int | None] | None]]:
    """Known (numpy dtype, dims) per value name; dims hold None for unknown or symbolic sizes."""
    out: dict[str, tuple[np.dtype | None, list[int | None] | None]] = {}
    for vi in (*g.input, *g.output, *g.value_info):
        if not vi.type.HasField("tensor_type"):
            continue
        tt = vi.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type) if tt.elem_type else None
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim] if tt.HasField("shape") else None
        out[vi.name] = (dtype, dims)
    return out


def _delete(field: Any, indices: Iterable[int]) -> None:
    """Delete entries of a repeated proto field in place (no copies of big tensors)."""
    for i in sorted(indices, reverse=True):
        del field[i]


def _replace(field: Any, items: list[Any]) -> None:
    """Set a repeated proto field to ``items`` (copied first: the items may live in ``field``)."""
    copies = [type(x)() for x in items]
    for c, x in zip(copies, items):
        c.CopyFrom(x)
    del field[:]
    field.extend(copies)


def _replace_nodes(g: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    _replace(g.node, nodes)


__all__ = ["NormalizeResult", "normalize", "sort_nodes", "topological_order"]
