"""Finding the built-in specs and rules: the checkout, a packaged copy, and a broken installation."""
from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rewriter.cli import main
from rewriter.sources import display_path
from rewriter.spec import builtin
from rewriter.spec.loader import list_targets, load_spec, resolve_target

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_lookup(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """The lookup is cached per process; forget it before and after a test that moves things."""
    monkeypatch.delenv("REWRITER_SPECS_DIR", raising=False)
    builtin._find_targets_root.cache_clear()
    yield monkeypatch
    builtin._find_targets_root.cache_clear()


def test_a_checkout_uses_its_top_level_folders() -> None:
    assert builtin.targets_root() == REPO
    assert (builtin.specs_dir(), builtin.rules_dir()) == (REPO / "hw_specs", REPO / "rules")
    assert display_path(str(REPO / "rules" / "cpu.rules")) == "rules/cpu.rules"


def test_a_packaged_copy_comes_first_and_keeps_the_relative_layout(tmp_path: Path, fresh_lookup) -> None:
    # A stand-in for an installed wheel: a package holding _targets/{hw_specs,rules}, in a
    # folder that has hw_specs/ and rules/ of its own that must not be picked.
    package = tmp_path / "site" / "installed_rewriter"
    (package / "__init__.py").parent.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for folder in ("hw_specs", "rules"):
        shutil.copytree(REPO / folder, package / "_targets" / folder)
        (tmp_path / "site" / folder).mkdir()
    fresh_lookup.syspath_prepend(str(tmp_path / "site"))
    fresh_lookup.setattr(builtin, "PACKAGE", "installed_rewriter")
    try:
        root = (package / "_targets").resolve()
        assert builtin.targets_root() == root
        assert [name for name, _, _ in list_targets()] == ["ANY", "CPU", "GNA", "GPU", "ORT", "VPU"]
        spec = load_spec(resolve_target("cpu"))
        # cpu.yaml names ../rules/cpu.rules: it resolves inside the packaged copy.
        assert [Path(r).resolve() for r in spec.rules] == [root / "rules" / "cpu.rules"]
        assert display_path(str(root / "rules" / "cpu.rules")) == "rules/cpu.rules"
        assert display_path(str(root / "hw_specs" / "cpu.yaml")) == "hw_specs/cpu.yaml"
    finally:
        sys.modules.pop("installed_rewriter", None)


def test_missing_specs_and_rules_are_an_internal_error(tmp_path: Path, fresh_lookup,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    fresh_lookup.setattr(builtin, "_candidates", lambda: [tmp_path])
    with pytest.raises(builtin.BrokenInstallation, match="installation is broken"):
        builtin.targets_root()
    for argv in (["specs", "list"], ["specs", "show", "CPU"], ["audit", str(REPO / "examples" / "tiny_cnn.onnx")]):
        assert main(argv) == 1
        out, err = capsys.readouterr()
        assert out == "" and "the rewriter installation is broken" in err and str(tmp_path) in err


def test_an_empty_specs_folder_is_an_internal_error(tmp_path: Path, fresh_lookup,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "hw_specs").mkdir()
    (tmp_path / "rules").mkdir()
    fresh_lookup.setattr(builtin, "_candidates", lambda: [tmp_path])
    assert main(["specs", "list"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "no hardware specs in" in err and "installation is broken" in err


def test_an_empty_override_folder_is_bad_input(tmp_path: Path, fresh_lookup,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    fresh_lookup.setenv("REWRITER_SPECS_DIR", str(tmp_path))
    assert main(["specs", "list"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and f"REWRITER_SPECS_DIR={tmp_path} holds no spec files" in err
