"""A resolved spec as a table for reading in a terminal (``rewriter specs show NAME --format table``).

The JSON form repeats every config's full description at every op that allows it
(841 lines for CPU); the table names each config once, with its alternatives, and
then gives one line per op type with the config names it allows.

Example:
    >>> from rewriter.spec.loader import load_spec, resolve_target
    >>> print(spec_table(load_spec(resolve_target("cpu"))).splitlines()[0])   # doctest: +ELLIPSIS
    CPU: x86 CPU: 8-bit activations and weights (POT cpu.json)
"""
from __future__ import annotations

from typing import Sequence

from rewriter.spec.model import HardwareSpec, OpSpec, QuantizerConfig

__all__ = ["spec_table"]

_NONE = "-"
_PASS_THROUGH = {"first": "input 0", "all": "every input", "non_const": "every non-constant input"}


def spec_table(spec: HardwareSpec) -> str:
    """The spec's header, its named configs, and one row per op type (in the spec's order)."""
    lines = [f"{spec.name}: {spec.description}" if spec.description else spec.name,
             f"  file: {spec.path}"]
    if spec.extends:
        lines.append(f"  extends: {' -> '.join(spec.extends)}")
    lines.append(f"  rules: {', '.join(spec.rules) or _NONE}")
    lines.append(f"  activation storage: {spec.activation_storage}; saturation fix: {spec.saturation_fix}")
    if spec.model_types:
        lines.append("  model types: " + "; ".join(f"{name}: {', '.join(files)}"
                                                   for name, files in spec.model_types.items()))
    lines.append("")
    lines += _columns(["config", "alternatives (tried in this order)"],
                      [[name, " | ".join(_settings(c) for c in expansions)]
                       for name, expansions in spec.configs.items()])
    lines.append("")
    rows = []
    for op_type, op in spec.ops.items():
        rows.append([op_type, _names(op.activations), _names(op.weights), _names(op.outputs), _ports(op),
                     _notes(op)])
        for variant in op.variants:
            rows.append([f"  variant {variant.name}", _names(variant.activations), _names(variant.weights),
                         _names(variant.outputs), "", f"when {variant.when}"])
    lines += _columns(["op type", "activations", "weights", "outputs", "ports", "notes"], rows)
    return "\n".join(lines) + "\n"


def _settings(config: QuantizerConfig) -> str:
    """``describe()`` without the name: the name heads the row already."""
    text = config.describe()
    return text[len(config.name) + 1:-1]


def _names(configs: Sequence[QuantizerConfig]) -> str:
    return ",".join(dict.fromkeys(c.name for c in configs)) or _NONE


def _ports(op: OpSpec) -> str:
    return "all" if op.ports is None else ",".join(str(p) for p in op.ports)


def _notes(op: OpSpec) -> str:
    notes = []
    if op.agnostic:
        moves_to = _PASS_THROUGH.get(op.pass_through, op.pass_through)
        notes.append(f"agnostic: an output FakeQuantize moves up to {moves_to}")
    if op.unified_scales == "all":
        notes.append("one scale for all inputs")
    elif op.unified_scales:
        notes.append("one scale per input group " + " ".join("[" + ",".join(str(p) for p in group) + "]"
                                                              for group in op.unified_scales))
    if op.note:
        notes.append(op.note)
    return "; ".join(notes)


def _columns(header: list[str], rows: list[list[str]]) -> list[str]:
    """Rows aligned under the header; the last column is not padded."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    rule = ["-" * len(h) for h in header]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[-1]]).rstrip()
            for row in [header, rule, *rows]]
