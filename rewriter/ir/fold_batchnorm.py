"""BatchNormalization folded into a preceding Conv, ConvTranspose, Gemm, or MatMul with a constant 2-D weight."""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rewriter.ir.names import FreshNames, graph_names
from rewriter.ir.protos import DEFAULT_DOMAINS, NodeRow, node_reads, node_rows, replace_nodes
from rewriter.ir.shape_inference import value_types
from rewriter.ir.tensors import tensor_array

__all__ = ["fold_batchnorms"]

_FLOATS = (np.float16, np.float32, np.float64)


def fold_batchnorms(m: onnx.ModelProto, log: list[str], rows: list[NodeRow]) -> list[NodeRow]:
    """Fold every BatchNormalization whose producer allows it, in place; one ``log`` line per fold.

    The producer's output must have no other reader; its weight (and bias) must be initializers.
    ``rows``: the graph's ``node_rows``. Returns those of the graph after folding.
    """
    g = m.graph
    if not any(r.op_type == "BatchNormalization" for r in rows):
        return rows
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
        return rows
    nodes = []
    for i, node in enumerate(g.node):
        if i not in removed:
            nodes.append(node)
        nodes.extend(added.get(i, ()))
    replace_nodes(g, nodes)
    return node_rows(g.node)


class _BnContext:
    """Indexes of the graph that decide whether a BatchNormalization can be folded, and the folding.

    Each ``_<op>`` method folds per-channel ``factor`` and ``shift`` (bn(y) = y * factor + shift)
    into the producer and returns the nodes to add after it, or None if the shapes do not fit.
    """

    def __init__(self, g: onnx.GraphProto) -> None:
        self.g = g
        self.inits = {t.name: t for t in g.initializer}
        self.producer = {o: i for i, n in enumerate(g.node) for o in n.output if o}
        self.readers: Counter[str] = Counter(t for n in g.node for t in node_reads(n))
        self.readers.update(o.name for o in g.output)
        self.types = value_types(g)
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
        scale, shift, mean, var = (tensor_array(self.inits[t]).astype(np.float64) for t in bn.input[1:])
        if not all(a.ndim == 1 and a.shape == scale.shape for a in (shift, mean, var)):
            return None
        eps = attrs["epsilon"].f if "epsilon" in attrs else 1e-5
        factor = scale / np.sqrt(var + np.float64(np.float32(eps)))
        return factor, shift - mean * factor

    def _weight(self, prod: onnx.NodeProto) -> np.ndarray | None:
        w = tensor_array(self.inits[prod.input[1]])
        return w if w.dtype in _FLOATS else None

    def _bias(self, prod: onnx.NodeProto, index: int) -> np.ndarray | None:
        if len(prod.input) > index and prod.input[index]:
            return tensor_array(self.inits[prod.input[index]]).astype(np.float64)
        return None

    def _conv(self, prod: onnx.NodeProto, bn: onnx.NodeProto, factor: np.ndarray,
              shift: np.ndarray) -> list[onnx.NodeProto] | None:
        w = self._weight(prod)
        if w is None or w.ndim < 3 or w.shape[0] != factor.size:
            return None
        new_w = w.astype(np.float64) * factor.reshape((-1,) + (1,) * (w.ndim - 1))
        b = self._bias(prod, 2)
        new_b = (0.0 if b is None else b) * factor + shift
        self._finish(prod, bn, new_w.astype(w.dtype), new_b.astype(w.dtype), bias_index=2)
        return []

    def _conv_transpose(self, prod: onnx.NodeProto, bn: onnx.NodeProto, factor: np.ndarray,
                        shift: np.ndarray) -> list[onnx.NodeProto] | None:
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

    def _gemm(self, prod: onnx.NodeProto, bn: onnx.NodeProto, factor: np.ndarray,
              shift: np.ndarray) -> list[onnx.NodeProto] | None:
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

    def _matmul(self, prod: onnx.NodeProto, bn: onnx.NodeProto, factor: np.ndarray,
                shift: np.ndarray) -> list[onnx.NodeProto] | None:
        w = self._weight(prod)
        a_dims = self.types.get(prod.input[0], (None, None))[1]
        # BatchNormalization normalizes axis 1: the weight's columns only when the product is 2-D.
        if w is None or w.ndim != 2 or w.shape[1] != factor.size or a_dims is None or len(a_dims) != 2:
            return None
        new_w = (w.astype(np.float64) * factor[None, :]).astype(w.dtype)
        self._set_initializer(prod, 1, new_w, f"{prod.input[1]}.bn_folded")
        bias_name = self._fresh(f"{prod.name}.bias")
        self.g.initializer.append(numpy_helper.from_array(shift.astype(w.dtype), bias_name))
        add = helper.make_node("Add", [prod.output[0], bias_name], [bn.output[0]],
                               name=self._fresh(f"{prod.name}_bias"))
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
