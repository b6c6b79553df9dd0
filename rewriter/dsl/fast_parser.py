"""A hand-written parser for well-formed rule files: the fast path of ``rewriter.dsl.parser``.

Lark's LALR parser builds a parse tree that ``AstBuilder`` then walks; at about 0.4 MB/s a 6 MB rule
file took over 15 CPU seconds. This module reads the same grammar (grammar.lark) by recursive descent
straight into the AST, with the same locations, several times faster.

It only handles text it is sure of. At the first thing it does not expect (any syntax error, a
character outside ASCII other than in a string or a comment, an expression nested deeper than any
real rule needs) it gives up, saying which declarations it had read, and the caller has Lark parse the
rest, which finds the errors and words them. So error messages stay Lark's, and a file this parser accepts is one Lark
accepts too: tests/dsl/test_dsl_fast_parser.py compares the two parsers' ASTs, locations included.

How Lark reads the grammar, and how this parser copies it:

- Lark's lexer is contextual: in each parser state it tries only the terminals that state accepts.
  So a word is an op type after ``:``, an attribute name after ``attr.``, a keyword in a predicate and
  a name elsewhere. The scanner below only cuts words; the parser gives each word its terminal type
  where it reads it, as Lark's state would.
- The postlexer (``grammar._Continuations``) drops a newline inside brackets or after a token that
  cannot end a statement. It decides from the previous token's type, so the scanner applies the same
  rule with the types the parser gave.
- A rule's location is its first token's, including keywords and brackets left out of the tree. A
  parenthesised expression keeps its own start, but an expression it begins starts at the '('
  (Lark's "container" position): ``(a or b) and c`` starts at the '(', its ``a or b`` at ``a``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Literal

from rewriter.dsl import ast
from rewriter.dsl.builder import Endpoint, Include, Item, chain_edges, number_value, unquote
from rewriter.dsl.grammar import Locator, excerpt_at
from rewriter.errors import SourceLoc, UserError

__all__ = ["GaveUp", "parse_file_fast", "parse_predicate_fast"]

# Words that grammar.lark's NAME excludes: where a name is due, these make Lark fail.
_RESERVED = frozenset({
    "include", "pattern", "rule", "match", "where", "optional", "and", "or", "not", "in", "ignore", "insert",
    "remove", "propagate", "unify", "symmetric", "asymmetric", "per_tensor", "requantize", "int32_bias", "from",
    "true", "false", "none",
})

# The token types after which the postlexer drops a newline (grammar._Continuations).
_CONTINUE_AFTER = frozenset({"COMMA", "VBAR", "_ARROW", "_MOVES", "_WHERE", "_AND", "_OR", "_NOT", "CMP", "IN"})

# One token, after the blanks and comments before it; the same regexes as grammar.lark's terminals.
# NUM is NUMBER, and INT where its text is an integer; a word is cut without dots, and an op type's
# dotted tail is read by _OPNAME where one is due. A character none of these takes (a stray '=', a
# lone '\r', anything outside ASCII) makes the match fail, and the parser give up.
_TOKEN = re.compile(
    r"[ \t\f]*(?:#[^\n]*)?"  # no nested repetition: a long run of blanks must not make the regex backtrack
    r"(?:(?P<WORD>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<NL>(?:\r?\n[\t ]*(?:#[^\n]*)?)+)"
    r"|(?P<NUM>-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r'|(?P<STRING>"(?:[^"\\\n]|\\.)*")'
    r"|(?P<ARROW>->)|(?P<MOVES>~>)"
    r"|(?P<CMP>==|!=|<=|>=|<|>)"
    r"|(?P<SPECCLASS>@[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<PUNCT>[{}()\[\],.:;|*])"
    r"|(?P<END>\Z))"
)
_OPNAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_INT = re.compile(r"-?[0-9]+")

# Parentheses, 'not' and list brackets nested deeper than this make the parser give up: Lark then
# parses the file and refuses it if it nests deeper than grammar.MAX_NESTING. Each level here is at
# most a handful of parse-tree levels, so a file within this bound is well within MAX_NESTING.
_MAX_DEPTH = 15

# Lark's names for the punctuation terminals, which the postlexer looks at.
_PUNCT_TYPES = {"{": "LBRACE", "}": "RBRACE", "(": "LPAR", ")": "RPAR", "[": "LSQB", "]": "RSQB", ",": "COMMA",
                ".": "DOT", ":": "COLON", ";": "SEMICOLON", "|": "VBAR", "*": "STAR"}

# The predicate atoms written as a keyword and one input index in parentheses.
_INDEX_ATOMS: dict[str, Callable[..., ast.Expr]] = {
    "const": ast.ConstInput,
    "rank": ast.RankRef,
    "dtype": ast.DtypeRef,
    "graph_input": ast.GraphInput,
}
_INPUT_TESTS = frozenset({"zero", "present", "static"})
_DIRECTIONS: dict[str, Literal["inputs", "outputs"]] = {"inputs": "inputs", "outputs": "outputs"}
_LITERAL_WORDS = {"true": True, "false": False, "none": None}


class _GiveUp(Exception):
    """The text is not one this parser is sure of: Lark must parse it."""


class _Scanner:
    """The token stream with the postlexer's newline rule, one token of look-ahead.

    ``kind`` and ``value`` describe the current token; ``take`` consumes it under the terminal type the
    parser gives it.
    """

    __slots__ = ("text", "pos", "line", "line_start", "depth", "prev", "kind", "value", "start", "end", "taken_end")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.line_start = 0  # offset of the current line's first character
        self.depth = 0  # open '(' and '[', as the postlexer counts them
        self.prev = ""  # the type of the last token taken
        self.kind = self.value = ""
        self.start = self.end = 0
        self.taken_end = 0  # where the last token taken ends
        self._load()

    def _load(self) -> None:
        text = self.text
        while True:
            match = _TOKEN.match(text, self.pos)
            if match is None:
                raise _GiveUp
            kind = match.lastgroup
            assert kind is not None  # every alternative is a named group
            start, end = match.span(kind)  # the token ends the match
            if kind == "NL" and (self.depth or self.prev in _CONTINUE_AFTER):
                self._count_lines(text[start:end], start)
                self.pos = end
                continue
            self.kind = kind
            self.value = text[start:end]
            self.start = start
            self.end = end
            return

    def _count_lines(self, newlines: str, start: int) -> None:
        self.line += newlines.count("\n")
        self.line_start = start + newlines.rindex("\n") + 1

    @property
    def column(self) -> int:
        return self.start - self.line_start + 1

    def take(self, terminal: str) -> None:
        """Consume the current token as Lark's terminal ``terminal``."""
        if self.kind == "NL":
            self._count_lines(self.value, self.start)
        if terminal == "LPAR" or terminal == "LSQB":
            self.depth += 1
        elif terminal == "RPAR" or terminal == "RSQB":
            self.depth = max(self.depth - 1, 0)
        self.prev = terminal
        self.pos = self.taken_end = self.end
        self._load()

    def take_opname(self) -> str:
        """Consume an op type, dotted parts included (the OPNAME terminal reads them without blanks)."""
        match = _OPNAME.match(self.text, self.start)
        assert match is not None  # the current token is a word
        self.end = match.end()
        self.take("OPNAME")
        return match.group()

    def is_punct(self, char: str) -> bool:
        return self.kind == "PUNCT" and self.value == char


