"""Parse rule files (docs/rules.md) into the syntax tree of ``rewriter.dsl.ast``.

Three steps, each with one job and its own module:

1. Lark (LALR, grammar.lark, built in ``rewriter.dsl.grammar``) turns text
   into a parse tree; a syntax error becomes a ``UserError`` with
   file:line:column, the source line and a caret, and the words it expected
   (``rewriter.dsl.syntax_errors``).
2. ``AstBuilder`` (a Lark Transformer, ``rewriter.dsl.builder``) turns the tree
   into AST dataclasses. It checks nothing, except what the AST cannot hold: a
   port written on the wrong end of an edge chain is recorded, not raised.
3. ``rewriter.dsl.check`` validates the whole rule set at once and reports
   every problem it finds.

Steps 1 and 2 are the definition; for speed, a well-formed file goes through
``rewriter.dsl.fast_parser`` instead, which builds the same AST from the text
directly and leaves every file it is unsure of to Lark.

This module drives them: it reads files, resumes after a syntax error to
report several per file, and expands includes.

Example:
    >>> rs = parse_rules("pattern p { a : Conv }\\nrule r { match p; ignore }", "x.rules")
    >>> rs.rules[0].pattern
    'p'
"""
from __future__ import annotations

import gc
import os
import re
from contextlib import contextmanager
from typing import Iterator, Sequence

from lark import Tree
from lark.exceptions import UnexpectedEOF, UnexpectedInput

from rewriter.dsl import ast
from rewriter.dsl.builder import AstBuilder, Include, Item
from rewriter.dsl.check import predicate_errors, ruleset_errors
from rewriter.dsl.fast_parser import GaveUp, parse_file_fast, parse_predicate_fast
from rewriter.dsl.grammar import MAX_NESTING, Locator, excerpt_at, lark_parser, too_deep
from rewriter.dsl.syntax_errors import syntax_error
from rewriter.errors import SourceLoc, UserError, UserErrors, source_excerpt
from rewriter.io_utils import read_utf8

__all__ = ["parse_rules", "load_rules", "load_rule_files", "parse_predicate"]

# Syntax errors reported per file before giving up on it (each one costs a re-parse).
_MAX_SYNTAX_ERRORS = 20

# ---------------------------------------------------------------- one file

_TOP_LINE = re.compile(r"(include|pattern|rule)\b")


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a file is parsed.

    Parsing allocates a few objects per source byte and keeps nearly all of them until the AST is
    built. Every full collection walks every live object, and full collections keep being triggered
    while the live set grows, so with the collector on, parse time grows faster than the file: a
    1 MB file took twice as long as ten 100 kB files. The parser makes no reference cycles worth
    collecting early, and whatever cycles it does leave are collected once it has been turned back on.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _parse_file(text: str, filename: str, fast: bool = True) -> tuple[list[Item], list[UserError], list[UserError]]:
    """Parse one file: (items, syntax errors, other build errors).

    The hand-written parser (``rewriter.dsl.fast_parser``) reads a well-formed file; a file it is not
    sure of is parsed with Lark, which reports syntax errors. ``fast=False`` parses with Lark alone, the
    reference the tests compare with.
    """
    with _collector_paused():
        return _parse_file_unpaused(text, filename, fast)


# What a declaration Lark need not see is blanked to: all but the newlines (so that lines and columns
# stay) and the ';' (so that what is left between two declarations still separates them).
_BLANKABLE = re.compile(r"[^\n;]+")


def _for_lark(text: str, gave_up: GaveUp) -> str:
    """``text`` with the well-formed declarations Lark does not need to find the first syntax error blanked.

    Lark's state at a declaration depends only on whether a declaration came before it and whether two
    did: the first and the last of the declarations the fast parser read whole stay, the ones between
    become blanks, newlines and ';'. Every position after them is unchanged, so Lark reports the error
    where and as it would in the whole text, without parsing megabytes of good declarations first.
    """
    spans = gave_up.declarations
    if len(spans) < 3:
        return text
    start, end = spans[0][1], spans[-1][0]
    blanked = _BLANKABLE.sub(lambda m: " " * len(m.group()), text[start:end])
    return text[:start] + blanked + text[end:]


