"""Parse rule files (docs/rules.md) into the syntax tree of ``rewriter.dsl.ast``.

Three steps, each with one job:

1. Lark (LALR, grammar.lark) turns text into a parse tree; a syntax error
   becomes a ``UserError`` with file:line:column, the source line and a caret,
   and the words it expected.
2. ``_Builder`` (a Lark Transformer) turns the tree into AST dataclasses. It
   checks nothing, except what the AST cannot hold: a port written on the
   wrong end of an edge chain is recorded, not raised.
3. ``rewriter.dsl.check`` validates the whole rule set at once and reports
   every problem it finds.

Example:
    >>> rs = parse_rules("pattern p { a : Conv }\\nrule r { match p; ignore }", "x.rules")
    >>> rs.rules[0].pattern
    'p'
"""
from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Collection, Iterator, Sequence, Union

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr
from lark.parsers.lalr_interactive_parser import InteractiveParser

from rewriter.dsl import ast
from rewriter.dsl.check import predicate_errors, ruleset_errors
from rewriter.errors import SourceLoc, UserError, UserErrors, source_excerpt

__all__ = ["parse_rules", "load_rules", "load_rule_files", "parse_predicate"]

_GRAMMAR = Path(__file__).with_name("grammar.lark")

# Syntax errors reported per file before giving up on it (each one costs a re-parse).
_MAX_SYNTAX_ERRORS = 20

# ---------------------------------------------------------------- the Lark parser


class _Continuations:
    """Postlexer: a newline ends a statement unless the statement cannot end there.

    Newlines inside (...) or [...] and after a token that needs a right-hand
    side (``,`` ``|`` ``->`` ``where`` ``and`` ``or`` ``not`` a comparison) are
    dropped, so a long predicate or action list may continue on the next line.
    """

    # The contextual lexer only tries the terminals the parser accepts next;
    # newlines must always be lexed so that this filter gets to see them.
    always_accept = ("_NL",)

    _CONTINUE_AFTER = frozenset({"COMMA", "VBAR", "_ARROW", "_WHERE", "_AND", "_OR", "_NOT", "CMP", "IN"})
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
def _lark() -> Lark:
    # Built once per process: building the LALR tables is the slow part.
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
class _Locator:
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


# ---------------------------------------------------------------- tree -> AST


@dataclass(frozen=True)
class _Include:
    path: str
    loc: SourceLoc


@dataclass(frozen=True)
class _Body:
    nodes: tuple[ast.PatternNode, ...]
    edges: tuple[ast.PatternEdge, ...]
    loc: SourceLoc


@dataclass(frozen=True)
class _Endpoint:
    name: str
    direction: str | None  # "in", "out" or None
    index: int | None
    loc: SourceLoc
    port_loc: SourceLoc


@dataclass(frozen=True)
class _Match:
    target: Union[str, _Body]
    loc: SourceLoc


_Item = Union[_Include, ast.Pattern, ast.Rule]

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _unquote(token: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), token[1:-1])


