"""The IR layer: the only place (with calibrate/ and emit/) that touches onnx.

- ``load_model`` / ``save_model`` (load.py): read with clear errors, write atomically.
- ``normalize`` (normalize.py): constants to initializers, folding, BatchNormalization folding, names.
- ``graph_view`` (view.py): the onnx-free ``GraphView`` (graph.py) the matcher reads.

The onnx-backed functions are imported on first use, so that modules which only
need the onnx-free ``GraphView`` types (``rewriter.ir.graph``) do not pay for
importing onnx.
"""
from __future__ import annotations

import importlib
from typing import Any

from rewriter.ir.graph import GraphView, NodeInfo, TensorInfo

_LAZY = {
    "load_model": "rewriter.ir.load",
    "save_model": "rewriter.ir.load",
    "normalize": "rewriter.ir.normalize",
    "NormalizeResult": "rewriter.ir.normalize",
    "graph_view": "rewriter.ir.view",
}

__all__ = ["GraphView", "NodeInfo", "TensorInfo", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rewriter.ir' has no attribute {name!r}")
