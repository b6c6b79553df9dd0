"""What the loader fuzzers feed and what they accept: shared by the CI test and tools/fuzz_loaders.py.

Inputs are the shipped rule, spec and config files, mutated: bytes inserted, deleted, replaced,
repeated or cut, with snippets chosen to reach the readers' edges (NUL and control characters,
bytes that are not UTF-8, deep nesting, long `not` chains, YAML tags and anchors, huge numbers).
A loader passes an input when it returns, or raises a UserError whose every message is located
(a file and a line); anything else (another exception, an unlocated message) is a finding.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

from hypothesis import strategies as st

from rewriter.errors import UserError, UserErrors

ROOT = Path(__file__).resolve().parents[1]

SNIPPETS = [
    b"\x00", b"\x01", b"\x1b", b"\x7f", b"\xff", b"\xc3", b"\xe2\x82", b"\xef\xbb\xbf", b"\t", b"\r", b"\n",
    b"[" * 300, b"{" * 300, b"(" * 300, b"not " * 400, b"- " * 200, b'"', b"'", b"\\", b":", b": ", b",",
    b"#", b"{", b"}", b"->", b"|", b"@", b"*", b".in[", b".out[", b"]", b";", b"optional", b"where",
    b"include \"", b"pattern ", b"rule ", b"match ", b"extends: ", b"&a ", b"*a", b"!!python/object:os.system ",
    b"!!binary ", b"<<: ", b"---\n", b"...\n", b"%YAML 1.1\n", b"? ", b"9" * 400, b"1e999", b"-1", b".nan",
    b"null", b"true", b"~", b"0x", b"//", b"/*", b"*/",
]

_OPS = ("insert", "delete", "replace", "repeat", "cut")


def seeds(*patterns: str) -> list[bytes]:
    """The bytes of the repository files matching ``patterns`` (relative to the root)."""
    found = sorted(p for pattern in patterns for p in ROOT.glob(pattern))
    assert found, patterns
    return [p.read_bytes() for p in found]


def _mutate(seed: bytes, edits: list[tuple[str, int, int, bytes]]) -> bytes:
    data = seed
    for op, at, length, snippet in edits:
        at = at % (len(data) + 1)
        if op == "insert":
            data = data[:at] + snippet + data[at:]
        elif op == "delete":
            data = data[:at] + data[at + length:]
        elif op == "replace":
            data = data[:at] + snippet + data[at + len(snippet):]
        elif op == "repeat":
            data = data[:at] + data[at:at + length] * 50 + data[at:]
        else:
            data = data[:at]
    return data


def mutated(seed_files: list[bytes]) -> st.SearchStrategy[bytes]:
    """Seed files with up to eight edits each."""
    edit = st.tuples(st.sampled_from(_OPS), st.integers(0, 1 << 20), st.integers(0, 400),
                     st.sampled_from(SNIPPETS) | st.binary(min_size=1, max_size=6))
    return st.builds(_mutate, st.sampled_from(seed_files), st.lists(edit, min_size=1, max_size=8))


def unlocated(error: UserError) -> list[str]:
    """The messages of ``error`` that name no file and line."""
    parts = error.errors if isinstance(error, UserErrors) else [error]
    return [e.render() for e in parts if e.loc is None or not e.loc.file or not e.loc.line]


def check_loader(load: Callable[[Path], object], data: bytes, suffix: str) -> str:
    """Run ``load`` on a file holding ``data``: "ok", or "error" for a located UserError.

    Raises:
        AssertionError: a UserError with a message that has no location.
        Exception: any other exception (a crash) propagates as it is.
    """
    with tempfile.TemporaryDirectory(prefix="rewriter-fuzz-") as folder:
        path = Path(folder) / f"fuzzed{suffix}"
        path.write_bytes(data)
        try:
            load(path)
        except UserError as error:
            missing = unlocated(error)
            assert not missing, f"unlocated message(s) for input {data[:300]!r}...: {missing}"
            return "error"
    return "ok"


def load_rule_file(path: Path) -> object:
    from rewriter.dsl.parser import load_rules

    return load_rules(path)


def load_spec_file(path: Path) -> object:
    from rewriter.spec.loader import load_spec

    return load_spec(path)


def load_config_file(path: Path) -> object:
    from rewriter.config import load_config

    return load_config(path)


#: loader name -> (load, seed file patterns, file suffixes)
TARGETS: dict[str, tuple[Callable[[Path], object], tuple[str, ...], tuple[str, ...]]] = {
    "rules": (load_rule_file, ("rules/*.rules", "tests/dsl/data/*.rules"), (".rules",)),
    "spec": (load_spec_file, ("hw_specs/*.yaml",), (".yaml",)),
    "config": (load_config_file, ("tests/config/data/*.json", "tests/config/data/*.yaml"), (".json", ".yaml")),
}