@v_args(meta=True)
class _Builder(Transformer):
    """Builds AST dataclasses from the parse tree; no semantic checks here.

    A port on the wrong end of an edge chain (``a.in[0] -> b``) has no place in
    the AST, so it is recorded in ``self.errors`` instead of raised: raising
    inside a Transformer comes out wrapped in a VisitError.
    """

    def __init__(self, locator: _Locator, source: str) -> None:
        super().__init__()
        self._locator = locator
        self._source = source
        self.errors: list[UserError] = []

    def _loc(self, meta) -> SourceLoc:
        if getattr(meta, "empty", True):
            return self._locator.at(None, None)
        return self._locator.at(meta.line, meta.column)

    def _tok(self, tok: Token) -> SourceLoc:
        return self._locator.at(tok.line, tok.column)

    # -- file level

    def start(self, meta, items) -> list[_Item]:
        out: list[_Item] = []
        for item in items:
            out.extend(item if isinstance(item, list) else [item])
        return out

    def predicate(self, meta, children) -> ast.Expr:
        return children[0]

    def include(self, meta, children) -> _Include:
        return _Include(_unquote(children[0]), self._loc(meta))

    # -- patterns

    def pattern(self, meta, children) -> ast.Pattern:
        name, body = children
        return ast.Pattern(str(name), body.nodes, body.edges, loc=self._tok(name))

    def pattern_body(self, meta, stmts) -> _Body:
        nodes = tuple(s for s in stmts if isinstance(s, ast.PatternNode))
        edges = tuple(e for s in stmts if isinstance(s, list) for e in s)
        return _Body(nodes, edges, self._loc(meta))

    def node(self, meta, children) -> ast.PatternNode:
        name, ops, where, optional = children
        return ast.PatternNode(str(name), ops, where, optional is not None, loc=self._tok(name))

    def alts(self, meta, children) -> tuple[str, ...]:
        return tuple(str(c) for c in children)

    def port(self, meta, children) -> tuple[str, int, SourceLoc]:
        direction, index = children
        return str(direction), int(index), self._loc(meta)

    def endpoint(self, meta, children) -> _Endpoint:
        name, port = children
        loc = self._tok(name)
        if port is None:
            return _Endpoint(str(name), None, None, loc, loc)
        return _Endpoint(str(name), port[0], port[1], loc, port[2])

    def chain(self, meta, eps: list[_Endpoint]) -> list[ast.PatternEdge]:
        first, last = eps[0], eps[-1]
        if first.direction == "in":
            self._error(
                f"'{first.name}.in[{first.index}]' is on the left of '->': an input port belongs on the "
                f"right (write 'x -> {first.name}.in[{first.index}]'), an output port on the left "
                f"('{first.name}.out[i] -> x')",
                first.port_loc,
            )
        if last.direction == "out":
            self._error(
                f"'{last.name}.out[{last.index}]' is on the right of '->': an output port belongs on the "
                f"left (write '{last.name}.out[{last.index}] -> x'), an input port on the right "
                f"('x -> {last.name}.in[j]')",
                last.port_loc,
            )
        # Each arrow is one edge: the left endpoint's .out[i] is its source port,
        # the right endpoint's .in[j] its destination port.
        return [
            ast.PatternEdge(
                left.name,
                right.name,
                src_port=left.index if left.direction == "out" else None,
                dst_port=right.index if right.direction == "in" else None,
                loc=left.loc,
            )
            for left, right in zip(eps, eps[1:])
        ]

    def _error(self, message: str, loc: SourceLoc) -> None:
        self.errors.append(UserError(message, loc, _excerpt(self._source, loc, self._locator)))

    # -- rules

    def rule(self, meta, children) -> list[_Item]:
        name, match, *actions = children
        rule_name = str(name)
        loc = self._tok(name)
        if isinstance(match.target, _Body):
            # An inline pattern is named after its rule.
            body = match.target
            inline = ast.Pattern(rule_name, body.nodes, body.edges, loc=body.loc)
            return [inline, ast.Rule(rule_name, rule_name, tuple(actions), loc=loc)]
        return [ast.Rule(rule_name, match.target, tuple(actions), loc=loc)]

    def match(self, meta, children) -> _Match:
        (target,) = children
        return _Match(target if isinstance(target, _Body) else str(target), self._loc(meta))

    def ignore(self, meta, names) -> ast.Ignore:
        return ast.Ignore(tuple(str(n) for n in names), loc=self._loc(meta))

    def insert(self, meta, refs) -> ast.Insert:
        return ast.Insert(tuple(refs), loc=self._loc(meta))

    def remove(self, meta, targets) -> ast.Remove:
        return ast.Remove(tuple(targets), loc=self._loc(meta))

    def edgeref(self, meta, children) -> ast.EdgeRef:
        src, dst = children
        return ast.EdgeRef(str(src), str(dst), loc=self._tok(src))

    def propagate(self, meta, names) -> ast.Propagate:
        return ast.Propagate(tuple(str(n) for n in names), loc=self._loc(meta))

    def unify(self, meta, refs) -> ast.Unify:
        return ast.Unify(tuple(refs), loc=self._loc(meta))

    def symmetric(self, meta, refs) -> ast.Symmetric:
        return ast.Symmetric(tuple(refs), loc=self._loc(meta))

    def asymmetric(self, meta, refs) -> ast.Asymmetric:
        return ast.Asymmetric(tuple(refs), loc=self._loc(meta))

    def requantize(self, meta, refs) -> ast.Requantize:
        outputs, inputs = refs
        return ast.Requantize(outputs, inputs, loc=self._loc(meta))

    def int32_bias(self, meta, names) -> ast.Int32Bias:
        return ast.Int32Bias(tuple(str(n) for n in names), loc=self._loc(meta))

    def portref(self, meta, children) -> ast.PortRef:
        name, direction, ports = children
        return ast.PortRef(str(name), str(direction), ports, loc=self._tok(name))  # type: ignore[arg-type]

    def ports(self, meta, ints) -> tuple[int, ...]:
        return tuple(int(i) for i in ints)

    # -- predicates

    def or_expr(self, meta, items) -> ast.Or:
        return ast.Or(tuple(items), loc=self._loc(meta))

    def and_expr(self, meta, items) -> ast.And:
        return ast.And(tuple(items), loc=self._loc(meta))

    def not_(self, meta, children) -> ast.Not:
        return ast.Not(children[0], loc=self._loc(meta))

    def compare(self, meta, children) -> ast.Compare:
        left, op, right = children
        return ast.Compare(op, left, right, loc=self._loc(meta))

    def compare_op(self, meta, children) -> str:
        return str(children[0])

    def not_in(self, meta, children) -> str:
        return "not in"

    def const(self, meta, children) -> ast.ConstInput:
        return ast.ConstInput(int(children[0]), loc=self._loc(meta))

    def attr(self, meta, children) -> ast.AttrRef:
        return ast.AttrRef(str(children[0]), loc=self._loc(meta))

    def shape(self, meta, children) -> ast.ShapeRef:
        return ast.ShapeRef(int(children[0]), int(children[1]), loc=self._loc(meta))

    def out_shape(self, meta, children) -> ast.ShapeRef:
        return ast.ShapeRef(int(children[0]), int(children[1]), output=True, loc=self._loc(meta))

    def rank(self, meta, children) -> ast.RankRef:
        return ast.RankRef(int(children[0]), loc=self._loc(meta))

    def dtype(self, meta, children) -> ast.DtypeRef:
        return ast.DtypeRef(int(children[0]), loc=self._loc(meta))

    def fanout(self, meta, children) -> ast.NodeProp:
        return ast.NodeProp("fanout", loc=self._loc(meta))

    def num_inputs(self, meta, children) -> ast.NodeProp:
        return ast.NodeProp("num_inputs", loc=self._loc(meta))

    def graph_input(self, meta, children) -> ast.GraphInput:
        return ast.GraphInput(int(children[0]), loc=self._loc(meta))

    def zero(self, meta, children) -> ast.InputTest:
        return ast.InputTest("zero", int(children[0]), loc=self._loc(meta))

    def present(self, meta, children) -> ast.InputTest:
        return ast.InputTest("present", int(children[0]), loc=self._loc(meta))

    def static(self, meta, children) -> ast.InputTest:
        return ast.InputTest("static", int(children[0]), loc=self._loc(meta))

    def number(self, meta, children) -> ast.Lit:
        text = str(children[0])
        value: object = int(text) if re.fullmatch(r"-?[0-9]+", text) else float(text)
        return ast.Lit(value, loc=self._loc(meta))

    def string(self, meta, children) -> ast.Lit:
        return ast.Lit(_unquote(children[0]), loc=self._loc(meta))

    def true(self, meta, children) -> ast.Lit:
        return ast.Lit(True, loc=self._loc(meta))

    def false(self, meta, children) -> ast.Lit:
        return ast.Lit(False, loc=self._loc(meta))

    def none(self, meta, children) -> ast.Lit:
        return ast.Lit(None, loc=self._loc(meta))

    def list_lit(self, meta, items) -> ast.Lit:
        return ast.Lit(tuple(i.value for i in items), loc=self._loc(meta))


