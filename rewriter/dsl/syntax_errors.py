"""Lark syntax errors as ``UserError``: location, caret excerpt, the honest list of what was expected and hints."""
from __future__ import annotations

import difflib
import re
from functools import cache
from typing import Collection

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr
from lark.parsers.lalr_interactive_parser import InteractiveParser

from rewriter.dsl.grammar import Locator, lark_parser
from rewriter.errors import UserError, source_excerpt

__all__ = ["syntax_error"]

# How expected terminals are named in messages; keywords and punctuation are quoted.
_TERMINAL_WORDS = {
    "_NL": "a newline",
    "NAME": "a name",
    "OPNAME": "an op type",
    "ATTRNAME": "an attribute name",
    "SPECCLASS": "a spec class (@quantizable, @agnostic, @unified)",
    "INT": "an integer",
    "NUMBER": "a number",
    "STRING": 'a string ("...")',
    "CMP": "a comparison ('==', '!=', '<', '<=', '>', '>=')",
    "DIRECTION": "'inputs' or 'outputs'",
}

# Lists that would drown the message are summarised when most of them are expected.
_VALUE_TERMS = frozenset({
    "_CONST", "_ATTR", "_SHAPE", "_OUT_SHAPE", "_RANK", "_DTYPE", "_FANOUT", "_NUM_INPUTS",
    "_GRAPH_INPUT", "_ZERO", "_PRESENT", "_STATIC", "_TRUE", "_FALSE", "_NONE", "NUMBER", "STRING", "LSQB",
})
_ACTIONS = frozenset({"_IGNORE", "_INSERT", "_REMOVE", "_PROPAGATE", "_UNIFY", "_SYMMETRIC", "_ASYMMETRIC",
                      "_PER_TENSOR", "_REQUANTIZE", "_INT32_BIAS"})
_TOP_LEVEL = frozenset({"_INCLUDE", "_PATTERN", "_RULE"})


@cache
def _describe(term: str) -> str:
    if term in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[term]
    try:
        pattern = lark_parser().get_terminal(term).pattern
    except KeyError:
        return term
    if isinstance(pattern, PatternStr):
        return f"'{pattern.value}'"
    word = re.fullmatch(r"(\w+)\\b", pattern.value)
    return f"'{word.group(1)}'" if word else term


def _expected_words(expected: Collection[str] | None, end: str = "the end of the file") -> str:
    if not expected:
        return ""
    terms = {t for t in expected if t not in ("WS", "COMMENT")}
    words: list[str] = []
    if len(terms & _VALUE_TERMS) >= 5:
        terms -= _VALUE_TERMS
        words.append("a value (const(i), attr.NAME, shape(i)[d], a number, a string, true, [...], ...)")
    if _ACTIONS <= terms:
        terms -= _ACTIONS
        words.append("an action (ignore, insert, remove, propagate, unify, symmetric, asymmetric, per_tensor, "
                     "requantize, int32_bias)")
    words.extend(sorted(end if t == "$END" else _describe(t) for t in terms))
    if len(words) == 1:
        return f"; expected {words[0]}"
    return "; expected one of: " + ", ".join(words)


def _acceptable(err: UnexpectedInput, fallback: Collection[str] | None) -> Collection[str] | None:
    """The terminals that would really let the parse go on at the error.

    Lark's own ``expected`` lists every terminal the lexer was ready for
    (newlines always, for the postlexer) and LALR look-aheads that only
    lead to a later error; trying each terminal on a copy of the parser
    state gives the honest list.
    """
    state = getattr(err, "state", None)
    if state is None or not hasattr(state, "parse_conf"):
        return fallback
    try:
        return InteractiveParser(None, state.copy(), state.lexer).accepts() or fallback
    except Exception:  # noqa: BLE001 - Lark internals; a worse list beats a crash while reporting an error
        return fallback


def _keyword_hint(what: str, expected: Collection[str] | None) -> str:
    """" (did you mean 'pattern'?)" when the unexpected word is a misspelt expected keyword."""
    word = re.fullmatch(r"unexpected '([A-Za-z_]\w*)'", what)
    if not word or not expected:
        return ""
    keywords = [d.strip("'") for d in map(_describe, expected) if re.fullmatch(r"'[a-z_]+'", d)]
    hit = difflib.get_close_matches(word.group(1), keywords, n=1, cutoff=0.75)
    return f" (did you mean '{hit[0]}'?)" if hit else ""


def _token_words(tok: Token) -> str:
    if tok.type == "$END":
        return "end of file"
    if tok.type == "_NL":
        return "end of line"
    return f"'{tok}'"


def _end_position(text: str) -> tuple[int, int]:
    """Line and column just past the last non-blank character (where EOF is felt)."""
    stripped = text.rstrip()
    if not stripped:
        return 1, 1
    line = stripped.count("\n") + 1
    column = len(stripped) - (stripped.rfind("\n") + 1) + 1
    return line, column


def syntax_error(
    err: UnexpectedInput, text: str, locator: Locator, source: str | None, predicate: bool = False
) -> UserError:
    """A Lark exception as a UserError.

    ``source`` is the whole file when ``text`` is a part of it (a predicate
    inside a YAML file); ``predicate`` words the message for a lone predicate.
    """
    hint = ""
    expected: Collection[str] | None
    if isinstance(err, UnexpectedToken) and err.token.type != "$END":
        tok = err.token
        line, column = tok.line, tok.column
        what = f"unexpected {_token_words(tok)}"
        expected = err.expected
        if tok.type in _TOP_LEVEL and "RBRACE" in expected:
            hint = " (is a '}' missing above?)"
        elif tok.type == "_MATCH" and _ACTIONS & set(expected):
            hint = " (a rule has exactly one 'match', before its actions)"
    elif isinstance(err, (UnexpectedToken, UnexpectedEOF)):
        line, column = _end_position(text)
        what = "unexpected end of file"
        expected = err.expected
    elif isinstance(err, UnexpectedCharacters):
        line, column = err.line, err.column
        # Lark declares pos_in_stream None on its base class; UnexpectedCharacters always sets the lexer's int.
        pos: int = err.pos_in_stream  # type: ignore[assignment]
        word = re.match(r"[A-Za-z0-9_.@]+", text[pos:])
        shown = word.group(0) if word else text[pos]
        what = f"unexpected '{shown}'"
        expected = err.allowed
    else:  # pragma: no cover - Lark raises only the three above
        line, column, what, expected = getattr(err, "line", 0), getattr(err, "column", 0), str(err), None
    expected = _acceptable(err, expected)
    if predicate and expected is not None:
        # A lone predicate is one line of YAML: newlines are not worth suggesting.
        expected = {t for t in expected if t != "_NL"}
        what = what.replace("end of file", "end of the predicate")
    if not hint:
        hint = _keyword_hint(what, expected)
    loc = locator.at(line, column)
    excerpt = source_excerpt(source, loc.line, loc.column) if source is not None else source_excerpt(text, line, column)
    end = "the end of the predicate" if predicate else "the end of the file"
    return UserError(what + _expected_words(expected, end) + hint, loc, excerpt)
