"""Hardware targets: the spec model (model.py) and the YAML loader (loader.py).

- ``load_spec(path)``: a spec file, its ``extends`` chain merged and validated;
- ``resolve_target(name_or_path)``: a built-in target name (any case) or a path;
- ``list_targets()``, ``builtin_specs_dir()``, ``spec_to_dict(spec)``;
- ``pot_devices()``: the original tool's device names the built-in targets serve.

The loader is imported on first use: it validates op types against onnx's
registry, and modules that only need the spec dataclasses should not pay for
importing onnx.
"""
from __future__ import annotations

import importlib
from typing import Any

from rewriter.spec.model import HardwareSpec, OpSpec, OpVariant, PotDevice, PotNames, QuantizerConfig

_LAZY = {
    name: "rewriter.spec.loader"
    for name in ("load_spec", "resolve_target", "list_targets", "builtin_specs_dir", "spec_to_dict", "pot_devices")
}

__all__ = ["HardwareSpec", "OpSpec", "OpVariant", "PotDevice", "PotNames", "QuantizerConfig", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rewriter.spec' has no attribute {name!r}")