class _Parser:
    """Recursive descent over grammar.lark's rules, building what ``AstBuilder`` builds."""

    def __init__(self, text: str, locator: Locator, declarations: list[tuple[int, int]]) -> None:
        self._source = text
        self._locator = locator
        self._scan = _Scanner(text)
        self._nesting = 0
        self.errors: list[UserError] = []
        self.declarations = declarations  # (start, end) offsets of the declarations read, filled as they are

    # -- tokens

    def _here(self) -> SourceLoc:
        scan = self._scan
        return self._locator.at(scan.line, scan.start - scan.line_start + 1)

    def _word(self) -> str:
        """The current token's text if it is a word, else ''."""
        return self._scan.value if self._scan.kind == "WORD" else ""

    def _expect_word(self, word: str, terminal: str) -> None:
        if self._word() != word:
            raise _GiveUp
        self._scan.take(terminal)

    def _expect_punct(self, char: str) -> None:
        if not self._scan.is_punct(char):
            raise _GiveUp
        self._scan.take(_PUNCT_TYPES[char])

    def _name(self) -> tuple[str, SourceLoc]:
        word = self._word()
        if not word or word in _RESERVED:
            raise _GiveUp
        loc = self._here()
        self._scan.take("NAME")
        return word, loc

    def _int(self) -> int:
        scan = self._scan
        if scan.kind != "NUM" or not _INT.fullmatch(scan.value):
            raise _GiveUp
        value = int(scan.value)
        scan.take("INT")
        return value

    def _separators(self) -> bool:
        """Consume newlines and ';' (grammar's _sep); True if there was at least one."""
        scan = self._scan
        found = False
        while scan.kind == "NL" or scan.is_punct(";"):
            scan.take("_NL" if scan.kind == "NL" else "SEMICOLON")
            found = True
        return found

    def _deeper(self) -> None:
        self._nesting += 1
        if self._nesting > _MAX_DEPTH:
            raise _GiveUp

    # -- file level

    def file(self) -> list[Item]:
        items: list[Item] = []
        scan = self._scan
        self._separators()
        while scan.kind != "END":
            word = self._word()
            start = scan.start
            if word == "include":
                items.append(self._include())
            elif word == "pattern":
                items.append(self._pattern())
            elif word == "rule":
                items.extend(self._rule())
            else:
                raise _GiveUp
            self.declarations.append((start, scan.taken_end))
            if not self._separators() and scan.kind != "END":
                raise _GiveUp  # two declarations on one line need a ';' between them
        return items

    def _include(self) -> Include:
        loc = self._here()
        self._scan.take("_INCLUDE")
        if self._scan.kind != "STRING":
            raise _GiveUp
        path = unquote(self._scan.value)
        self._scan.take("STRING")
        return Include(path, loc)

    # -- patterns

    def _pattern(self) -> ast.Pattern:
        self._scan.take("_PATTERN")
        name, loc = self._name()
        nodes, edges, _ = self._pattern_body()
        return ast.Pattern(name, nodes, edges, loc=loc)

    def _pattern_body(self) -> tuple[tuple[ast.PatternNode, ...], tuple[ast.PatternEdge, ...], SourceLoc]:
        scan = self._scan
        loc = self._here()
        self._expect_punct("{")
        nodes: list[ast.PatternNode] = []
        edges: list[ast.PatternEdge] = []
        self._separators()
        while not scan.is_punct("}"):
            name, name_loc = self._name()
            if scan.is_punct(":"):
                nodes.append(self._node(name, name_loc))
            else:
                edges.extend(self._chain(name, name_loc))
            if not self._separators() and not scan.is_punct("}"):
                raise _GiveUp
        scan.take("RBRACE")
        return tuple(nodes), tuple(edges), loc

    def _node(self, name: str, loc: SourceLoc) -> ast.PatternNode:
        scan = self._scan
        scan.take("COLON")
        ops = [self._alternative()]
        while scan.is_punct("|"):
            scan.take("VBAR")
            ops.append(self._alternative())
        where = None
        if self._word() == "where":
            scan.take("_WHERE")
            where, _ = self._or_expr()
        optional = self._word() == "optional"
        if optional:
            scan.take("OPTIONAL")
        return ast.PatternNode(name, tuple(ops), where, optional, loc=loc)

    def _alternative(self) -> str:
        scan = self._scan
        if scan.kind == "WORD":
            return scan.take_opname()
        if scan.kind == "SPECCLASS":
            value = scan.value
            scan.take("SPECCLASS")
            return value
        if scan.is_punct("*"):
            scan.take("STAR")
            return "*"
        raise _GiveUp

    def _chain(self, name: str, loc: SourceLoc) -> list[ast.PatternEdge]:
        scan = self._scan
        endpoints = [self._endpoint(name, loc)]
        links: list[bool] = []
        while scan.kind == "ARROW" or scan.kind == "MOVES":
            links.append(scan.kind == "MOVES")
            scan.take("_MOVES" if scan.kind == "MOVES" else "_ARROW")
            endpoints.append(self._endpoint(*self._name()))
        if not links:
            raise _GiveUp
        return chain_edges(endpoints, links, self._report)

    def _endpoint(self, name: str, loc: SourceLoc) -> Endpoint:
        scan = self._scan
        if not scan.is_punct("."):
            return Endpoint(name, None, None, loc, loc)
        port_loc = self._here()
        scan.take("DOT")
        direction = self._word()
        if direction not in ("in", "out"):
            raise _GiveUp
        scan.take(direction.upper())
        self._expect_punct("[")
        index = self._int()
        self._expect_punct("]")
        return Endpoint(name, direction, index, loc, port_loc)

    def _report(self, message: str, loc: SourceLoc) -> None:
        self.errors.append(UserError(message, loc, excerpt_at(self._source, loc, self._locator)))

    # -- rules

    def _rule(self) -> list[Item]:
        scan = self._scan
        scan.take("_RULE")
        name, loc = self._name()
        self._expect_punct("{")
        self._separators()
        self._expect_word("match", "_MATCH")
        inline: ast.Pattern | None = None
        if scan.is_punct("{"):
            nodes, edges, body_loc = self._pattern_body()
            inline = ast.Pattern(name, nodes, edges, loc=body_loc)  # named after its rule
            target = name
        else:
            target, _ = self._name()
        actions: list[ast.Action] = []
        while True:
            separated = self._separators()
            if scan.is_punct("}"):
                scan.take("RBRACE")
                break
            if not separated:
                raise _GiveUp
            actions.append(self._action())
        rule = ast.Rule(name, target, tuple(actions), loc=loc)
        return [inline, rule] if inline is not None else [rule]

    def _action(self) -> ast.Action:
        scan = self._scan
        word = self._word()
        loc = self._here()
        if word == "ignore":
            scan.take("_IGNORE")
            following = self._word()
            names = self._names() if following and following not in _RESERVED else ()
            return ast.Ignore(names, loc=loc)
        if word == "insert":
            scan.take("_INSERT")
            return ast.Insert(self._portrefs(), loc=loc)
        if word == "remove":
            scan.take("_REMOVE")
            return ast.Remove(self._remove_targets(), loc=loc)
        if word == "propagate":
            scan.take("_PROPAGATE")
            return ast.Propagate(self._names(), loc=loc)
        if word == "unify":
            scan.take("_UNIFY")
            return ast.Unify(self._portrefs(), loc=loc)
        if word == "symmetric":
            scan.take("_SYMMETRIC")
            return ast.Symmetric(self._portrefs(), loc=loc)
        if word == "asymmetric":
            scan.take("_ASYMMETRIC")
            return ast.Asymmetric(self._portrefs(), loc=loc)
        if word == "per_tensor":
            scan.take("_PER_TENSOR")
            return ast.PerTensor(self._portrefs(), loc=loc)
        if word == "requantize":
            scan.take("_REQUANTIZE")
            outputs = self._portref(*self._name())
            self._expect_word("from", "_FROM")
            return ast.Requantize(outputs, self._portref(*self._name()), loc=loc)
        if word == "int32_bias":
            scan.take("_INT32_BIAS")
            return ast.Int32Bias(self._names(), loc=loc)
        raise _GiveUp

    def _names(self) -> tuple[str, ...]:
        names = [self._name()[0]]
        while self._scan.is_punct(","):
            self._scan.take("COMMA")
            names.append(self._name()[0])
        return tuple(names)

    def _portrefs(self) -> tuple[ast.PortRef, ...]:
        refs = [self._portref(*self._name())]
        while self._scan.is_punct(","):
            self._scan.take("COMMA")
            refs.append(self._portref(*self._name()))
        return tuple(refs)

    def _remove_targets(self) -> tuple[ast.PortRef | ast.EdgeRef, ...]:
        targets = [self._remove_target()]
        while self._scan.is_punct(","):
            self._scan.take("COMMA")
            targets.append(self._remove_target())
        return tuple(targets)

    def _remove_target(self) -> ast.PortRef | ast.EdgeRef:
        name, loc = self._name()
        if self._scan.kind == "ARROW":
            self._scan.take("_ARROW")
            return ast.EdgeRef(name, self._name()[0], loc=loc)
        return self._portref(name, loc)

    def _portref(self, name: str, loc: SourceLoc) -> ast.PortRef:
        scan = self._scan
        self._expect_punct(".")
        direction = _DIRECTIONS.get(self._word())
        if direction is None:
            raise _GiveUp
        scan.take("DIRECTION")
        ports: tuple[int, ...] | None = None
        if scan.is_punct("["):
            scan.take("LSQB")
            indices = [self._int()]
            while scan.is_punct(","):
                scan.take("COMMA")
                indices.append(self._int())
            self._expect_punct("]")
            ports = tuple(indices)
        return ast.PortRef(name, direction, ports, loc=loc)

    def predicate(self) -> ast.Expr:
        """grammar.lark's ``predicate``: an expression alone, a newline allowed before and after it."""
        scan = self._scan
        if scan.kind == "NL":
            scan.take("_NL")
        expr, _ = self._or_expr()
        if scan.kind == "NL":
            scan.take("_NL")
        if scan.kind != "END":
            raise _GiveUp
        return expr

    # -- predicates: each returns the expression and where an expression it begins starts

    def _or_expr(self) -> tuple[ast.Expr, SourceLoc]:
        first, start = self._and_expr()
        if self._word() != "or":
            return first, start
        items = [first]
        while self._word() == "or":
            self._scan.take("_OR")
            items.append(self._and_expr()[0])
        return ast.Or(tuple(items), loc=start), start

    def _and_expr(self) -> tuple[ast.Expr, SourceLoc]:
        first, start = self._not_expr()
        if self._word() != "and":
            return first, start
        items = [first]
        while self._word() == "and":
            self._scan.take("_AND")
            items.append(self._not_expr()[0])
        return ast.And(tuple(items), loc=start), start

    def _not_expr(self) -> tuple[ast.Expr, SourceLoc]:
        if self._word() != "not":
            return self._comparison()
        loc = self._here()
        self._scan.take("_NOT")
        self._deeper()
        item, _ = self._not_expr()
        self._nesting -= 1
        return ast.Not(item, loc=loc), loc

    def _comparison(self) -> tuple[ast.Expr, SourceLoc]:
        scan = self._scan
        left, start = self._operand()
        op: ast.CompareOp
        word = self._word()
        if scan.kind == "CMP":
            op = scan.value  # type: ignore[assignment]  # the CMP regex allows only CompareOp's six
            scan.take("CMP")
        elif word == "in":
            op = "in"
            scan.take("IN")
        elif word == "not":
            scan.take("_NOT")
            self._expect_word("in", "IN")
            op = "not in"
        else:
            return left, start
        right, _ = self._operand()
        return ast.Compare(op, left, right, loc=start), start

    def _operand(self) -> tuple[ast.Expr, SourceLoc]:
        scan = self._scan
        loc = self._here()
        if scan.is_punct("("):
            scan.take("LPAR")
            self._deeper()
            inner, _ = self._or_expr()
            self._nesting -= 1
            self._expect_punct(")")
            return inner, loc  # the expression keeps its start; what it begins starts at '('
        word = self._word()
        if not word:
            return self._literal(), loc
        if word in _INDEX_ATOMS:
            scan.take("_" + word.upper())
            return _INDEX_ATOMS[word](self._parenthesised_int(), loc=loc), loc
        if word in _INPUT_TESTS:
            scan.take("_" + word.upper())
            return ast.InputTest(word, self._parenthesised_int(), loc=loc), loc  # type: ignore[arg-type]
        if word == "attr":
            scan.take("_ATTR")
            self._expect_punct(".")
            name = self._word()
            if not name:
                raise _GiveUp
            scan.take("ATTRNAME")
            return ast.AttrRef(name, loc=loc), loc
        if word == "shape" or word == "out_shape":
            scan.take("_" + word.upper())
            index = self._parenthesised_int()
            self._expect_punct("[")
            dim = self._int()
            self._expect_punct("]")
            return ast.ShapeRef(index, dim, output=word == "out_shape", loc=loc), loc
        if word == "fanout" or word == "num_inputs":
            scan.take("_" + word.upper())
            return ast.NodeProp(word, loc=loc), loc  # type: ignore[arg-type]
        return self._literal(), loc

    def _parenthesised_int(self) -> int:
        self._expect_punct("(")
        value = self._int()
        self._expect_punct(")")
        return value

    def _literal(self) -> ast.Lit:
        scan = self._scan
        loc = self._here()
        if scan.kind == "NUM":
            value = number_value(scan.value)
            scan.take("NUMBER")
            return ast.Lit(value, loc=loc)
        if scan.kind == "STRING":
            text = unquote(scan.value)
            scan.take("STRING")
            return ast.Lit(text, loc=loc)
        word = self._word()
        if word in _LITERAL_WORDS:
            scan.take("_" + word.upper())
            return ast.Lit(_LITERAL_WORDS[word], loc=loc)
        if scan.is_punct("["):
            scan.take("LSQB")
            self._deeper()
            values: list[object] = []
            if not scan.is_punct("]"):
                values.append(self._literal().value)
                while scan.is_punct(","):
                    scan.take("COMMA")
                    values.append(self._literal().value)
            self._nesting -= 1
            self._expect_punct("]")
            return ast.Lit(tuple(values), loc=loc)
        raise _GiveUp


