"""Run one node, or a few, of a model in onnxruntime, with constants overridden.

The numeric passes that must execute a layer (bias correction) receive
``LayerRunner(model).run`` as a plain callable and never import onnxruntime
themselves.

``run(nodes, feeds, overrides)`` builds a small model holding copies of the
named nodes (in the order given, which must be topological), runs it and
returns the requested tensors:

- every tensor the nodes read that they do not produce must be fed (``feeds``)
  or be an initializer of the model, which is copied into the small model;
- ``overrides`` replaces initializers by other values of the caller's choosing
  (fake-quantized weights, a zero bias). They are passed to onnxruntime as
  inputs, not baked into the small model, so one session serves every value;
- ``aliases`` makes an input port read another name than the model says:
  ``{(node, port): name}``. A caller that simulates a quantized model uses it
  to give the readers of a FakeQuantize the quantized value (fed as ``name``)
  while the other readers of the same tensor keep the float one.

Sessions are cached per (nodes, fed names and dtypes, outputs, aliases), so a
caller that runs the same layer on many samples or many weight values builds
it once. Nodes with subgraphs (If, Loop, Scan) are copied whole; the
outer-scope names their bodies read are fed or copied like direct inputs.

Example:
    >>> runner = LayerRunner(model)                                 # doctest: +SKIP
    >>> out = runner.run(["conv1"], {"input": x}, {"conv1.bias": zeros})  # doctest: +SKIP
    >>> out["conv1"].shape                                          # doctest: +SKIP
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from rewriter.calibrate.session import open_session, session_options
from rewriter.errors import UserError
from rewriter.ir.names import node_outer_reads

__all__ = ["LayerRunner"]

Alias = Mapping[tuple[str, int], str]


class LayerRunner:
    """Runs sub-sets of a model's nodes (see the module docstring).

    Args:
        model: the (normalized) model whose nodes are run; not modified.
        intra_op_threads: onnxruntime intra-op threads (None: its default).
    """

    def __init__(self, model: onnx.ModelProto, intra_op_threads: int | None = None) -> None:
        self._model = model
        self._nodes = {n.name: n for n in model.graph.node}
        if len(self._nodes) != len(model.graph.node):
            raise ValueError("LayerRunner needs unique node names (normalize the model first)")
        self._inits = {t.name: t for t in model.graph.initializer}
        self._threads = intra_op_threads
        self._sessions: dict[tuple[Any, ...], tuple[ort.InferenceSession, tuple[str, ...]]] = {}
        #: Number of sessions built and of runs made (for tests and measurements).
        self.sessions_built = 0
        self.runs = 0

    def run(self, nodes: Sequence[str], feeds: Mapping[str, np.ndarray],
            overrides: Mapping[str, np.ndarray] | None = None, *, outputs: Sequence[str] | None = None,
            aliases: Alias | None = None) -> dict[str, np.ndarray]:
        """Run ``nodes`` on ``feeds`` with initializers replaced by ``overrides``.

        Args:
            nodes: node names, in topological order.
            feeds: values of the tensors the nodes read and do not produce
                (graph inputs, outputs of other nodes, alias names).
            overrides: initializer name -> value to use instead (same rank; any shape
                onnxruntime accepts).
            outputs: tensors to return; default every output of every node.
            aliases: (node, input port) -> the name that port reads instead.

        Returns:
            tensor name -> value.

        Raises:
            KeyError: a node name is not in the model, or an override names no initializer.
            UserError: a tensor the nodes read is neither fed nor a constant, or
                onnxruntime rejects the sub-model or the feeds.
        """
        overrides = dict(overrides or {})
        for name in overrides:
            if name not in self._inits:
                raise KeyError(f"override {name!r} is not an initializer of the model")
        values = {**feeds, **overrides}
        key = (tuple(nodes), tuple(sorted((k, np.asarray(v).dtype.str) for k, v in values.items())),
               None if outputs is None else tuple(outputs), tuple(sorted((aliases or {}).items())))
        entry = self._sessions.get(key)
        if entry is None:
            entry = self._build(list(nodes), values, outputs, dict(aliases or {}))
            self._sessions[key] = entry
        session, needed = entry
        try:
            result = session.run(None, {name: np.asarray(values[name]) for name in needed})
        except Exception as e:  # onnxruntime's errors have no common public base class
            raise UserError(f"onnxruntime failed running nodes {_shown(nodes)}: {_message(e)}") from None
        self.runs += 1
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, result))

    def clear(self) -> None:
        """Drop the cached sessions."""
        self._sessions.clear()

    # ------------------------------------------------------------------------------------------

    def _build(self, names: list[str], values: Mapping[str, np.ndarray], outputs: Sequence[str] | None,
               aliases: dict[tuple[str, int], str]) -> tuple[ort.InferenceSession, tuple[str, ...]]:
        missing = [n for n in names if n not in self._nodes]
        if missing:
            raise KeyError(f"no node named {missing[0]!r} in the model")
        for (node, port), _ in aliases.items():
            if node not in names:
                raise ValueError(f"alias for {node}:{port}, which is not among the nodes run")
        copies = []
        for name in names:
            node = onnx.NodeProto()
            node.CopyFrom(self._nodes[name])
            for port in range(len(node.input)):
                alias = aliases.get((name, port))
                if alias is not None:
                    node.input[port] = alias
            copies.append(node)
        produced: set[str] = set()
        read: list[str] = []
        for node in copies:
            for t in [*node.input, *node_outer_reads(node)]:
                if t and t not in produced:
                    read.append(t)
            produced.update(o for o in node.output if o)
        inputs, inits, needed = [], [], []
        for t in dict.fromkeys(read):
            if t in values:
                inputs.append(_value_info(t, np.asarray(values[t])))
                needed.append(t)
            elif t in self._inits:
                inits.append(self._inits[t])
            else:
                raise UserError(f"running nodes {_shown(names)}: tensor {t!r} is read but neither fed nor "
                                "a constant of the model")
        wanted = list(outputs) if outputs is not None else [o for n in copies for o in n.output if o]
        unknown = [t for t in wanted if t not in produced]
        if unknown:
            raise ValueError(f"output {unknown[0]!r} is not produced by nodes {_shown(names)}")
        graph = helper.make_graph(copies, "layer", inputs, [onnx.ValueInfoProto(name=t) for t in wanted], inits)
        sub = helper.make_model(graph, opset_imports=list(self._model.opset_import))
        sub.ir_version = self._model.ir_version
        sub.functions.extend(self._model.functions)
        try:
            session = open_session(sub, session_options(self._threads))
        except Exception as e:  # see run()
            raise UserError(f"onnxruntime cannot load nodes {_shown(names)} alone: {_message(e)}") from None
        self.sessions_built += 1
        return session, tuple(needed)


def _value_info(name: str, value: np.ndarray) -> onnx.ValueInfoProto:
    # Rank only, every dimension free: one session serves any batch or sequence length.
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype),
                                         [None] * value.ndim)


def _shown(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in list(names)[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _message(e: BaseException) -> str:
    text = " ".join(str(e).split())
    if text.startswith("[ONNXRuntimeError]"):
        text = text.split(" : ", 3)[-1]
    return text if len(text) <= 400 else text[:397] + "..."
