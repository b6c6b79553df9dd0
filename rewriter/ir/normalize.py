"""Normalization: make an exported model regular before planning, float semantics unchanged.

Exporters write the same network in many shapes: weights in ``Constant``
nodes, shape arithmetic that is really constant, BatchNormalization after
every convolution, empty or repeated node names. The planner should see one
shape, so ``normalize`` rewrites a copy of the model:

1. nodes in topological order, every node named (``<op_type>_<n>`` for empty or
   repeated names, counted per op type in graph order);
2. initializers dropped from the graph inputs (IR >= 4; they are weights);
3. ``Constant`` nodes become initializers; ``Identity`` of an initializer is bypassed;
4. shape inference (``strict_mode=False, data_prop=True``), skipped if it fails;
5. constant folding, node by node with ``onnx.reference.ReferenceEvaluator``
   (a node that fails to evaluate is kept); ``Shape`` of a tensor with a static
   shape folds too, so ``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``
   chains collapse into a constant shape;
6. BatchNormalization folded into a preceding Conv, ConvTranspose, Gemm, or
   MatMul with a constant 2-D weight, when nothing else reads the producer's output;
7. a constant bias of shape ``[1, ..., 1, N]`` added to a MatMul's output of at least
   that rank stored as ``[N]`` (the same sums: TensorFlow and JAX exports write biases so;
   onnxruntime fuses MatMul + Add into a Gemm, which runs as an integer kernel only with a
   1-D int32 bias);
8. nodes whose outputs nobody reads and unused initializers removed, shapes
   inferred again.

Ordering and naming (``rewriter.ir.order``), shape inference
(``rewriter.ir.shape_inference``), constant folding (``rewriter.ir.fold_constants``)
and BatchNormalization folding (``rewriter.ir.fold_batchnorm``) have their own
modules; this one runs the steps in order and holds the small ones.

The opset is left alone. Subgraphs (If/Loop/Scan bodies) are not rewritten,
but the names they read from the outer graph are respected.

Example:
    >>> result = normalize(onnx.load("model.onnx"))   # doctest: +SKIP
    >>> print("\\n".join(result.actions))              # doctest: +SKIP
    folded BatchNormalization bn1 into Conv conv1
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from rewriter.ir.fold_batchnorm import fold_batchnorms
from rewriter.ir.fold_constants import fold_constants
from rewriter.ir.names import node_outer_reads
from rewriter.ir.order import name_nodes, sort_graph
from rewriter.ir.protos import (DEFAULT_DOMAINS, NodeRow, delete_entries, node_rows, replace_entries,
                                replace_nodes)
from rewriter.ir.shape_inference import INFERENCE_FAILED, with_inferred_shapes

__all__ = ["NormalizeResult", "constant_value", "normalize", "normalize_taken"]


@dataclass(frozen=True)
class NormalizeResult:
    """The normalized model and one line per change made, in the order made.

    ``rows``: the ``node_rows`` of the normalized main graph, read while normalizing; ``graph_view`` takes
    them instead of reading every node's fields from the protobuf again.
    """

    model: onnx.ModelProto
    actions: tuple[str, ...] = ()
    rows: tuple[NodeRow, ...] | None = field(default=None, compare=False, repr=False)


def normalize(model: onnx.ModelProto) -> NormalizeResult:
    """Return a normalized copy of ``model`` (see the module docstring); ``model`` is not changed.

    Args:
        model: a loaded ONNX model (``rewriter.ir.load.load_model``).

    Returns:
        The new model and the list of what was done.
    """
    box = [onnx.ModelProto()]
    box[0].CopyFrom(model)  # only the box holds the copy, so normalize_taken can let it go
    return normalize_taken(box)


def normalize_taken(box: list[onnx.ModelProto]) -> NormalizeResult:
    """``normalize`` without the copy: takes the one model out of ``box`` (leaving it empty) and rewrites it.

    For a caller that keeps no other reference to the model, such as one just loaded from a file:
    ``normalize_taken([load_model(path)])``. Without the copy, a model loaded whole (weights included) is in
    memory once, not twice. And the list hands over the last reference: where onnx's answer replaces the
    model (no big tensors, no subgraphs: ``with_inferred_shapes``), the model is let go as soon as it is
    serialized for inference, and a million-node graph's normalization holds about one model less at its
    peak.
    """
    m = box.pop()
    log: list[str] = []
    # Each node's fields read once and shared by the steps below (protobuf field access dominates a
    # 100k-node graph); read again after a step that edited the nodes.
    rows = node_rows(m.graph.node)
    if sort_graph(m.graph, log, rows):
        rows = node_rows(m.graph.node)
    rows = name_nodes(m.graph, log, rows)
    _drop_initializer_inputs(m, log)
    declared = len(m.graph.value_info)  # the model's own entries; inference adds those of node outputs
    # Each step below takes the rows of the graph as it finds it and returns those of the graph it leaves.
    # Constant and Identity nodes go before inference: it then neither infers nor records values that are
    # about to become initializers or other names (a TorchScript export has a Constant node for every
    # third node or so), and an initializer's data is read as a Constant's value would be.
    # Both take nodes away: the graph's node list is rebuilt once, after both (each node is copied then).
    nodes: Sequence[onnx.NodeProto] = m.graph.node
    rows, kept = _constants_to_initializers(m.graph, log, rows, nodes)
    rows, kept = _bypass_constant_identities(m.graph, log, rows, kept)
    if kept is not nodes:
        replace_nodes(m.graph, list(kept))
    # The node list (and any node taken from it) holds the whole model alive: let go of both, or the box
    # below would not hand over the model's last reference.
    del nodes, kept
    # A type the model declares for a name no node writes (stale, or one of a Constant just made an
    # initializer, which may say less than the tensor does) would steer inference: such entries go first.
    if declared:
        _prune_value_info(m.graph, rows)
    box.append(m)
    del m  # the box holds the model's only reference: inference lets it go once serialized
    m = with_inferred_shapes(box, log, rows)
    inferred_at = len(log)
    rows = fold_constants(m, log, rows)
    rows = fold_batchnorms(m, log, rows)
    # The initializers' names, read once for the two steps that look for initializers by name (half a million
    # protobuf reads at a million nodes each); neither step before _remove_unused adds, drops or renames one.
    initializer_names = [t.name for t in m.graph.initializer]
    _vector_biases(m.graph, log, rows, initializer_names)  # edits initializers only: the rows stay the graph's
    rows, used = _remove_dead_nodes(m.graph, log, rows)
    _remove_unused(m.graph, log, used, initializer_names)
    # Every step that edits the graph says so in the log (constant folding also lists the nodes it
    # kept: not an edit), and the tail below costs seconds on a large graph, so it does only what the
    # edits call for. Folding adds nodes or turns values constant (a folded shape makes a Reshape's output
    # static): the graph is sorted, named and inferred again. The other edits only take nodes away, their
    # outputs read as initializers, under another name or by nobody, or store a bias in a shape that
    # broadcasts to the same sums: the order and names stay valid and every value left keeps the type
    # inference gave it (a new inference would answer what the graph already says: half a second per 100k
    # nodes of a TorchScript export with its Constant nodes); only the entries of the removed names go.
    edited = _edited(log, inferred_at)
    # When inference failed, any edit may have removed what it failed on (a node nobody reads): it is tried
    # again after one.
    failed = any(line.startswith(INFERENCE_FAILED) for line in log[:inferred_at])
    retyped = any(line.startswith(_RETYPING_EDITS) for line in log[inferred_at:]) or failed and edited
    if retyped:
        if sort_graph(m.graph, log, rows):
            rows = node_rows(m.graph.node)
        rows = name_nodes(m.graph, log, rows)
    # The model's own entries of names no node writes went before inference, and inference records node
    # outputs only: an entry to prune now is one of a node an edit removed, and without an edit there is
    # none to look for (a scan of every entry, 100k of them on a 100k-node graph).
    pruned = edited and _prune_value_info(m.graph, rows)
    # A model that declared types of its own is still inferred again once such entries go: inference merged
    # the model's entries into its answer, and that a second pass changes nothing there is not shown.
    if retyped or pruned and declared > 0:
        box.append(m)
        del m
        m = with_inferred_shapes(box, log, rows)
    # Every step that moved, added or dropped nodes read the rows again: they are the graph's nodes now.
    return NormalizeResult(m, tuple(log), tuple(rows))


# The log lines of the edits after which types are inferred again (constant folding, BatchNormalization
# folding); every other edit keeps the types of the values it leaves.
_RETYPING_EDITS = ("folded ",)


def _edited(log: list[str], since: int) -> bool:
    return any(not line.startswith("kept ") for line in log[since:])


# --- inputs and constants -------------------------------------------------------------------


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
        delete_entries(m.graph.input, dropped)
        log.append(f"removed {len(dropped)} initializer(s) from the graph inputs (they are weights)")


def _constants_to_initializers(g: onnx.GraphProto, log: list[str], rows: list[NodeRow],
                               nodes: Sequence[onnx.NodeProto]) -> tuple[list[NodeRow], Sequence[onnx.NodeProto]]:
    """The rows and the nodes (of ``nodes``, the graph's, which the rows describe) kept; ``nodes`` itself
    when none was turned into an initializer. The caller puts the nodes kept in the graph."""
    if not any(r.op_type == "Constant" for r in rows):
        return rows, nodes
    outputs = {o.name for o in g.output}
    keep, kept_rows = [], []
    for node, row in zip(nodes, rows):
        # A graph output must stay a node output: runtimes differ on initializers as outputs.
        if (row.op_type != "Constant" or row.domain not in DEFAULT_DOMAINS or not row.outputs
                or row.outputs[0] in outputs
                or not _add_initializer(g, node, row.outputs[0])):
            keep.append(node)
            kept_rows.append(row)
    if len(keep) == len(rows):
        return rows, nodes
    log.append(f"turned {len(rows) - len(keep)} Constant node(s) into initializers")
    return kept_rows, keep


def _add_initializer(g: onnx.GraphProto, node: onnx.NodeProto, name: str) -> bool:
    """Append the Constant ``node``'s value to the initializers as ``name``; False when it has no dense value."""
    value = _held_value(node)
    if value is None:
        return False
    tensor = g.initializer.add()
    tensor.CopyFrom(value)  # the one copy: a node's ``value`` tensor goes straight into the graph
    tensor.name = name
    return True


def constant_value(node: onnx.NodeProto) -> onnx.TensorProto | None:
    """The tensor a Constant node holds, a copy of its own (dense forms only; a sparse_value stays a node),
    else None."""
    value = _held_value(node)
    if value is None:
        return None
    t = onnx.TensorProto()
    t.CopyFrom(value)
    return t


def _held_value(node: onnx.NodeProto) -> onnx.TensorProto | None:
    """The tensor a Constant node holds, not copied: its own ``value`` attribute (for reading only), or one
    built from the other dense forms; None for a sparse_value or anything else."""
    if len(node.attribute) != 1:
        return None
    a = node.attribute[0]
    if a.name == "value":
        return a.t
    builders: dict[str, Callable[[], np.ndarray]] = {
        "value_float": lambda: np.array(a.f, np.float32),
        "value_floats": lambda: np.array(a.floats, np.float32),
        "value_int": lambda: np.array(a.i, np.int64),
        "value_ints": lambda: np.array(a.ints, np.int64),
        "value_string": lambda: np.array(a.s, object),
        "value_strings": lambda: np.array(list(a.strings), object),
    }
    dense = builders.get(a.name)
    # sparse_value stays a node: densifying could blow the model up.
    return numpy_helper.from_array(dense()) if dense else None


def _bypass_constant_identities(g: onnx.GraphProto, log: list[str], rows: list[NodeRow],
                                nodes: Sequence[onnx.NodeProto]) -> tuple[list[NodeRow], Sequence[onnx.NodeProto]]:
    """Let readers of ``Identity(initializer)`` read the initializer (PyTorch does this for tied weights).

    ``nodes``: the graph's nodes as the rows describe them (the graph may still hold more). Returns the rows
    and the nodes left, ``nodes`` itself when none was bypassed; the caller puts them in the graph."""
    sources = {r.inputs[0] for r in rows if r.op_type == "Identity" and len(r.inputs) == 1}
    # The common case (no Identity of an initializer) answered without reading every initializer's name or
    # node's subgraphs.
    if not sources or sources.isdisjoint(t.name for t in g.initializer):
        return rows, nodes
    inits = {t.name for t in g.initializer}
    pinned = {o.name for o in g.output} | _subgraph_reads(nodes, rows)
    alias: dict[str, str] = {}
    keep = []
    for i, r in enumerate(rows):
        src = r.inputs[0] if r.op_type == "Identity" and len(r.inputs) == 1 else ""
        src = alias.get(src, src)
        if src in inits and r.outputs[0] not in pinned and r.domain in DEFAULT_DOMAINS:
            alias[r.outputs[0]] = src
        else:
            keep.append(i)
    if not alias:
        return rows, nodes
    kept_nodes, kept_rows = [], []
    for i in keep:
        node, row = nodes[i], rows[i]
        if not alias.keys().isdisjoint(row.inputs):
            for k, name in enumerate(row.inputs):
                if name in alias:
                    node.input[k] = alias[name]
            # A subgraph's reads are pinned, never aliased: mapping every read renames only the inputs.
            row = row._replace(inputs=tuple(alias.get(t, t) for t in row.inputs),
                               reads=tuple(alias.get(t, t) for t in row.reads))
        kept_nodes.append(node)
        kept_rows.append(row)
    log.append(f"bypassed {len(alias)} Identity node(s) of initializers")
    return kept_rows, kept_nodes


def _vector_biases(g: onnx.GraphProto, log: list[str], rows: list[NodeRow], initializer_names: list[str]) -> None:
    """Store a MatMul's constant bias of shape [1, ..., 1, N] as [N] (module docstring, step 7).

    Only a float initializer that this Add alone reads (nothing else sees its shape change), added to a
    MatMul output whose inferred rank is at least the bias's: broadcasting from the right gives the same
    sums and the same output shape. ``initializer_names``: the name of each of ``g``'s initializers, in order.
    """
    matmul_outputs = {r.outputs[0] for r in rows if r.op_type == "MatMul" and r.domain in DEFAULT_DOMAINS
                      and r.outputs}
    pairs = [(product, bias) for r in rows if r.op_type == "Add" and r.domain in DEFAULT_DOMAINS
             and len(r.inputs) == 2 for product, bias in ((r.inputs[0], r.inputs[1]), (r.inputs[1], r.inputs[0]))
             if product in matmul_outputs]
    if not pairs:
        return
    # Most biases are vectors already: the graph-wide counts below are made only for those that are not.
    wanted = {bias for _, bias in pairs}
    initializers = g.initializer
    candidates = ((name, initializers[i]) for i, name in enumerate(initializer_names) if name in wanted)
    shaped = {name: t for name, t in candidates if len(t.dims) >= 2 and all(d == 1 for d in t.dims[:-1])
              and t.data_type in _FLOAT_TYPES}
    pairs = [(product, bias) for product, bias in pairs if bias in shaped]
    if not pairs:
        return
    readers = dict.fromkeys(shaped, 0)
    for row in rows:
        for name in row.inputs:
            if name in readers:
                readers[name] += 1
    products = {product for product, _ in pairs}
    ranks = {vi.name: len(vi.type.tensor_type.shape.dim) for vi in g.value_info
             if vi.name in products and vi.type.tensor_type.HasField("shape")}
    found = list({bias: shaped[bias] for product, bias in pairs
                  if readers[bias] == 1 and ranks.get(product, 0) >= len(shaped[bias].dims)}.values())
    if not found:
        return
    pinned = _subgraph_reads(g.node, rows)  # an If or Loop body reading the bias would see its shape change
    reshaped = [t for t in found if t.name not in pinned]
    for tensor in reshaped:
        tensor.dims[:] = [tensor.dims[-1]]
    if reshaped:
        log.append(f"stored {len(reshaped)} MatMul bias(es) of shape [1, ..., N] as [N] (same sums)")


_FLOAT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
                          onnx.TensorProto.DOUBLE})