@dataclass(frozen=True)
class GaveUp:
    """What the fast parser leaves to Lark: the declarations it had read whole before it gave up.

    ``declarations`` holds their (start, end) offsets in the text, in order. They are well formed
    (the parser only reads what Lark would read alike), so a syntax error Lark finds lies after them.
    """

    declarations: list[tuple[int, int]]


def parse_file_fast(text: str, locator: Locator) -> tuple[list[Item], list[UserError]] | GaveUp:
    """The declarations of a rule file and the builder's errors, as Lark and AstBuilder would give them.

    Returns ``GaveUp`` when the text is not one this parser is sure of (a syntax error among others):
    the caller must then parse it with Lark.
    """
    declarations: list[tuple[int, int]] = []
    try:
        parser = _Parser(text, locator, declarations)
        items = parser.file()
    except _GiveUp:
        return GaveUp(declarations)
    return items, parser.errors


def parse_predicate_fast(text: str, locator: Locator) -> tuple[ast.Expr, list[UserError]] | None:
    """A lone predicate (a spec's ``when:`` string) and the builder's errors, as Lark and AstBuilder would
    give them; None when the text is not one this parser is sure of (the caller then asks Lark)."""
    try:
        parser = _Parser(text, locator, [])
        return parser.predicate(), parser.errors
    except _GiveUp:
        return None
