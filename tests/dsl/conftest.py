"""Every rule file a DSL test parses is parsed twice, by the hand-written parser and by Lark, and the two
must agree: the tests' many small files check the fast path's ASTs, locations and errors as well."""
from __future__ import annotations

import pytest
from two_parsers import assert_parsers_agree, parse_file

from rewriter.dsl import parser as dsl_parser


@pytest.fixture(autouse=True)
def _both_parsers(monkeypatch: pytest.MonkeyPatch) -> None:
    def checked(text: str, filename: str, fast: bool = True):  # noqa: ANN202 - the signature of _parse_file
        if fast:
            assert_parsers_agree(text, filename)
        return parse_file(text, filename, fast)

    monkeypatch.setattr(dsl_parser, "_parse_file", checked)
