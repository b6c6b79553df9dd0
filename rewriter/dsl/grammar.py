"""The rule DSL's Lark parser (LALR, grammar.lark) and the mapping of its positions to source locations."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from lark import Lark, Token, Tree

from rewriter.errors import SourceLoc, source_excerpt

__all__ = ["MAX_NESTING", "Locator", "excerpt_at", "lark_parser", "too_deep"]

_GRAMMAR = Path(__file__).with_name("grammar.lark")

# Parse trees deeper than this are refused: the tree -> AST builder, the checks and the matcher all
# recurse once per level, and a few hundred levels (`not not not ...`) would exhaust Python's stack.
# A declaration with a predicate is about ten levels; the rest is room for nested not and parentheses.
MAX_NESTING = 100

# ---------------------------------------------------------------- the Lark parser


class _Continuations:
    """Postlexer: a newline ends a statement unless the statement cannot end there.

    Newlines inside (...) or [...] and after a token that needs a right-hand
    side (``,`` ``|`` ``->`` ``~>`` ``where`` ``and`` ``or`` ``not`` a comparison) are
    dropped, so a long predicate or action list may continue on the next line.
    """

    # The contextual lexer only tries the terminals the parser accepts next;
    # newlines must always be lexed so that this filter gets to see them.
    always_accept = ("_NL",)

    _CONTINUE_AFTER = frozenset({"COMMA", "VBAR", "_ARROW", "_MOVES", "_WHERE", "_AND", "_OR", "_NOT", "CMP", "IN"})
    _OPEN = frozenset({"LPAR", "LSQB"})
    _CLOSE = frozenset({"RPAR", "RSQB"})

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        depth = 0
        prev = ""
        for tok in stream:
            if tok.type == "_NL":
                if depth or prev in self._CONTINUE_AFTER:
                    continue
            elif tok.type in self._OPEN:
                depth += 1
            elif tok.type in self._CLOSE:
                depth = max(depth - 1, 0)
            prev = tok.type
            yield tok


@lru_cache(maxsize=1)
def lark_parser() -> Lark:
    """The parser for rule files (start ``start``) and lone predicates (start ``predicate``).

    Built once per process: building the LALR tables is the slow part.
    """
    return Lark(
        _GRAMMAR.read_text(encoding="utf-8"),
        parser="lalr",
        lexer="contextual",
        postlex=_Continuations(),
        propagate_positions=True,
        maybe_placeholders=True,
        start=["start", "predicate"],
    )


# ---------------------------------------------------------------- locations


@dataclass(frozen=True)
class Locator:
    """Maps Lark's 1-based line/column to a SourceLoc.

    For a predicate embedded in another file (a YAML ``when:`` string), the
    text's first line sits at ``line``/``column`` of that file.
    """

    file: str
    line: int = 1
    column: int = 1

    def at(self, line: int | None, column: int | None) -> SourceLoc:
        if not line:
            return SourceLoc(self.file, self.line, self.column)
        col = column or 1
        if line == 1:
            col += self.column - 1
        return SourceLoc(self.file, line + self.line - 1, col)


def excerpt_at(text: str, loc: SourceLoc, locator: Locator) -> str:
    """The caret excerpt of ``loc`` inside ``text``, the text ``locator`` was made for."""
    line = loc.line - locator.line + 1
    column = loc.column - (locator.column - 1 if line == 1 else 0)
    return source_excerpt(text, line, column)


def too_deep(tree: Tree) -> Tree | None:
    """The first subtree of ``tree`` deeper than ``MAX_NESTING`` levels, None if there is none.

    Walked with an explicit stack, so that any depth can be measured.
    """
    stack: list[tuple[Tree, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            return node
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))
    return None
