"""The checked-key mini-language: what each key's value must be, and the walk that checks a file against it.

A schema is a tree of ``Field``: ``section(**keys)`` for a mapping with
known keys, ``enum(...)``, ``integer(low)``, ``number(low, high)``, ``BOOL``,
``STR``, ``Field("list", item=...)`` and ``FREE`` (anything). ``SchemaChecker``
walks a ruamel.yaml node tree once against a schema: every unknown key
(with the closest valid one), wrong type or value out of range is reported
with its file:line:column, and the checked values come back as plain Python.
It remembers where each key and value was written (its path in the file,
"compression.algorithms[0].params"), for messages about the values later.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from ruamel.yaml.nodes import MappingNode, Node, SequenceNode

from rewriter.config.jsonc import ConfigFile
from rewriter.config.results import Notice
from rewriter.errors import SourceLoc
from rewriter.spec.yaml_nodes import suggest

__all__ = ["BOOL", "FREE", "STR", "Field", "SchemaChecker", "enum", "freeze", "integer", "join", "number",
           "section"]


@dataclass(frozen=True)
class Field:
    """What one key's value must be."""

    kind: str  # int | number | bool | str | enum | list | section | free
    choices: tuple[str, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    keys: Mapping[str, Field] = field(default_factory=dict)
    item: Field | None = None
    required: tuple[str, ...] = ()
    example: str = "[...]"  # for "must be a list, e.g. ..."


def integer(low: int | None = None) -> Field:
    return Field("int", low=low)


def number(low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False) -> Field:
    return Field("number", low=low, high=high, low_open=low_open, high_open=high_open)


def enum(*choices: str, aliases: Mapping[str, str] | None = None) -> Field:
    return Field("enum", choices=choices, aliases=MappingProxyType(dict(aliases or {})))


def section(required: tuple[str, ...] = (), /, **keys: Field) -> Field:
    return Field("section", keys=MappingProxyType(keys), required=required)


BOOL, STR, FREE = Field("bool"), Field("str"), Field("free")


def freeze(value: Any) -> Any:
    """Plain dicts and lists as read-only mappings and tuples."""
    if isinstance(value, dict):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value


def join(where: str, key: str) -> str:
    """The path of ``key`` inside ``where``."""
    return key if where == "the top level" else f"{where}.{key}"


class SchemaChecker:
    """Walks a node tree against a schema, reporting into the file's problems.

    ``hints`` maps a key that is unknown where it was written to what to tell
    the user (when no valid key is close to it), such as where it belongs.
    """

    def __init__(self, f: ConfigFile, hints: Mapping[str, str] = MappingProxyType({})) -> None:
        self.f = f
        self.hints = hints
        self.locs: dict[str, SourceLoc] = {}      # path in the file -> where its value starts
        self.key_locs: dict[str, SourceLoc] = {}  # path in the file -> where its key starts
        self.warnings: list[Notice] = []
        self.unsupported: list[Notice] = []  # what the file asks for and this version does not run

    def error(self, where: str, message: str, key: bool = False) -> None:
        loc = (self.key_locs if key else self.locs).get(where) or self.locs.get(where)
        self.f.problems.add(loc or SourceLoc(str(self.f.path)), message)

    def loc(self, where: str, key: bool = False) -> SourceLoc:
        """Where the value at ``where`` starts (its key with ``key``)."""
        first, second = (self.key_locs, self.locs) if key else (self.locs, self.key_locs)
        return first.get(where) or second.get(where) or SourceLoc(str(self.f.path))

    def entries(self, node: Node, where: str, allowed: Any) -> list[tuple[str, Node]]:
        """A mapping's (key, value node) pairs; duplicates and unknown keys reported and left out."""
        out = []
        for key, key_node, value_node in self.f.pairs(node, where):
            path = join(where, key)
            self.key_locs[path] = self.f.loc(key_node)
            self.locs[path] = self.f.loc(value_node)
            if allowed is not None and key not in allowed:
                hint = suggest(key, allowed) or self.hints.get(key) or f"; expected one of: {', '.join(allowed)}"
                self.f.error(key_node, f"unknown key '{key}' in {where}{hint}")
                continue
            out.append((key, value_node))
        return out

    def walk(self, node: Node, spec: Field, where: str) -> Any:
        """The value of ``node`` as plain Python, checked against ``spec``; None if null or wrong."""
        f = self.f
        self.locs.setdefault(where, f.loc(node))
        if f.is_null(node):
            return None
        if spec.kind == "section":
            out = {}
            entries = self.entries(node, where, tuple(spec.keys))
            for key, child in entries:
                value = self.walk(child, spec.keys[key], join(where, key))
                if value is not None:
                    out[key] = value
            for key in spec.required:
                if isinstance(node, MappingNode) and key not in dict(entries):
                    f.error(node, f"{where} needs '{key}'")
            return out
        if spec.kind == "list":
            item = spec.item
            assert item is not None
            items = f.get_list(node, where, lambda child, w: self.walk(child, item, w), spec.example)
            return None if items is None else [value for value, _ in items]
        if spec.kind == "free":
            return self.plain(node, where)
        if spec.kind == "enum":
            return self._enum(node, spec, where)
        if spec.kind == "int":
            value = f.get_int(node, where, None if spec.low is None else int(spec.low))
            return value
        if spec.kind == "number":
            return self._number(node, spec, where)
        return f.get_bool(node, where) if spec.kind == "bool" else f.get_str(node, where)

    def _enum(self, node: Node, spec: Field, where: str) -> str | None:
        """One of the choices (or an alias's meaning), in any case: ``Performance`` is ``performance``, as
        ``target_device`` and ``model_type`` take any case too."""
        value = self.f.value(node)
        if isinstance(value, str):
            folded = value.casefold()
            for alias, meaning in spec.aliases.items():
                if alias.casefold() == folded:
                    return meaning
            for choice in spec.choices:
                if choice.casefold() == folded:
                    return choice
        return self.f.get_enum(node, where, spec.choices + tuple(spec.aliases))

    def _number(self, node: Node, spec: Field, where: str) -> float | None:
        value = self.f.value(node)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            self.f.error(node, f"{where} must be a number, got {self.f.kind(node)}")
            return None
        value = float(value)
        low_bad = spec.low is not None and (value <= spec.low if spec.low_open else value < spec.low)
        high_bad = spec.high is not None and (value >= spec.high if spec.high_open else value > spec.high)
        if low_bad or high_bad:
            lo = "" if spec.low is None else f"{'(' if spec.low_open else '['}{spec.low:g}"
            hi = "" if spec.high is None else f"{spec.high:g}{')' if spec.high_open else ']'}"
            wanted = f"in {lo}, {hi}" if lo and hi else (f"greater than {spec.low:g}" if spec.low_open else
                                                         f"at least {spec.low:g}") if lo else f"at most {spec.high:g}"
            self.f.error(node, f"{where} must be {wanted}, got {node.value}")
            return None
        return value

    def plain(self, node: Node, where: str) -> Any:
        """Any value as plain Python (mappings still checked for duplicate keys)."""
        if isinstance(node, MappingNode):
            return {k: self.plain(v, join(where, k)) for k, v in self.entries(node, where, None)}
        if isinstance(node, SequenceNode):
            return [self.plain(v, f"{where}[{i}]") for i, v in enumerate(node.value)]
        self.locs.setdefault(where, self.f.loc(node))
        return self.f.value(node)
