"""Small text helpers shared by the calibration data modules' error messages."""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

__all__ = ["did_you_mean", "quoted_names", "short_message"]


def quoted_names(names: Iterable[str]) -> str:
    """``'a', 'b'``: names as they appear in messages."""
    return ", ".join(repr(n) for n in names)


def did_you_mean(unknown: Sequence[str], known: Iterable[object]) -> str:
    """``"; did you mean 'x'?"`` for the known name closest to ``unknown[0]``, or ``""``."""
    close = difflib.get_close_matches(str(unknown[0]), [str(k) for k in known], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def short_message(e: BaseException, limit: int = 200) -> str:
    """An exception's text on one line, at most ``limit`` characters (its type name when it has none)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
