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


def source_excerpt(text: str, line: int, column: int) -> str:
    """The source line with a caret under ``column`` (both 1-based)."""
    lines = text.splitlines()
    if not 1 <= line <= len(lines):
        return ""
    src = lines[line - 1]
    return f"    {src}\n    {' ' * max(column - 1, 0)}^"
