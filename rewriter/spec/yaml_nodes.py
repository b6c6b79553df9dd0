"""Reading YAML with a location for every key and value, and collecting errors.

The spec loader works on ruamel.yaml's composed node tree rather than on the
constructed Python objects: every node keeps its line and column, and
duplicate keys can all be reported (ruamel's constructor stops at the first
one, and a plain dict would silently keep the last).

Nothing here knows the spec format; ``rewriter.spec.loader`` does.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.events import (CollectionEndEvent, CollectionStartEvent, DocumentStartEvent, MappingStartEvent,
                                ScalarEvent, StreamStartEvent)
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

from rewriter.errors import SourceLoc, UserError, UserErrors
from rewriter.io_utils import read_utf8

T = TypeVar("T")

_MERGE_TAG = "tag:yaml.org,2002:merge"

# Lists and mappings nested deeper than this are refused: ruamel composes them recursively (a few
# thousand levels exhaust Python's stack), and no spec or configuration file needs more than ten.
MAX_NESTING = 100


class Problems:
    """The user errors found so far while loading, in the order found."""

    def __init__(self) -> None:
        self.items: list[UserError] = []

    def add(self, loc: SourceLoc | None, message: str) -> None:
        self.items.append(UserError(message, loc))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        """Raise every error found, ordered by file (first seen first), then line and column."""
        if not self.items:
            return
        file_rank: dict[str, int] = {}
        for err in self.items:
            file_rank.setdefault(err.loc.file if err.loc else "", len(file_rank))

        def order(err: UserError) -> tuple[int, int, int]:
            loc = err.loc or SourceLoc("")
            return file_rank[loc.file], loc.line, loc.column

        unique: list[UserError] = []
        for err in sorted(self.items, key=order):
            if not unique or unique[-1].render() != err.render():
                unique.append(err)
        raise UserErrors(unique)


def suggest(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, or ``""`` when none is close."""
    # Compared case-insensitively: 'cpu' should find 'CPU', 'Bits' should find 'bits'.
    lowered = {c.lower(): c for c in choices}
    if word.lower() in lowered:
        exact = lowered[word.lower()]
        return f"; did you mean '{exact}'?" if exact != word else ""
    hits = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f"; did you mean '{lowered[hits[0]]}'?" if hits else ""


