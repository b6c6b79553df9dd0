"""Calibration loaders written ``"module:function"`` or ``"path/to/file.py:function"``.

``import_loader`` imports the module (from the working directory too, like
``python -m``, or from a file path) and returns the function; any failure is
a ``UserError`` naming the loader. What the function returns is the sources'
business.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rewriter.calibrate.messages import did_you_mean, short_message
from rewriter.errors import UserError

__all__ = ["LOADER_PATTERN", "import_loader"]

#: ``module:function`` with the groups ``module`` and ``function``.
LOADER_PATTERN = re.compile(r"^(?P<module>.+):(?P<function>[A-Za-z_][A-Za-z0-9_]*)$")


def import_loader(module: str, function: str, what: str = "calibration loader") -> Callable[..., object]:
    """The function ``function`` of ``module`` (a module name or a .py path); ``what`` names it in messages
    (a calibration loader, a metric).

    Raises:
        UserError: the module cannot be imported (or raised while importing),
            has no such name, or the name is not callable.
    """
    label = f"{what} {module}:{function}"
    loaded = _import_loader_module(module, label)
    if not hasattr(loaded, function):
        public = [n for n in dir(loaded) if not n.startswith("_")]
        raise UserError(f"{label}: the module has no {function!r}"
                        f"{did_you_mean([function], public)}")
    func = getattr(loaded, function)
    if not callable(func):
        raise UserError(f"{label}: {function!r} is not a function")
    return func


def _import_loader_module(module: str, label: str) -> Any:
    is_file = module.endswith(".py") or "/" in module or os.sep in module
    try:
        if is_file:
            return _import_file(Path(module), label)
        # Like `python -m`, let modules in the working directory be found.
        sys.path.insert(0, os.getcwd())
        try:
            return importlib.import_module(module)
        finally:
            sys.path.remove(os.getcwd())
    except UserError:
        raise
    except Exception as e:  # the user's module failed while importing: report it as theirs
        raise UserError(f"{label}: cannot import {module!r} "
                        f"({type(e).__name__}: {short_message(e)})") from e


def _import_file(path: Path, label: str) -> Any:
    if not path.is_file():
        raise UserError(f"{label}: no such file {path}")
    name = f"_rewriter_loader_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"{label}: {path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