# ---------------------------------------------------------------- syntax errors

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
                      "_REQUANTIZE", "_INT32_BIAS"})
_TOP_LEVEL = frozenset({"_INCLUDE", "_PATTERN", "_RULE"})


@lru_cache(maxsize=None)
def _describe(term: str) -> str:
    if term in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[term]
    try:
        pattern = _lark().get_terminal(term).pattern
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
        words.append("an action (ignore, insert, remove, propagate, unify, symmetric, asymmetric, requantize, "
                     "int32_bias)")
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


def _excerpt(text: str, loc: SourceLoc, locator: _Locator) -> str:
    """The caret excerpt of ``loc`` inside ``text``, the text ``locator`` was made for."""
    line = loc.line - locator.line + 1
    column = loc.column - (locator.column - 1 if line == 1 else 0)
    return source_excerpt(text, line, column)


def _syntax_error(
    err: UnexpectedInput, text: str, locator: _Locator, source: str | None, predicate: bool = False
) -> UserError:
    """A Lark exception as a UserError.

    ``source`` is the whole file when ``text`` is a part of it (a predicate
    inside a YAML file); ``predicate`` words the message for a lone predicate.
    """
    hint = ""
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
        word = re.match(r"[A-Za-z0-9_.@]+", text[err.pos_in_stream:])
        shown = word.group(0) if word else text[err.pos_in_stream]
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


