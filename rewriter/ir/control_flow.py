"""Quantizing inside the taken branch of a top-level If: inline it for planning and calibration, then put it back.

The planner and the statistics pass see the main graph only, and onnxruntime cannot output a tensor of an
If branch. Exporters write a switch on an input (a sample rate) or on a shape as a top-level If whose
branches hold all the weights; when every calibration sample takes the same branch, that branch is what the
data can calibrate. So:

1. ``specialize`` returns a working model in which each such If is replaced by the nodes of its taken branch
   (renamed where a name clashes with the main graph, its initializers and Constant nodes turned into main
   initializers, an Identity per If output), and records what it did;
2. the pipeline plans, calibrates and emits the working model as any other;
3. ``restore`` moves the branch's nodes back into the If, with every node the emitter or a pass added whose
   readers all sit in the branch (its weights' DequantizeLinear, its activations' pairs), and keeps the other
   branch exactly as it was (float). Initializers stay in the main graph, where the branch reads them as outer
   names.

The other branch is not calibrated, so it stays float, and the run says so. Loop and Scan bodies run many
times with changing state and are left alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping

import onnx
from onnx import helper

from rewriter.ir.names import FreshNames, graph_names, node_subgraphs
from rewriter.ir.normalize import constant_value
from rewriter.ir.order import sort_graph
from rewriter.ir.protos import DEFAULT_DOMAINS, node_reads, replace_entries, replace_nodes
from rewriter.ir.shape_inference import infer_shapes_in_place

__all__ = ["BRANCHES", "InlinedBranch", "if_conditions", "restore", "specialize"]

#: The If attributes, in the order of the condition's values (True, False).
BRANCHES = ("then_branch", "else_branch")


@dataclass(frozen=True)
class InlinedBranch:
    """One If replaced by its taken branch in a working model.

    Attributes:
        if_node: the If as it was (both branches).
        branch: which attribute was inlined ("then_branch" or "else_branch").
        nodes: names of the working model's nodes that came from the branch.
        outputs: per If output, the Identity node (in the working model) that gives it the branch's value.
        float_nodes: nodes of the other branch (at any depth), which stay float.
        renamed: branch names that clashed with main-graph names -> their names in the working model.
        working_nodes: every node name of the working model as ``specialize`` returned it; only nodes added
            later (by emission or a pass) may move into the branch.
    """

    if_node: onnx.NodeProto
    branch: str
    nodes: frozenset[str]
    outputs: tuple[str, ...]
    float_nodes: int = 0
    renamed: Mapping[str, str] = field(default_factory=dict)
    working_nodes: frozenset[str] = frozenset()


def if_conditions(model: onnx.ModelProto) -> dict[str, str]:
    """Top-level If nodes of the default domain, by name: the tensor each one's branch choice reads."""
    return {n.name: n.input[0] for n in model.graph.node
            if n.op_type == "If" and n.domain in DEFAULT_DOMAINS and n.name and n.input and n.input[0]}


