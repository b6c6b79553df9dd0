"""The original tool's device names and preset renames come from the specs' ``pot`` sections."""
from __future__ import annotations

from pathlib import Path

import pytest

from rewriter.api import load_plan_inputs
from rewriter.config import load_config, preset_for_target
from rewriter.errors import UserError, UserErrors
from rewriter.spec.loader import pot_devices

HW_SPECS = Path(__file__).resolve().parents[2] / "hw_specs"


def _config(folder: Path, device: str, preset: str) -> Path:
    path = folder / "c.json"
    path.write_text(f'{{"compression": {{"target_device": "{device}", "algorithms": '
                    f'[{{"name": "MinMaxQuantization", "params": {{"preset": "{preset}"}}}}]}}}}')
    return path


def test_built_in_devices_are_the_specs_names_and_aliases() -> None:
    devices = pot_devices()
    assert {name: (d.target, d.differs is not None) for name, d in devices.items()} == {
        "ANY": ("ANY", False), "CPU": ("CPU", False), "CPU_SPR": ("CPU", True), "GPU": ("GPU", False),
        "GNA": ("GNA", False), "GNA3": ("GNA", True), "GNA3.5": ("GNA", True)}
    assert dict(devices["GNA3"].preset_renames) == {"mixed": "accuracy"}


def test_a_spec_folder_s_pot_section_names_devices_and_renames_presets(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "cpu.yaml").write_text((HW_SPECS / "cpu.yaml").read_text().replace(
        "preset_renames: {accuracy: mixed}", "preset_renames: {performance: mixed}").replace(
        "../rules/", f"{HW_SPECS.parent / 'rules'}/"))
    monkeypatch.setenv("REWRITER_SPECS_DIR", str(folder))
    assert preset_for_target("symmetric", "CPU_SPR") == "mixed"
    cfg = load_config(_config(tmp_path, "cpu_spr", "accuracy"))
    assert (cfg.target, cfg.preset) == ("CPU", "accuracy")
    assert cfg.warnings[0].message.startswith("target_device cpu_spr has no spec here; the CPU spec is used: ")


def test_a_malformed_pot_section_is_reported_with_its_line(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "x.yaml").write_text("name: X\npot:\n  preset_renames: {accurate: mixed}\n")
    monkeypatch.setenv("REWRITER_SPECS_DIR", str(folder))
    with pytest.raises(UserErrors, match=r"x.yaml:3:20: unknown key 'accurate' in pot.preset_renames; "
                                         r"did you mean 'accuracy'\?"):
        pot_devices()


def test_model_type_rules_come_from_the_spec(tmp_path) -> None:
    assert any(f.endswith("transformer.rules") for f in load_plan_inputs("ORT", model_type="transformer").rules.files)
    bare = tmp_path / "bare.yaml"
    bare.write_text("name: BARE\n")
    with pytest.raises(UserError, match="target BARE gives no rules for model type 'transformer'"):
        load_plan_inputs(str(bare), model_type="transformer")