# ---------------------------------------------------------------- one file

_TOP_LINE = re.compile(r"(include|pattern|rule)\b")


def _parse_file(text: str, filename: str) -> tuple[list[_Item], list[UserError], list[UserError]]:
    """Parse one file: (items, syntax errors, other build errors).

    After a syntax error, parsing resumes at the next line that starts (in
    column 1) with ``include``, ``pattern`` or ``rule``, so that one run reports
    the syntax errors of several declarations. The skipped lines are replaced
    by empty lines so that line numbers stay true.
    """
    locator = _Locator(filename)
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    syntax: list[UserError] = []
    chunk, chunk_line = text, 0  # chunk_line: 0-based first line parsed
    while True:
        try:
            tree = _lark().parse(chunk, start="start")
        except UnexpectedInput as err:
            syntax.append(_syntax_error(err, chunk, locator, text))
            if isinstance(err, UnexpectedEOF) or getattr(getattr(err, "token", None), "type", "") == "$END":
                break
            err_line = (err.line or 1) - 1
            # An error at column 1 of a declaration line usually means the
            # previous block was left open: restart at that line itself.
            first = err_line if err.column == 1 else err_line + 1
            first = max(first, chunk_line + 1)
            resume = next(
                (i for i in range(first, len(line_starts)) if _TOP_LINE.match(text, line_starts[i])), None
            )
            if resume is None or len(syntax) >= _MAX_SYNTAX_ERRORS:
                break
            chunk, chunk_line = "\n" * resume + text[line_starts[resume]:], resume
            continue
        if syntax:
            break
        builder = _Builder(locator, text)
        items = builder.transform(tree)
        return items, [], builder.errors
    return [], syntax, []


# ---------------------------------------------------------------- files and includes


class _Loader:
    """Expands includes depth-first, each file once, and collects every error."""

    def __init__(self) -> None:
        self.patterns: list[ast.Pattern] = []
        self.rules: list[ast.Rule] = []
        self.files: list[str] = []
        self.sources: dict[str, str] = {}
        self.fatal: list[UserError] = []  # I/O and syntax errors: the rule set is incomplete
        self.soft: list[UserError] = []  # errors found while building; checks still run
        self._loaded: set[str] = set()

    @staticmethod
    def _key(path: str) -> str:
        return os.path.realpath(path)

    def load_path(self, path: str) -> None:
        if self._key(path) in self._loaded:
            return
        try:
            text = _read(path)
        except (OSError, UnicodeDecodeError) as exc:
            self.fatal.append(UserError(f"cannot read the rule file: {_why(exc)}", SourceLoc(path)))
            return
        self.add_text(text, path, [])

    def add_text(self, text: str, filename: str, stack: list[str]) -> None:
        self._loaded.add(self._key(filename))
        self.files.append(filename)
        self.sources[filename] = text
        items, syntax, soft = _parse_file(text, filename)
        self.fatal.extend(syntax)
        self.soft.extend(soft)
        chain = stack + [filename]
        for item in items:
            if isinstance(item, ast.Pattern):
                self.patterns.append(item)
            elif isinstance(item, ast.Rule):
                self.rules.append(item)
            else:
                self._include(item, chain)

    def _include(self, inc: _Include, chain: list[str]) -> None:
        including = chain[-1]
        path = os.path.normpath(os.path.join(os.path.dirname(including), inc.path))
        key = self._key(path)
        excerpt = source_excerpt(self.sources[including], inc.loc.line, inc.loc.column)
        on_stack = [self._key(f) for f in chain]
        if key in on_stack:
            cycle = chain[on_stack.index(key):] + [path]
            self.fatal.append(UserError("include cycle: " + " -> ".join(cycle), inc.loc, excerpt))
            return
        if key in self._loaded:
            return  # already expanded at its first position
        try:
            text = _read(path)
        except (OSError, UnicodeDecodeError) as exc:
            message = f"cannot read included file '{inc.path}' ({path}): {_why(exc)}"
            self.fatal.append(UserError(message, inc.loc, excerpt))
            return
        self.add_text(text, path, chain)

    def finish(self) -> ast.RuleSet:
        if self.fatal:
            raise UserErrors(self.fatal)
        ruleset = ast.RuleSet(tuple(self.patterns), tuple(self.rules), tuple(self.files))
        errors = self.soft + ruleset_errors(ruleset, self.sources)
        if errors:
            raise UserErrors(_sorted(errors, self.files))
        return ruleset


