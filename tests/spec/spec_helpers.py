"""Helpers shared by the spec loader tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from rewriter.errors import UserError, UserErrors
from rewriter.spec.loader import load_spec


def spec_errors(path: Path) -> list[UserError]:
    """The errors load_spec reports for ``path`` (fails the test if it loads)."""
    with pytest.raises(UserErrors) as info:
        load_spec(path)
    return info.value.errors


def only_error(path: Path) -> UserError:
    """The single error reported for ``path``."""
    errors = spec_errors(path)
    assert len(errors) == 1, "\n".join(e.render() for e in errors)
    return errors[0]


def has_parser() -> bool:
    try:
        import rewriter.dsl.parser  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True
