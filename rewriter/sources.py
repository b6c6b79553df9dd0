"""How rule and spec file locations are shown: relative to the targets root (the project root in a checkout,
the packaged targets folder in an installed wheel) when they lie inside it.

Plans, audits and the ``rewriter.source`` metadata of emitted nodes name the rule or spec entry behind
every decision as file:line:column; shown relative, the same plan renders the same on every machine.
"""
from __future__ import annotations

from pathlib import Path

from rewriter.errors import SourceLoc
from rewriter.plan import Decision
from rewriter.spec.builtin import BrokenInstallation, targets_root

#: The metadata_props key that every node the tool emits carries: the decision that put it there.
SOURCE_KEY = "rewriter.source"


def display_path(path: str) -> str:
    """A path relative to the targets root if inside it, else unchanged."""
    try:
        return Path(path).resolve().relative_to(targets_root()).as_posix()
    except (ValueError, OSError, BrokenInstallation):
        return path


def display_loc(loc: SourceLoc) -> str:
    return str(SourceLoc(display_path(loc.file), loc.line, loc.column)) if loc.file.endswith(
        (".rules", ".yaml", ".yml", ".json")) else str(loc)


def source_text(decision: Decision) -> str:
    """``insert by quantize_inputs @ rules/placement.rules:7:6``: the value of ``rewriter.source``."""
    return f"{decision.action} by {decision.source} @ {display_loc(decision.loc)}"


def pass_source(title: str) -> dict[str, str]:
    """The ``rewriter.source`` metadata of a node a numeric pass inserts (a bias Add, a smoothing Mul): the
    pass that made it; the option that turned the pass on is in the quantize report."""
    return {SOURCE_KEY: f"edit by {title} @ <pass>"}
