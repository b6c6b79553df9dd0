"""Every rule file a DSL test parses is parsed twice, by the hand-written parser and by Lark, and the two
must agree: the tests' many small files check the fast path's ASTs, locations and errors as well."""
from __future__ import annotations

import pytest

from rewriter.dsl import parser as dsl_parser
from rewriter.dsl.fast_parser import parse_file_fast
from rewriter.dsl.grammar import Locator

# Taken before the fixture below wraps it.
_parse_file = dsl_parser._parse_file


def parse_outcome(text: str, filename: str, fast: bool) -> str:
    """What parsing one file gives, as comparable text: the items with their locations, then every error."""
    items, syntax, soft = _parse_file(text, filename, fast=fast)
    errors = [f"{e.loc}: {e.message}\n{e.context}" for e in syntax + soft]
    return repr(items) + "\n" + "\n".join(errors)


def assert_parsers_agree(text: str, filename: str = "t.rules") -> bool:
    """Fail unless the fast parser gives up on ``text`` or gives exactly what Lark gives; True if it took it."""
    if parse_file_fast(text, Locator(filename)) is None:
        return False
    assert parse_outcome(text, filename, fast=True) == parse_outcome(text, filename, fast=False), text
    return True


@pytest.fixture(autouse=True)
def _both_parsers(monkeypatch: pytest.MonkeyPatch) -> None:
    def checked(text: str, filename: str, fast: bool = True):  # noqa: ANN202 - the signature of _parse_file
        if fast:
            assert_parsers_agree(text, filename)
        return _parse_file(text, filename, fast)

    monkeypatch.setattr(dsl_parser, "_parse_file", checked)
