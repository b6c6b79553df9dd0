"""The speed guard's decisions, kept per machine so that the same run gives the same output again.

The speed guard decides from timings, and timings differ from run to run. So that a run repeated with the
same model, options, seed and onnxruntime on the same machine writes the same bytes, the guard's outcome
(the reverts it chose, each with its measured reason, and its report section) is stored under a key of
everything that decided it:

- the float model and the quantized model the guard started from (digests of their content: the model,
  the plan, the ranges and so every option that shaped them);
- the guard's settings (optimize_for, thread counts, margin, budget);
- the machine and the runtime (``rewriter.emit.runtime_profile.machine_fingerprint``: CPU model and
  flags, core count, onnxruntime's version) and a digest of rewriter's modules.

A later run with the same key applies the stored reverts through the plan without timing anything. The
first run on a machine measures; on another machine (another CPU, another onnxruntime) the guard measures
again, since the decision is about that machine's kernels. An entry is one JSON file, written to a
temporary file and renamed; an entry that cannot be read is measured again and overwritten.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from rewriter.errors import UserError
from rewriter.io_utils import atomic_write_text

__all__ = ["CACHE_ENV", "CACHE_SCHEMA", "SpeedCache", "StoredDecision", "default_cache_dir"]

#: Environment variable naming the cache folder (the speed decisions go into its ``speed/``).
CACHE_ENV = "REWRITER_CACHE_DIR"
CACHE_SCHEMA = "rewriter.speed-cache/1"

_log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$REWRITER_CACHE_DIR/speed``, else ``$XDG_CACHE_HOME/rewriter/speed``, else ``~/.cache/rewriter/speed``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / "speed"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rewriter" / "speed"


@dataclass(frozen=True)
class StoredDecision:
    """What the guard decided: the reverts (node, decision detail) in the order they were requested, and the
    report's ``speed`` section of the run that measured them."""

    reverts: tuple[tuple[str, str], ...]
    section: dict[str, Any]


class SpeedCache:
    """One folder of stored decisions (module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @staticmethod
    def key(parts: Mapping[str, Any], model_digests: Sequence[str]) -> str:
        """The entry's name: a digest of ``parts`` (JSON-able facts) and the models' content digests
        (``rewriter.ir.load.model_digest``)."""
        return hashlib.sha256(json.dumps({"parts": parts, "models": list(model_digests)},
                                         sort_keys=True).encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def load(self, key: str) -> StoredDecision | None:
        """The stored decision, or None when there is none or it cannot be read (then it is measured again)."""
        path = self.path(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            _log.warning("speed cache %s not readable (%s): measuring again", path, exc)
            return None
        try:
            entry = json.loads(text)
            if entry.get("schema") != CACHE_SCHEMA or entry.get("key") != key:
                raise ValueError("another schema or key")
            reverts = tuple((str(node), str(detail)) for node, detail in entry["reverts"])
            section = entry["section"]
            if not isinstance(section, dict):
                raise ValueError("section is not an object")
        except (ValueError, KeyError, TypeError) as exc:
            _log.warning("speed cache %s unusable (%s): measuring again", path, exc)
            return None
        return StoredDecision(reverts, section)

    def store(self, key: str, decision: StoredDecision) -> None:
        """Write the entry (atomically); a folder that cannot be written only costs the next run a measurement."""
        entry = {"schema": CACHE_SCHEMA, "key": key, "reverts": [list(r) for r in decision.reverts],
                 "section": decision.section}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path(key), json.dumps(entry, indent=1, sort_keys=True) + "\n",
                              "the speed cache entry")
        except (OSError, UserError) as exc:  # a failure to cache leaves the run's result intact
            _log.warning("speed cache %s not written (%s): the next run measures again", self.folder, exc)