def _parse_file_unpaused(text: str, filename: str, fast: bool) -> tuple[list[Item], list[UserError], list[UserError]]:
    """``_parse_file`` without pausing the collector.

    After a syntax error, parsing resumes at the next line that starts (in
    column 1) with ``include``, ``pattern`` or ``rule``, so that one run reports
    the syntax errors of several declarations. The skipped lines are replaced
    by empty lines so that line numbers stay true.

    With ``fast``, each part is first given to the fast parser: a part it reads whole has no syntax
    error, and in a part it gives up on, Lark is spared the declarations it read (``_for_lark``).
    """
    locator = Locator(filename)
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    syntax: list[UserError] = []
    chunk, chunk_line = text, 0  # chunk_line: 0-based first line parsed
    while True:
        lark_text = chunk
        if fast:
            quick = parse_file_fast(chunk, locator)
            if not isinstance(quick, GaveUp):
                if syntax:
                    break  # no further syntax error; after one, the declarations are not built
                items, errors = quick
                return items, [], errors
            lark_text = _for_lark(chunk, quick)
        try:
            tree = lark_parser().parse(lark_text, start="start")
        except UnexpectedInput as err:
            syntax.append(syntax_error(err, chunk, locator, text))
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
        if lark_text is not chunk:
            # Well formed after all (the fast parser gave up on deep nesting): parse it whole.
            tree = lark_parser().parse(chunk, start="start")
        deep = _nesting_error(tree, text, locator)
        if deep is not None:
            return [], [deep], []
        builder = AstBuilder(locator, text)
        items = builder.transform(tree)
        return items, [], builder.errors
    return [], syntax, []


def _nesting_error(tree: Tree, text: str, locator: Locator, source: str | None = None) -> UserError | None:
    """A located error when ``tree`` nests deeper than the builder can take, else None."""
    deep = too_deep(tree)
    if deep is None:
        return None
    meta = deep.meta
    where = locator.at(None if meta.empty else meta.line, None if meta.empty else meta.column)
    excerpt = source_excerpt(source, where.line, where.column) if source is not None else excerpt_at(text, where,
                                                                                                      locator)
    return UserError(f"expression nested more than {MAX_NESTING} levels deep (not, parentheses); "
                     "write it with fewer levels", where, excerpt)


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
            text = read_utf8(path)
        except OSError as exc:
            self.fatal.append(UserError(f"cannot read the rule file: {_why(exc)}", SourceLoc(path)))
            return
        except UserError as exc:  # not UTF-8, located in the file
            self.fatal.append(exc)
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

    def _include(self, inc: Include, chain: list[str]) -> None:
        including = chain[-1]
        excerpt = source_excerpt(self.sources[including], inc.loc.line, inc.loc.column)
        if "\0" in inc.path:
            self.fatal.append(UserError("the included path contains a NUL character, which no file name can "
                                        "hold; remove it", inc.loc, excerpt))
            return
        path = os.path.normpath(os.path.join(os.path.dirname(including), inc.path))
        key = self._key(path)
        on_stack = [self._key(f) for f in chain]
        if key in on_stack:
            cycle = chain[on_stack.index(key):] + [path]
            self.fatal.append(UserError("include cycle: " + " -> ".join(cycle), inc.loc, excerpt))
            return
        if key in self._loaded:
            return  # already expanded at its first position
        try:
            text = read_utf8(path)
        except OSError as exc:
            message = f"cannot read included file '{inc.path}' ({path}): {_why(exc)}"
            self.fatal.append(UserError(message, inc.loc, excerpt))
            return
        except UserError as exc:  # not UTF-8, located in the included file
            self.fatal.append(exc)
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


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


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
    locator = Locator(loc.file, loc.line or 1, loc.column or 1)
    # The hand-written parser first: building Lark's tables costs a quarter of a second per process, more
    # than the rest of loading a spec. Lark reads what it is unsure of, and words the errors.
    fast = parse_predicate_fast(text, locator)
    if fast is not None and not fast[1]:
        expr = fast[0]
    else:
        try:
            tree = lark_parser().parse(text, start="predicate")
        except UnexpectedInput as err:
            raise UserErrors([syntax_error(err, text, locator, source, predicate=True)]) from None
        deep = _nesting_error(tree, text, locator, source)
        if deep is not None:
            raise UserErrors([deep])
        expr = AstBuilder(locator, text).transform(tree)
    problems = predicate_errors(expr)
    if problems:
        raise UserErrors([
            UserError(
                msg,
                where,
                source_excerpt(source, where.line, where.column) if source is not None
                else excerpt_at(text, where, locator),
            )
            for msg, where in problems
        ])
    return expr