def specialize(model: onnx.ModelProto, taken: Mapping[str, str]) -> tuple[onnx.ModelProto, tuple[InlinedBranch, ...]]:
    """A copy of ``model`` with each If named in ``taken`` replaced by that branch (see the module docstring).

    Args:
        model: a normalized model (unique node names).
        taken: If node name -> "then_branch" or "else_branch".
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    done: list[InlinedBranch] = []
    for name, branch in taken.items():
        index = next((i for i, n in enumerate(g.node) if n.name == name and n.op_type == "If"), None)
        if index is None:
            raise ValueError(f"no top-level If named {name!r}")
        done.append(_inline(g, index, branch))
    sort_graph(g, [])
    infer_shapes_in_place(m, [])  # types of the branch's tensors, for the planner and the emitter
    working = frozenset(n.name for n in g.node)
    return m, tuple(replace(item, working_nodes=working) for item in done)


def _inline(g: onnx.GraphProto, index: int, branch: str) -> InlinedBranch:
    if_node = onnx.NodeProto()
    if_node.CopyFrom(g.node[index])
    body = next(a.g for a in if_node.attribute if a.name == branch)
    other = next((a.g for a in if_node.attribute if a.name != branch and a.type == onnx.AttributeProto.GRAPH), None)
    fresh = FreshNames(graph_names(g) | _all_names(body))
    # The main graph's names, the If's own branches aside (their reads include the branch's local names).
    main_names = {t.name for t in g.initializer} | {v.name for v in (*g.input, *g.output, *g.value_info)}
    for k, n in enumerate(g.node):
        main_names.update(n.input)
        main_names.update(n.output)
        if k != index:
            main_names.update(name for sub in node_subgraphs(n) for name in _all_names(sub))
    # The other branch, back beside this one at the end, must not find its own names defined outside.
    if other is not None:
        main_names |= _all_names(other)
    # Names the branch defines that the main graph already uses get fresh ones (scopes may shadow, a flat
    # graph may not); node names likewise.
    local = [t.name for t in body.initializer] + [o for n in body.node for o in n.output if o]
    renamed = {old: fresh(old) for old in dict.fromkeys(local) if old in main_names}
    taken_node_names = {n.name for n in g.node}
    nodes, inits = [], []
    for t in body.initializer:
        copy = onnx.TensorProto()
        copy.CopyFrom(t)
        copy.name = renamed.get(t.name, t.name)
        inits.append(copy)
    for inner in body.node:
        value = constant_value(inner) if inner.op_type == "Constant" and inner.domain in DEFAULT_DOMAINS else None
        if value is not None:  # torch.jit writes branch weights as Constant nodes
            value.name = renamed.get(inner.output[0], inner.output[0])
            inits.append(value)
            continue
        node = onnx.NodeProto()
        node.CopyFrom(inner)
        _rename_reads(node, renamed)
        for k, out in enumerate(node.output):
            node.output[k] = renamed.get(out, out)
        if not node.name or node.name in taken_node_names:
            node.name = fresh(f"{node.name or node.op_type}")
        taken_node_names.add(node.name)
        nodes.append(node)
    identities = []
    for out, result in zip(if_node.output, body.output):
        identity = helper.make_node("Identity", [renamed.get(result.name, result.name)], [out],
                                    name=fresh(f"{if_node.name}_{branch}_{out}"))
        identities.append(identity)
    kept = list(g.node[:index]) + nodes + identities + list(g.node[index + 1:])
    replace_nodes(g, kept)
    g.initializer.extend(inits)
    float_nodes = _count_nodes(other) if other is not None else 0
    return InlinedBranch(if_node, branch, frozenset(n.name for n in nodes), tuple(i.name for i in identities),
                         float_nodes, renamed)


def restore(model: onnx.ModelProto, inlined: tuple[InlinedBranch, ...],
            original: onnx.ModelProto) -> onnx.ModelProto:
    """Put each inlined branch of ``model`` (the working model after emission) back into its If.

    Args:
        model: the emitted working model.
        inlined: what ``specialize`` did, in its order.
        original: the model ``specialize`` was given: initializers the other branches read come from it.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    for item in reversed(inlined):
        _restore_one(g, item)
    # An initializer only the float branch reads may have been dropped as unread in the working model.
    have = {t.name for t in g.initializer}
    needed = {name for n in g.node for name in node_reads(n)} - have
    g.initializer.extend(t for t in original.graph.initializer if t.name in needed)
    sort_graph(g, [])
    return m


def _restore_one(g: onnx.GraphProto, item: InlinedBranch) -> None:
    readers: dict[str, list[str]] = {}
    for n in g.node:
        for name in node_reads(n):
            readers.setdefault(name, []).append(n.name)
    graph_outputs = {o.name for o in g.output}
    identities = set(item.outputs)
    in_branch = set(item.nodes) | identities
    # Added nodes (quantizer pairs, a pass's Mul) join the branch when everything reading them is in it.
    for n in reversed(list(g.node)):
        if n.name in in_branch:
            continue
        outs = [o for o in n.output if o]
        users = [r for o in outs for r in readers.get(o, [])]
        if n.name not in item.working_nodes and outs and users and not any(o in graph_outputs for o in outs) \
                and all(u in in_branch for u in users):
            in_branch.add(n.name)
    by_name = {n.name: n for n in g.node}
    body_nodes = [n for n in g.node if n.name in in_branch and n.name not in identities]
    results = [by_name[name].input[0] for name in item.outputs]
    old = next(a.g for a in item.if_node.attribute if a.name == item.branch)
    body = helper.make_graph(body_nodes, old.name, [], [_renamed_value(vi, name) for vi, name in
                                                         zip(old.output, results)])
    if_node = onnx.NodeProto()
    if_node.CopyFrom(item.if_node)
    for a in if_node.attribute:
        if a.name == item.branch:
            a.g.CopyFrom(body)
    main = [n for n in g.node if n.name not in in_branch]
    replace_nodes(g, main + [if_node])
    inside = {o for n in body_nodes for o in n.output}
    replace_entries(g.value_info, [vi for vi in g.value_info if vi.name not in inside])


def _renamed_value(vi: onnx.ValueInfoProto, name: str) -> onnx.ValueInfoProto:
    out = onnx.ValueInfoProto()
    out.CopyFrom(vi)
    out.name = name
    return out


def _rename_reads(node: onnx.NodeProto, renamed: Mapping[str, str]) -> None:
    if not renamed:
        return
    for k, name in enumerate(node.input):
        node.input[k] = renamed.get(name, name)
    for sub in node_subgraphs(node):
        own = {vi.name for vi in sub.input} | {t.name for t in sub.initializer}
        scoped = {k: v for k, v in renamed.items() if k not in own}
        for inner in sub.node:
            _rename_reads(inner, scoped)
        for out in sub.output:
            if out.name in scoped and out.name not in {o for n in sub.node for o in n.output}:
                out.name = scoped[out.name]


def _all_names(graph: onnx.GraphProto) -> set[str]:
    names = graph_names(graph)
    for n in graph.node:
        for sub in node_subgraphs(n):
            names |= _all_names(sub)
    return names


def _count_nodes(graph: onnx.GraphProto) -> int:
    return sum(1 + sum(_count_nodes(sub) for sub in node_subgraphs(n)) for n in graph.node)