# --- cleanup ---------------------------------------------------------------------------------


def _remove_dead_nodes(g: onnx.GraphProto, log: list[str], rows: list[NodeRow]) -> tuple[list[NodeRow], set[str]]:
    """Drop nodes none of whose outputs is read (ONNX ops have no side effects).

    Returns the rows of those kept, and the names the graph still uses: its outputs and what those nodes read.
    """
    outputs = {o.name for o in g.output}
    # An omitted output ("") is needed by nobody: with "" kept out of the set (no name a node reads is ""),
    # "no output is needed" is one set operation per node.
    needed = outputs - {""}
    dead: list[int] = []
    for i in range(len(rows) - 1, -1, -1):
        row = rows[i]
        if needed.isdisjoint(row.outputs):
            dead.append(i)
        else:
            needed.update(row.reads)
    needed |= outputs
    if not dead:
        return rows, needed
    delete_entries(g.node, dead)
    log.append(f"removed {len(dead)} node(s) whose outputs nobody reads")
    gone = set(dead)
    return [r for i, r in enumerate(rows) if i not in gone], needed


def _remove_unused(g: onnx.GraphProto, log: list[str], used: set[str], initializer_names: list[str]) -> None:
    """Drop initializers that no name in ``used`` (the graph's outputs and every name a node reads) names.
    ``initializer_names``: the name of each of ``g``'s initializers, in order."""
    unused = [i for i, name in enumerate(initializer_names) if name not in used]
    if not unused:
        return
    gone = {initializer_names[i] for i in unused}
    delete_entries(g.initializer, unused)
    # An unused initializer listed as an input (IR < 4) would otherwise turn into a required input.
    delete_entries(g.input, [i for i, vi in enumerate(g.input) if vi.name in gone])
    log.append(f"removed {len(unused)} unused initializer(s)")


def _prune_value_info(g: onnx.GraphProto, rows: list[NodeRow]) -> bool:
    """Drop value_info entries of names no node produces; say whether there were any."""
    # Folded and renamed tensors leave stale entries that could contradict re-inference.
    live = {o for r in rows for o in r.outputs} - {t.name for t in g.initializer}
    kept = [vi for vi in g.value_info if vi.name in live]
    if len(kept) == len(g.value_info):
        return False
    replace_entries(g.value_info, kept)
    return True


def _subgraph_reads(nodes: Sequence[onnx.NodeProto], rows: list[NodeRow]) -> set[str]:
    """Outer names read by the subgraphs of the main graph's ``nodes`` (they must keep their names).

    ``rows``: the nodes' ``node_rows``; only the nodes they say hold a subgraph are read."""
    return {name for i, row in enumerate(rows) if row.bodies for name in node_outer_reads(nodes[i])}
