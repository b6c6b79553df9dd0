"""Finding specs: built-in names (any case), paths, the override folder, and unknown names."""
from __future__ import annotations

from pathlib import Path

import pytest

from rewriter.errors import UserError
from rewriter.spec.loader import builtin_specs_dir, list_targets, load_spec, resolve_target

REPO = Path(__file__).resolve().parents[2]


def test_builtin_dir_is_beside_the_package() -> None:
    assert builtin_specs_dir() == REPO / "hw_specs"


@pytest.mark.parametrize("name", ["CPU", "cpu", "Cpu"])
def test_names_are_case_insensitive(name: str) -> None:
    assert resolve_target(name) == REPO / "hw_specs" / "cpu.yaml"


def test_path_to_a_spec(write_spec) -> None:
    path = write_spec("name: MINE\n", "mine.yaml")
    assert resolve_target(str(path)) == path.resolve()


def test_missing_path() -> None:
    with pytest.raises(UserError, match="spec file 'nowhere/x.yaml' not found"):
        resolve_target("nowhere/x.yaml")


def test_unknown_target_lists_the_available_ones() -> None:
    with pytest.raises(UserError) as info:
        resolve_target("XPU")
    assert info.value.message == ("unknown target 'XPU'; available: ANY, CPU, GNA, GPU, ORT, VPU "
                                  "(or give a path to a spec file)")


def test_override_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "npu.yaml").write_text("name: NPU\ndescription: my accelerator\n")
    (tmp_path / "broken.yaml").write_text("name: [\n")
    (tmp_path / "notes.txt").write_text("not a spec\n")
    monkeypatch.setenv("REWRITER_SPECS_DIR", str(tmp_path))
    assert builtin_specs_dir() == tmp_path
    # a broken file is listed under its file name rather than hiding the others
    assert list_targets() == [("NPU", tmp_path / "npu.yaml", "my accelerator"),
                              ("broken", tmp_path / "broken.yaml", "")]
    assert resolve_target("npu") == (tmp_path / "npu.yaml").resolve()
    assert load_spec(resolve_target("NPU")).name == "NPU"
    with pytest.raises(UserError, match="available: NPU, broken"):
        resolve_target("cpu")


def test_target_found_by_its_name_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "accel_v2.yaml").write_text("name: ACCEL\n")
    monkeypatch.setenv("REWRITER_SPECS_DIR", str(tmp_path))
    assert resolve_target("accel") == tmp_path / "accel_v2.yaml"