def _sorted(errors: list[UserError], files: list[str]) -> list[UserError]:
    order = {f: i for i, f in enumerate(files)}

    def key(e: UserError) -> tuple[int, int, int]:
        loc = e.loc or SourceLoc("")
        return order.get(loc.file, len(order)), loc.line, loc.column

    return sorted(errors, key=key)


def _why(exc: OSError | UnicodeDecodeError) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"it is not UTF-8 text (byte {exc.start})"
    return exc.strerror or str(exc)


def _read(path: str) -> str:
    text = Path(path).read_text(encoding="utf-8")
    return text[1:] if text.startswith("\ufeff") else text


# ---------------------------------------------------------------- public API


def parse_rules(text: str, filename: str) -> ast.RuleSet:
    """Parse rule-file text, expand its includes and check the result.

    Args:
        text: the file's contents.
        filename: its path, used in error locations and to resolve includes
            (relative to the file's folder).

    Returns:
        The rule set: patterns and rules in file order, includes expanded in
        place, each inline ``match { ... }`` pattern named after its rule.

    Raises:
        UserErrors: every syntax error (per file), unreadable include, include
            cycle and semantic problem found.
    """
    loader = _Loader()
    loader.add_text(text[1:] if text.startswith("\ufeff") else text, str(filename), [])
    return loader.finish()


def load_rules(path: str | os.PathLike[str]) -> ast.RuleSet:
    """Read and parse one rule file (see ``parse_rules``).

    Raises:
        UserErrors: the file cannot be read, or any error of ``parse_rules``.
    """
    return load_rule_files([path])


def load_rule_files(paths: Sequence[str | os.PathLike[str]]) -> ast.RuleSet:
    """Load several top-level rule files into one rule set, in order.

    A file reached twice (listed twice, or included through two routes) is
    loaded once, at its first position; a cycle of includes is an error.

    Raises:
        UserErrors: every problem found in any of the files.
    """
    loader = _Loader()
    for path in paths:
        loader.load_path(str(path))
    return loader.finish()


def parse_predicate(text: str, loc: SourceLoc, source: str | None = None) -> ast.Expr:
    """Parse a predicate on its own, such as a hardware spec's ``when:`` string.

    Args:
        text: the predicate, e.g. ``attr.group == 1 and const(1)``.
        loc: where ``text`` starts in its file; error locations are offset
            from it (columns on the first line, lines after that).
        source: the whole text of ``loc.file``, to show the offending line in
            errors; without it the predicate alone is shown.

    Raises:
        UserErrors: a syntax error, or a check failure (a negative input index).

    Example:
        >>> expr = parse_predicate("rank(0) == 4", SourceLoc("cpu.yaml", 12, 11))
        >>> expr.op, expr.right.value, str(expr.right.loc)
        ('==', 4, 'cpu.yaml:12:22')
    """
    locator = _Locator(loc.file, loc.line or 1, loc.column or 1)
    try:
        tree = _lark().parse(text, start="predicate")
    except UnexpectedInput as err:
        raise UserErrors([_syntax_error(err, text, locator, source, predicate=True)]) from None
    expr = _Builder(locator, text).transform(tree)
    problems = predicate_errors(expr)
    if problems:
        raise UserErrors([
            UserError(
                msg,
                where,
                source_excerpt(source, where.line, where.column) if source is not None
                else _excerpt(text, where, locator),
            )
            for msg, where in problems
        ])
    return expr
