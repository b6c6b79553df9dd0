"""Numeric passes return new tensor values; this applies them to a model copy."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rewriter.ir.layers import BIAS_INPUT_OPS, BIAS_PORT, matmul_bias_names
from rewriter.ir.names import graph_names
from rewriter.ir.tensors import tensor_array


def apply_weight_updates(model: onnx.ModelProto, updates: Mapping[str, np.ndarray],
                         new_biases: Mapping[str, tuple[str, np.ndarray]] | None = None,
                         metadata: Mapping[str, str] | None = None) -> onnx.ModelProto:
    """A copy of ``model`` with initializers replaced and biases added.

    Args:
        updates: initializer name -> new value (same dtype and shape as before).
        new_biases: node name -> (new initializer name, bias vector) for a
            Conv/ConvTranspose/Gemm without a bias input (it becomes input 2),
            or a MatMul whose output then gets an Add of the bias (the Add
            takes over the MatMul's output name, so consumers are unchanged).
        metadata: metadata_props set on every node this adds (which pass made it).

    Raises:
        KeyError: an update names no initializer, or a new bias names no node.
        ValueError: an update changes a shape or dtype, or a node already has a bias.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    _replace(out.graph, updates)
    for node_name, (bias_name, value) in sorted((new_biases or {}).items()):
        _add_bias(out.graph, node_name, bias_name, np.asarray(value, dtype=np.float32), metadata or {})
    return out


def _with_metadata(node: onnx.NodeProto, metadata: Mapping[str, str]) -> onnx.NodeProto:
    for key, value in sorted(metadata.items()):
        entry = node.metadata_props.add()
        entry.key, entry.value = key, value
    return node


def _replace(graph: onnx.GraphProto, updates: Mapping[str, np.ndarray]) -> None:
    index = {t.name: i for i, t in enumerate(graph.initializer)}
    for name in sorted(updates):
        if name not in index:
            raise KeyError(f"no initializer named {name!r}")
        old = graph.initializer[index[name]]
        new = np.asarray(updates[name])
        current = tensor_array(old)
        if new.shape != current.shape:
            raise ValueError(f"update of {name!r} changes its shape {current.shape} -> {new.shape}")
        graph.initializer[index[name]].CopyFrom(numpy_helper.from_array(new.astype(current.dtype), name))


def _add_bias(graph: onnx.GraphProto, node_name: str, bias_name: str, value: np.ndarray,
              metadata: Mapping[str, str]) -> None:
    position = next((i for i, n in enumerate(graph.node) if n.name == node_name), None)
    if position is None:
        raise KeyError(f"no node named {node_name!r}")
    node = graph.node[position]
    graph.initializer.append(numpy_helper.from_array(value, bias_name))
    if node.op_type in BIAS_INPUT_OPS:
        if len(node.input) > BIAS_PORT and node.input[BIAS_PORT]:
            raise ValueError(f"node {node_name!r} already has a bias")
        while len(node.input) < BIAS_PORT:
            node.input.append("")
        node.input.append(bias_name)
        return
    if node.op_type != "MatMul":
        raise ValueError(f"cannot add a bias to {node.op_type} node {node_name!r}")
    output = node.output[0]
    add_name, raw = matmul_bias_names(node_name, output)
    node.output[0] = raw
    add = _with_metadata(helper.make_node("Add", [raw, bias_name], [output], name=add_name), metadata)
    graph.node.insert(position + 1, add)


def insert_scales(model: onnx.ModelProto, insertions: Sequence[Any],
                  metadata: Mapping[str, str] | None = None) -> onnx.ModelProto:
    """A copy of ``model`` with ``output = Mul(tensor, scale)`` inserted for each insertion.

    ``metadata``: metadata_props set on every Mul (which pass made it).

    Each insertion (``rewriter.algorithms.smoothing.ScaleInsertion``) names the
    tensor, the scale initializer (name and value, broadcast over the last
    axis), the new node and output names, and the reader nodes whose inputs
    switch from the tensor to the output; other readers keep the tensor. The
    Mul goes right before the first reader, so the order stays topological.

    Raises:
        KeyError: a reader names no node, or does not read the tensor.
        ValueError: a new name is already used in the graph.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    used = graph_names(graph)
    for item in insertions:
        clash = {item.scale_name, item.node_name, item.output} & used
        if clash:
            raise ValueError(f"cannot insert {item.node_name!r}: {', '.join(sorted(clash))} already used")
        used |= {item.scale_name, item.node_name, item.output}
        positions = {n.name: i for i, n in enumerate(graph.node)}
        missing = [r for r in item.readers if r not in positions]
        if missing:
            raise KeyError(f"no node named {missing[0]!r}")
        for reader in item.readers:
            node = graph.node[positions[reader]]
            if item.tensor not in node.input:
                raise KeyError(f"node {reader!r} does not read {item.tensor!r}")
            for k, name in enumerate(node.input):
                if name == item.tensor:
                    node.input[k] = item.output
        graph.initializer.append(numpy_helper.from_array(np.asarray(item.scale, np.float32), item.scale_name))
        mul = _with_metadata(helper.make_node("Mul", [item.tensor, item.scale_name], [item.output],
                                              name=item.node_name), metadata or {})
        graph.node.insert(min(positions[r] for r in item.readers), mul)
    return out


def restore_initializers(model: onnx.ModelProto, reference: onnx.ModelProto,
                         nodes: Sequence[str]) -> onnx.ModelProto:
    """``model`` with the constants that ``nodes`` read as they are in ``reference``: a copy when any differs,
    ``model`` itself when none does.

    A node's constants are its initializer inputs and those of an Add that ``reference`` lacks, reading the
    node's output (the bias Add a pass inserts after a MatMul). A constant ``reference`` lacks (a bias a pass
    created) becomes zeros, which adds exactly nothing. A constant another node also reads is left alone:
    restoring it would change that node too.

    Why: the quantized-phase passes (bias correction, layer-wise tuning) change a layer's weights and bias to
    make up for its quantization error; a layer a search later returns to float has no such error, so it must
    compute exactly what it did before those passes.
    """
    chosen = set(nodes)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    known_in_reference = {n.name for n in reference.graph.node}
    owners: dict[str, str] = {}  # output tensor -> the chosen node that writes it
    for node in graph.node:
        if node.name in chosen:
            owners.update(dict.fromkeys((o for o in node.output if o), node.name))
    constants: dict[str, str] = {}  # constant -> the node (chosen, or its inserted Add) that reads it
    for node in graph.node:
        inserted_add = (node.op_type == "Add" and node.name not in known_in_reference
                        and any(i in owners for i in node.input))
        if node.name in chosen or inserted_add:
            constants.update({i: node.name for i in node.input if i in inits})
    readers: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            if name in constants:
                readers.setdefault(name, set()).add(node.name)
    reference_inits = {t.name: t for t in reference.graph.initializer if t.name in constants}
    updates: dict[str, onnx.TensorProto] = {}
    for name, reader in sorted(constants.items()):
        if readers.get(name, set()) != {reader}:
            continue
        current = inits[name]
        if name in reference_inits:
            wanted = reference_inits[name]
            if wanted.SerializeToString() != current.SerializeToString():
                updates[name] = wanted
        else:
            values = tensor_array(current)
            if np.any(values):
                updates[name] = numpy_helper.from_array(np.zeros_like(values), name)
    if not updates:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for tensor in out.graph.initializer:
        if tensor.name in updates:
            tensor.CopyFrom(updates[tensor.name])
    return out