class YamlFile:
    """One YAML file being read: its path, its nodes, and where errors go."""

    def __init__(self, path: Path, problems: Problems) -> None:
        self.path = path
        self.problems = problems
        self._yaml = YAML(typ="rt")

    def compose(self) -> Node | None:
        """The file's root node; None (with the error recorded) if unreadable or not YAML."""
        try:
            text = read_utf8(self.path)
        except OSError as exc:
            self.problems.add(SourceLoc(str(self.path)), f"cannot read the spec file: {exc}")
            return None
        except UserError as exc:  # not UTF-8, located in the file
            self.problems.items.append(exc)
            return None
        return self.compose_text(text)

    def compose_text(self, text: str) -> Node | None:
        """The root node of YAML ``text``; None, with the error located in the file, if it is not YAML.

        Characters YAML forbids (control characters, NUL) and nesting deeper than
        ``MAX_NESTING`` are reported with line:column like any syntax error.
        """
        try:
            try:
                return self._compose(self._yaml, text)
            except NotImplementedError:
                # ruamel's round-trip parser gives up on some comment layouts ("overlap in comment": a
                # comment after a key whose value is a multi-word plain scalar, then a blank line); the
                # safe parser reads the same YAML, comments skipped, with the same marks.
                return self._compose(YAML(typ="safe", pure=True), text)
        except MarkedYAMLError as exc:
            self._syntax_error(exc)
        except ReaderError as exc:
            self._bad_character(text, exc)
        return None

    def _compose(self, yaml: YAML, text: str) -> Node | None:
        return yaml.compose(text) if self._nesting_ok(yaml, text) else None

    def top_level_strings(self, keys: Sequence[str]) -> dict[str, str]:
        """The string values of ``keys`` in the file's top-level mapping, read from the parser's events up
        to the last of them only: ``specs list`` needs a spec's name and description, and composing the
        whole file cost 0.06 s of CPU per spec. Any problem (unreadable, not YAML, not a mapping, a value
        that is not a string) leaves the key out; ``compose`` is what reports problems."""
        found: dict[str, str] = {}
        try:
            events = self._yaml.parse(read_utf8(self.path))
            root = next(e for e in events if not isinstance(e, (StreamStartEvent, DocumentStartEvent)))
            if not isinstance(root, MappingStartEvent):
                return found
            depth, expect_key, key = 1, True, None
            for event in events:
                if isinstance(event, CollectionStartEvent):
                    depth += 1
                    continue
                if isinstance(event, CollectionEndEvent):
                    depth -= 1
                    if depth == 0:  # the end of the top-level mapping
                        break
                    if depth == 1:  # a key or value that was a list or mapping is over
                        expect_key, key = not expect_key, None
                    continue
                if depth > 1:
                    continue
                if expect_key:
                    key = event.value if isinstance(event, ScalarEvent) else None
                elif (key is not None and key in keys and key not in found and isinstance(event, ScalarEvent)
                      and self._is_string(event)):
                    found[key] = event.value
                    if len(found) == len(keys):
                        break
                expect_key = not expect_key
        except (OSError, UserError, MarkedYAMLError, ReaderError, StopIteration, NotImplementedError):
            pass
        return found

    def _is_string(self, event: ScalarEvent) -> bool:
        """A quoted scalar, or a plain one YAML reads as a string (not null, a boolean or a number)."""
        tag = event.tag or self._yaml.resolver.resolve(ScalarNode, event.value, event.implicit)
        return str(tag).endswith(":str")

    def _nesting_ok(self, yaml: YAML, text: str) -> bool:
        # The parser's events come from a state machine, not recursion: counting them is safe at any depth.
        depth = 0
        for event in yaml.parse(text):
            if isinstance(event, CollectionStartEvent):
                depth += 1
                if depth > MAX_NESTING:
                    mark = event.start_mark
                    self.problems.add(SourceLoc(str(self.path), mark.line + 1, mark.column + 1),
                                      f"lists and mappings nested more than {MAX_NESTING} levels deep; "
                                      "flatten the file")
                    return False
            elif isinstance(event, CollectionEndEvent):
                depth -= 1
        return True

    def _bad_character(self, text: str, exc: ReaderError) -> None:
        position = exc.position if isinstance(exc.position, int) else 0
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
        self.problems.add(SourceLoc(str(self.path), line, column),
                          f"character U+{code:04X} is not allowed in YAML; remove it, or write it as an "
                          "escape (such as \\x01) inside a double-quoted string")

    def _syntax_error(self, exc: MarkedYAMLError) -> None:
        mark = exc.problem_mark or exc.context_mark
        loc = SourceLoc(str(self.path), mark.line + 1, mark.column + 1) if mark else SourceLoc(str(self.path))
        what = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem and exc.context_mark:
            what += f" ({exc.context} at line {exc.context_mark.line + 1})"
        self.problems.add(loc, f"YAML syntax error: {what}")

    def loc(self, node: Node) -> SourceLoc:
        mark = node.start_mark
        return SourceLoc(str(self.path), mark.line + 1, mark.column + 1)

    def content_loc(self, node: Node) -> SourceLoc:
        """Where a scalar's text starts: one column after an opening quote."""
        loc = self.loc(node)
        if isinstance(node, ScalarNode) and node.style in ("'", '"'):
            return SourceLoc(loc.file, loc.line, loc.column + 1)
        return loc

    def error(self, node: Node, message: str) -> None:
        self.problems.add(self.loc(node), message)

    # ------------------------------------------------------------ values

    def value(self, node: Node) -> object:
        """A scalar as a plain None/bool/int/float/str; a list or mapping node is returned as is."""
        if not isinstance(node, ScalarNode):
            return node
        tag = str(node.tag)
        if tag.endswith(":null"):
            return None
        if tag.endswith(":bool"):
            return node.value.lower() == "true"
        if tag.endswith(":int") or tag.endswith(":float"):
            try:
                number = self._yaml.constructor.construct_object(node, deep=True)
            except (ValueError, OverflowError):  # e.g. an integer longer than Python converts (4300 digits)
                self.error(node, f"the number {node.value[:24]}... ({len(node.value)} characters) is not one "
                                 "this file can hold; write a plain integer or decimal")
                return str(node.value)
            return int(number) if tag.endswith(":int") else float(number)
        return str(node.value)

    def kind(self, node: Node) -> str:
        """How to name what the user wrote, for 'expected X, got Y' messages."""
        if isinstance(node, MappingNode):
            return "a mapping"
        if isinstance(node, SequenceNode):
            return "a list"
        value = self.value(node)
        if value is None:
            return "null"
        if isinstance(value, bool):
            return f"the boolean {str(value).lower()}"
        if isinstance(value, (int, float)):
            return f"the number {node.value}"
        return f"the string '{value}'"

    def is_null(self, node: Node) -> bool:
        return isinstance(node, ScalarNode) and self.value(node) is None

    # ------------------------------------------------------------ mappings

    def pairs(self, node: Node, where: str, allowed: Sequence[str] | None = None,
              expected: str = "a mapping") -> list[tuple[str, ScalarNode, Node]]:
        """The (key, key node, value node) entries of a mapping, checked.

        Non-string keys, YAML merge keys, duplicate keys and (when ``allowed``
        is given) unknown keys are reported and left out.
        """
        if not isinstance(node, MappingNode):
            self.error(node, f"{where} must be {expected}, got {self.kind(node)}")
            return []
        out: list[tuple[str, ScalarNode, Node]] = []
        seen: dict[str, ScalarNode] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, where)
            if key is None:
                continue
            if key in seen:
                first = seen[key].start_mark.line + 1
                self.error(key_node, f"duplicate key '{key}' in {where} (first given at line {first}); "
                                     "remove one of them")
                continue
            seen[key] = key_node
            if allowed is not None and key not in allowed:
                hint = suggest(key, allowed) or f"; expected one of: {', '.join(allowed)}"
                self.error(key_node, f"unknown key '{key}' in {where}{hint}")
                continue
            out.append((key, key_node, value_node))
        return out

    def _key(self, key_node: Node, where: str) -> str | None:
        if str(key_node.tag) == _MERGE_TAG:
            self.error(key_node, f"YAML merge keys (<<) are not supported in {where}; "
                                 "use 'extends' or named configs instead")
            return None
        if not isinstance(key_node, ScalarNode) or not str(key_node.tag).endswith(":str"):
            self.error(key_node, f"keys in {where} must be names, got {self.kind(key_node)}")
            return None
        return str(key_node.value)

    # ------------------------------------------------------------ typed getters (None = error recorded)

    def get_str(self, node: Node, where: str) -> str | None:
        value = self.value(node)
        if isinstance(value, str):
            return value
        self.error(node, f"{where} must be a string, got {self.kind(node)}")
        return None

    def get_path(self, node: Node, where: str) -> str | None:
        """A string naming a file; a NUL character, which no file name can hold, is reported here."""
        text = self.get_str(node, where)
        if text is not None and "\0" in text:
            self.error(node, f"{where}: the path contains a NUL character (\\0), which no file name can hold; "
                             "remove it")
            return None
        return text

    def get_bool(self, node: Node, where: str) -> bool | None:
        value = self.value(node)
        if isinstance(value, bool):
            return value
        self.error(node, f"{where} must be true or false, got {self.kind(node)}")
        return None

    def get_int(self, node: Node, where: str, minimum: int | None = None) -> int | None:
        value = self.value(node)
        if not isinstance(value, int) or isinstance(value, bool):
            self.error(node, f"{where} must be an integer, got {self.kind(node)}")
            return None
        if minimum is not None and value < minimum:
            self.error(node, f"{where} must be at least {minimum}, got {value}")
            return None
        return value

    def get_enum(self, node: Node, where: str, choices: Sequence[str]) -> str | None:
        value = self.value(node)
        if isinstance(value, str) and value in choices:
            return value
        shown = f"'{value}'" if isinstance(value, str) else self.kind(node)
        hint = suggest(value, choices) if isinstance(value, str) else ""
        self.error(node, f"{where} must be one of {', '.join(choices)}, got {shown}{hint}")
        return None

    def get_list(self, node: Node, where: str, item: Callable[[Node, str], T | None],
                 example: str) -> list[tuple[T, Node]] | None:
        """A list whose items each pass ``item``; None if ``node`` is not a list.

        Items that fail are reported (by ``item``) and left out.
        """
        if not isinstance(node, SequenceNode):
            self.error(node, f"{where} must be a list, e.g. {example}; got {self.kind(node)}")
            return None
        out: list[tuple[T, Node]] = []
        for i, child in enumerate(node.value):
            value = item(child, f"{where}[{i}]")
            if value is not None:
                out.append((value, child))
        return out
