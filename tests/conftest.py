"""Test-wide setup: make the shared model builders importable as ``from models import ...``.

The tests folder is not a package (each subfolder's test modules are collected
by path), so its own directory and the repository root go on sys.path here.
"""
from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent
for _path in (_TESTS, _TESTS.parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
