"""User-facing errors.

Every error a user can cause (a bad model, spec, rule file or data folder) is
raised as a ``UserError`` carrying where it happened. The CLI prints it as one
message and exits with code 2; anything else is an internal error (exit 1).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceLoc:
    """A place in a text file, 1-based line and column (0 = unknown)."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line and self.column:
            return f"{self.file}:{self.line}:{self.column}"
        if self.line:
            return f"{self.file}:{self.line}"
        return self.file


class UserError(Exception):
    """Bad input, reported without a traceback.

    Args:
        message: what is wrong and what to do about it.
        loc: where (file:line:column), if the input is a text file.
        context: an optional pre-rendered excerpt (source line with a caret).
    """

    def __init__(self, message: str, loc: SourceLoc | None = None, context: str = "") -> None:
        self.message = message
        self.loc = loc
        self.context = context
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.loc}: {self.message}" if self.loc else self.message
        return f"{head}\n{self.context}" if self.context else head


class UserErrors(UserError):
    """Several user errors collected in one pass (a spec or rule file with many mistakes)."""

    def __init__(self, errors: list[UserError]) -> None:
        self.errors = list(errors)
        Exception.__init__(self, self.render())
        self.message = self.render()
        self.loc = None
        self.context = ""

    def render(self) -> str:
        return "\n".join(e.render() for e in self.errors)


# Longer source lines are shown as this many characters around the column, so that one error in a
# generated or minified file does not print megabytes.
_EXCERPT_WIDTH = 100


def source_excerpt(text: str, line: int, column: int) -> str:
    """The source line with a caret under ``column`` (both 1-based); a long line is cut around it."""
    lines = text.splitlines()
    if not 1 <= line <= len(lines):
        return ""
    src, offset = lines[line - 1], max(column - 1, 0)
    if len(src) > _EXCERPT_WIDTH:
        start = min(max(offset - _EXCERPT_WIDTH // 2, 0), len(src) - _EXCERPT_WIDTH)
        head = "..." if start > 0 else ""
        tail = "..." if start + _EXCERPT_WIDTH < len(src) else ""
        src, offset = head + src[start:start + _EXCERPT_WIDTH] + tail, offset - start + len(head)
    return f"    {src}\n    {' ' * offset}^"


class RuntimeRefused(Exception):
    """The runtime an output is for refused to load or run it: the model is not written (exit 1).

    ``node`` is the node the runtime's message names, when it names one.
    """

    def __init__(self, message: str, node: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.node = node

    def render(self) -> str:
        where = f" (node {self.node})" if self.node else ""
        return f"{self.message}{where}"
