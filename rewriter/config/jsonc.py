"""JSON with comments (``//``, ``/* */``) and trailing commas, read into ruamel.yaml nodes.

The nodes are the ones ruamel.yaml builds for a YAML file, with the exact
line and column of every key and value in the original text, so that a JSON
and a YAML configuration file go through the same checks
(``rewriter.spec.yaml_nodes``) and every message names file:line:column.
"""
from __future__ import annotations

import bisect
import re
from pathlib import Path

from ruamel.yaml.error import StreamMark
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from rewriter.errors import SourceLoc
from rewriter.spec.yaml_nodes import MAX_NESTING, Problems, YamlFile

__all__ = ["ConfigFile", "JsonReader", "JsonSyntaxError"]

_TAG = "tag:yaml.org,2002:"
_STRING_CHUNK = re.compile(r'[^"\\\x00-\x1f]+')
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.+-]*")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class JsonSyntaxError(Exception):
    """A syntax error at character offset ``pos`` of the text."""

    def __init__(self, pos: int, message: str) -> None:
        super().__init__(message)
        self.pos = pos
        self.message = message


class JsonReader:
    """JSON plus // and /* */ comments and trailing commas, into ruamel.yaml nodes with exact marks.

    A hand-written reader rather than ruamel.yaml on comment-stripped text:
    YAML accepts much that is not JSON (unquoted keys, ``tru`` as a string,
    ``{"a": }`` as null) and reports a missing comma at the next ':'.
    """

    def __init__(self, text: str, name: str) -> None:
        self.text, self.name, self.pos = text, name, 0
        self.depth = 0  # objects and arrays open at ``pos``
        self._line_starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]

    def mark(self, pos: int) -> StreamMark:
        line = bisect.bisect_right(self._line_starts, pos) - 1
        return StreamMark(self.name, pos, line, pos - self._line_starts[line])

    def line_col(self, pos: int) -> tuple[int, int]:
        mark = self.mark(pos)
        return mark.line + 1, mark.column + 1

    def document(self) -> Node | None:
        self._skip()
        if self.pos == len(self.text):
            return None
        node = self._value("the document")
        self._skip()
        if self.pos < len(self.text):
            if self.text[self.pos] == ":" and isinstance(node, ScalarNode):
                raise JsonSyntaxError(self.pos, "a config file is one JSON object: wrap its content in { }")
            raise JsonSyntaxError(self.pos, f"unexpected {self._show()} after the end of the document")
        return node

    # ---------------------------------------------------------------- tokens

    def _show(self) -> str:
        if self.pos >= len(self.text):
            return "end of file"
        word = _WORD.match(self.text, self.pos)
        return f"'{word.group()}'" if word else repr(self.text[self.pos])

    def _skip(self) -> None:
        text, end = self.text, len(self.text)
        while self.pos < end:
            c = text[self.pos]
            if c in " \t\r\n\ufeff":
                self.pos += 1
            elif text.startswith("//", self.pos):
                newline = text.find("\n", self.pos)
                self.pos = end if newline < 0 else newline
            elif text.startswith("/*", self.pos):
                close = text.find("*/", self.pos + 2)
                if close < 0:
                    raise JsonSyntaxError(self.pos, "this /* comment is never closed")
                self.pos = close + 2
            else:
                return

    def _unclosed(self, start: int) -> JsonSyntaxError:
        line = self.text.count("\n") + 1
        return JsonSyntaxError(start, f"this '{self.text[start]}' is never closed (the file ends at line {line})")

    def _value(self, what: str) -> Node:
        if self.pos >= len(self.text):
            raise JsonSyntaxError(self.pos, f"the file ends where a value for {what} should be")
        c = self.text[self.pos]
        if c in "{[":
            # Each level is a Python call: refuse depths that would exhaust the stack.
            if self.depth >= MAX_NESTING:
                raise JsonSyntaxError(self.pos, f"objects and arrays nested more than {MAX_NESTING} levels deep; "
                                                "flatten the file")
            self.depth += 1
            node: Node = self._object() if c == "{" else self._array(what)
            self.depth -= 1
            return node
        if c == '"':
            return self._string()
        if c == "-" or c.isdigit():
            return self._number()
        if c == "'":
            raise JsonSyntaxError(self.pos, "JSON strings use double quotes")
        word = _WORD.match(self.text, self.pos)
        if word:
            return self._word(word.group())
        raise JsonSyntaxError(self.pos, f"expected a value for {what}, got {self._show()}")

    def _object(self) -> MappingNode:
        start = self.pos
        self.pos += 1
        pairs: list[tuple[Node, Node]] = []
        while True:
            self._skip()
            if self.pos >= len(self.text):
                raise self._unclosed(start)
            c = self.text[self.pos]
            if c == "}":
                break
            if c != '"':
                word = _WORD.match(self.text, self.pos)
                if word:
                    message = f"keys must be in double quotes: write \"{word.group()}\""
                elif c == "'":
                    message = "JSON strings use double quotes"
                else:
                    message = f"expected a key in double quotes or '}}', got {self._show()}"
                raise JsonSyntaxError(self.pos, message)
            key = self._string()
            self._skip()
            if self.pos >= len(self.text) or self.text[self.pos] != ":":
                raise JsonSyntaxError(self.pos, f"expected ':' after the key '{key.value}', got {self._show()}")
            self.pos += 1
            self._skip()
            pairs.append((key, self._value(f"'{key.value}'")))
            if not self._separator(start, "}", f"the value of '{key.value}'"):
                break
        self.pos += 1
        return MappingNode(_TAG + "map", pairs, self.mark(start), self.mark(self.pos), flow_style=True)

    def _array(self, what: str) -> SequenceNode:
        start = self.pos
        self.pos += 1
        items: list[Node] = []
        while True:
            self._skip()
            if self.pos >= len(self.text):
                raise self._unclosed(start)
            if self.text[self.pos] == "]":
                break
            items.append(self._value(f"an item of {what}"))
            if not self._separator(start, "]", f"an item of {what}"):
                break
        self.pos += 1
        return SequenceNode(_TAG + "seq", items, self.mark(start), self.mark(self.pos), flow_style=True)

    def _separator(self, start: int, close: str, after: str) -> bool:
        """After an item: True on ',' (more may follow), False on the closing bracket (left for the caller)."""
        end_of_value = self.pos
        self._skip()
        if self.pos >= len(self.text):
            raise self._unclosed(start)
        c = self.text[self.pos]
        if c == ",":
            self.pos += 1
            return True
        if c == close:
            return False
        if c in '"{[-' or c.isdigit() or _WORD.match(self.text, self.pos):
            raise JsonSyntaxError(end_of_value, f"missing ',' after {after}")
        hint = "; a key inside a list: is the '{' of an object missing?" if close == "]" and c == ":" else ""
        raise JsonSyntaxError(self.pos, f"expected ',' or '{close}' after {after}, got {self._show()}{hint}")

    def _string(self) -> ScalarNode:
        start, text = self.pos, self.text
        self.pos += 1
        parts: list[str] = []
        while True:
            chunk = _STRING_CHUNK.match(text, self.pos)
            if chunk:
                parts.append(chunk.group())
                self.pos = chunk.end()
            if self.pos >= len(text) or text[self.pos] == "\n":
                raise JsonSyntaxError(start, "this string is never closed (a string must end on its own line)")
            c = text[self.pos]
            if c == '"':
                self.pos += 1
                break
            if c == "\\":
                parts.append(self._escape())
            else:
                raise JsonSyntaxError(self.pos, "control character in a string; write it as an escape such as \\t")
        return ScalarNode(_TAG + "str", "".join(parts), self.mark(start), self.mark(self.pos), style='"')

    def _escape(self) -> str:
        text, at = self.text, self.pos
        code = text[at + 1: at + 2]
        if code in _ESCAPES:
            self.pos += 2
            return _ESCAPES[code]
        if code == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[at + 2: at + 6]):
            value = int(text[at + 2: at + 6], 16)
            self.pos += 6
            low = text[self.pos: self.pos + 6]
            if 0xD800 <= value < 0xDC00 and re.fullmatch(r"\\u[dD][c-fC-F][0-9a-fA-F]{2}", low):
                self.pos += 6
                return chr(0x10000 + ((value - 0xD800) << 10) + (int(low[2:], 16) - 0xDC00))
            return chr(value)
        raise JsonSyntaxError(at, f"invalid escape '\\{code}' in a string")

    def _number(self) -> ScalarNode:
        start = self.pos
        match = _NUMBER.match(self.text, start)
        end = match.end() if match else start
        if not match or (end < len(self.text) and (self.text[end].isalnum() or self.text[end] in "._")):
            token = re.match(r"[-+.\w]+", self.text[start:])
            shown = token.group() if token else self.text[start]
            raise JsonSyntaxError(start, f"'{shown}' is not a JSON number")
        self.pos = end
        tag = "float" if match.group(1) or match.group(2) else "int"
        return ScalarNode(_TAG + tag, match.group(), self.mark(start), self.mark(end))

    def _word(self, word: str) -> ScalarNode:
        start = self.pos
        tags = {"true": "bool", "false": "bool", "null": "null"}
        if word in tags:
            self.pos += len(word)
            return ScalarNode(_TAG + tags[word], word, self.mark(start), self.mark(self.pos))
        fix = {"True": "true", "False": "false", "None": "null", "Null": "null", "NULL": "null"}.get(word)
        if fix:
            raise JsonSyntaxError(start, f"JSON writes {word} as {fix}")
        raise JsonSyntaxError(start, f"unexpected word '{word}'; strings need double quotes")


class ConfigFile(YamlFile):
    """A config file: YAML by extension (.yaml/.yml), JSON with comments otherwise."""

    def __init__(self, path: Path, problems: Problems, text: str) -> None:
        super().__init__(path, problems)
        self.text = text

    def compose(self) -> Node | None:
        if self.path.suffix.lower() in (".yaml", ".yml"):
            return self.compose_text(self.text)
        reader = JsonReader(self.text, str(self.path))
        try:
            return reader.document()
        except JsonSyntaxError as exc:
            self.problems.add(SourceLoc(str(self.path), *reader.line_col(exc.pos)), f"JSON syntax error: {exc.message}")
            return None

