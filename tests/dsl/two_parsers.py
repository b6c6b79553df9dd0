"""Parse a rule file with the hand-written parser and with Lark, and compare what they give."""
from __future__ import annotations

from rewriter.dsl import parser as dsl_parser
from rewriter.dsl.fast_parser import GaveUp, parse_file_fast
from rewriter.dsl.grammar import Locator

# Taken at import, before tests/dsl/conftest.py wraps it to compare the parsers on every test's files.
parse_file = dsl_parser._parse_file


def parse_outcome(text: str, filename: str, fast: bool) -> str:
    """What parsing one file gives, as comparable text: the items with their locations, then every error."""
    items, syntax, soft = parse_file(text, filename, fast=fast)
    errors = [f"{e.loc}: {e.message}\n{e.context}" for e in syntax + soft]
    return repr(items) + "\n" + "\n".join(errors)


def fast_parser_takes(text: str, filename: str = "t.rules") -> bool:
    return not isinstance(parse_file_fast(text, Locator(filename)), GaveUp)


def assert_parsers_agree(text: str, filename: str = "t.rules") -> bool:
    """Fail unless parsing ``text`` gives exactly what Lark alone gives; True if the fast parser took it whole.

    When it gives up, Lark parses the file with the declarations read so far blanked, and must report
    the same errors as on the whole file.
    """
    assert parse_outcome(text, filename, fast=True) == parse_outcome(text, filename, fast=False), text
    return fast_parser_takes(text, filename)
