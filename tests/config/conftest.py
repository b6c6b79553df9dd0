"""Fixtures for the config file tests."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Callable

import pytest


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write dedented text to tmp_path/<name> (JSON unless the name ends in .yaml/.yml)."""

    def write(text: str, name: str = "config.json") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write
