"""`specs list` reads a spec's name and description from the parser's events, stopping early: the same
answer as composing the whole file, for the shipped specs and for files that put the keys anywhere."""
from __future__ import annotations

from pathlib import Path

import pytest

from rewriter.spec.loader import builtin_specs_dir
from rewriter.spec.yaml_nodes import Problems, YamlFile

KEYS = ("name", "description")


def composed(path: Path) -> dict[str, str]:
    """The answer from the whole file's nodes: string values of the keys in the top-level mapping."""
    f = YamlFile(path, Problems())
    root = f.compose()
    pairs = {key: f.value(value) for key, _, value in f.pairs(root, "the spec")} if root is not None else {}
    return {k: v for k, v in pairs.items() if k in KEYS and isinstance(v, str)}


@pytest.mark.parametrize("path", sorted(builtin_specs_dir().glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_specs(path: Path) -> None:
    found = YamlFile(path, Problems()).top_level_strings(KEYS)
    assert found == composed(path) and found["name"]


@pytest.mark.parametrize("text", [
    "name: A\ndescription: one\n",
    "ops:\n  Conv: {activations: [q8]}\n  Add:\n    - x\n    - {y: [1, 2]}\n"
    "name: B\nextends: cpu\ndescription: 'late'\n",
    "description: \"quoted: yes\"\nconfigs: {q8: {bits: 8}}\nname: C\n",
    "{name: D, ops: {Conv: null}, description: flow}\n",
    "name: 123\ndescription: null\n",          # not strings: left out
    "name: 'true'\ndescription: [a, b]\n",      # a quoted string is one; a list is not
    "? [complex, key]\n: value\nname: E\n",    # a key that is a list is skipped with its value
    "- name: F\n",                              # not a mapping
    "",
    "nested:\n  name: G\n  description: inner\n",  # only the top level counts
])
def test_same_as_composing_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    assert YamlFile(path, Problems()).top_level_strings(KEYS) == composed(path)


def test_stops_at_the_keys_so_later_damage_does_not_hide_them(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("name: H\ndescription: first\nops: [unclosed\n")
    assert composed(path) == {}  # the whole file is not YAML
    assert YamlFile(path, Problems()).top_level_strings(KEYS) == {"name": "H", "description": "first"}


def test_unreadable_or_not_yaml_gives_nothing(tmp_path: Path) -> None:
    assert YamlFile(tmp_path / "missing.yaml", Problems()).top_level_strings(KEYS) == {}
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: \xff\n")
    assert YamlFile(bad, Problems()).top_level_strings(KEYS) == {}
