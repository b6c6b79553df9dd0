"""rewriter: declarative post-training quantization for ONNX models.

    >>> import rewriter
    >>> plan = rewriter.audit("model.onnx", target="CPU")                        # doctest: +SKIP
    >>> model, report = rewriter.quantize("model.onnx", data="calib/")          # doctest: +SKIP
    >>> result = rewriter.quantize("model.onnx", data="calib/", preset="mixed")  # doctest: +SKIP
    >>> result.plan.nodes[0].reason, result.report["fidelity"]["summary"]        # doctest: +SKIP

The public names (docs/api.md) are imported on first use, through the module's
``__getattr__``: ``import rewriter`` loads neither onnx nor onnxruntime nor
numpy, so the command line, which imports this package first, starts fast.
``help(rewriter.quantize)`` and editors show the real signatures and docstrings.
"""
from __future__ import annotations

import importlib

# Not typing.TYPE_CHECKING: importing typing would double the cost of `import rewriter` (3 ms of 5).
TYPE_CHECKING = False
if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from typing import Any

    from rewriter.api import audit, quantize, reverts_in_report, why
    from rewriter.errors import RuntimeRefused, SourceLoc, UserError, UserErrors
    from rewriter.match.explain import NodeExplanation
    from rewriter.match.planner import IgnoredOperation
    from rewriter.options import QuantizeOptions
    from rewriter.pipeline import QuantizeResult
    from rewriter.plan import QuantPlan

# Public name -> the module that defines it.
_LAZY = {
    "audit": "rewriter.api", "quantize": "rewriter.api", "why": "rewriter.api", "reverts_in_report": "rewriter.api",
    "QuantizeResult": "rewriter.pipeline", "QuantizeOptions": "rewriter.options", "QuantPlan": "rewriter.plan",
    "NodeExplanation": "rewriter.match.explain", "IgnoredOperation": "rewriter.match.planner",
    "UserError": "rewriter.errors", "UserErrors": "rewriter.errors", "RuntimeRefused": "rewriter.errors",
    "SourceLoc": "rewriter.errors",
}

__all__ = ["IgnoredOperation", "NodeExplanation", "QuantPlan", "QuantizeOptions", "QuantizeResult", "RuntimeRefused",
           "SourceLoc", "UserError", "UserErrors", "__version__", "audit", "quantize", "reverts_in_report", "why"]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return _version()
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rewriter' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, "__version__"})


def _version() -> str:
    """The installed distribution's version: pyproject.toml is its one source."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rewriter")
    except PackageNotFoundError:  # a checkout on sys.path that was never installed
        return "0+unknown"
