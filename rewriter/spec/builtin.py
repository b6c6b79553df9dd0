"""Where the built-in hardware specs (``hw_specs/``) and rule files (``rules/``) are.

The repository keeps both folders at its top level, beside the ``rewriter``
package; a wheel carries copies of them inside the package, as
``rewriter/_targets/hw_specs`` and ``rewriter/_targets/rules`` (the mapping is
in pyproject.toml). Either way the two folders sit side by side under one
*targets root*, so the relative paths inside the files (a spec's
``rules: [../rules/cpu.rules]``, a rule file's ``include "placement.rules"``)
resolve the same in a source checkout, an editable install and a wheel.

Example:
    >>> (targets_root() / "hw_specs" / "cpu.yaml").is_file()
    True
"""
from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

PACKAGE = "rewriter"
PACKAGED_FOLDER = "_targets"
SPECS_FOLDER = "hw_specs"
RULES_FOLDER = "rules"


class BrokenInstallation(RuntimeError):
    """The built-in specs and rules are missing: a packaging bug, not bad user input."""


def targets_root() -> Path:
    """The folder holding ``hw_specs/`` and ``rules/``, resolved.

    Raises:
        BrokenInstallation: neither the packaged copy nor a source checkout has them.
    """
    root = _find_targets_root()
    if root is None:
        places = " and ".join(str(c) for c in _candidates()) or f"{PACKAGE}, which is not a folder"
        raise BrokenInstallation(f"the rewriter installation is broken: its built-in hardware specs and rules "
                                 f"are missing (looked in {places}); reinstall rewriter")
    return root


def specs_dir() -> Path:
    """The built-in hardware spec folder (``hw_specs/``)."""
    return targets_root() / SPECS_FOLDER


def rules_dir() -> Path:
    """The built-in rule folder (``rules/``)."""
    return targets_root() / RULES_FOLDER


@functools.lru_cache(maxsize=1)
def _find_targets_root() -> Path | None:
    # Cached: the package does not move while the process runs, and report
    # rendering asks once per displayed location.
    for candidate in _candidates():
        if (candidate / SPECS_FOLDER).is_dir() and (candidate / RULES_FOLDER).is_dir():
            return candidate.resolve()
    return None


def _candidates() -> list[Path]:
    """The packaged copy first, then the checkout folder that holds the package."""
    package = resources.files(PACKAGE)
    if not isinstance(package, Path):
        # A zipped package has no folder to read files from relative to one another.
        return []
    return [package / PACKAGED_FOLDER, package.parent]
