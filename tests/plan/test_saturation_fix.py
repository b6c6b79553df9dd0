"""The saturation fix: which weights get the 7-bit grid, by the target's spec or a run's choice."""
from __future__ import annotations

import textwrap
from pathlib import Path

import onnx
import pytest

import models
from plan_helpers import plan_model
from rewriter.cli import main
from rewriter.errors import UserError, UserErrors
from rewriter.ir.normalize import normalize
from rewriter.ir.view import graph_view
from rewriter.match.planner import PlanOptions
from rewriter.match.saturation import first_layers
from rewriter.pipeline import QuantizeOptions
from rewriter.spec.loader import builtin_specs_dir, load_spec


def weight_levels(plan) -> dict[str, tuple[int | None, int | None]]:
    return {p.tensor: (p.config.level_low, p.config.level_high) for p in plan.points if p.role == "weight"}


def test_builtin_targets_choose_all_on_cpus_and_no_elsewhere() -> None:
    modes = {name: load_spec(builtin_specs_dir() / f"{name}.yaml").saturation_fix
             for name in ("cpu", "any", "ort", "gpu", "vpu", "gna")}
    assert modes == {"cpu": "all", "any": "all", "ort": "all", "gpu": "no", "vpu": "no", "gna": "no"}


def test_first_layer_narrows_only_the_weights_of_layers_fed_by_the_input() -> None:
    model = models.tiny_cnn()
    assert first_layers(graph_view(normalize(model).model)) == {"stem_conv"}
    plan = plan_model(model, "CPU", saturation_fix="first_layer")
    levels = weight_levels(plan)
    assert levels.pop("stem_conv.weight") == (-63, 63)
    assert levels and set(levels.values()) == {(-127, 127)}
    (note,) = [d for d in plan.point("stem_conv.weight").trail if d.source == "saturation_fix"]
    assert "first_layer by options" in note.detail and "[-127,127] -> [-63,63]" in note.detail


def test_first_layers_are_found_through_data_movement_and_stop_at_the_first_matrix_product() -> None:
    graph = graph_view(normalize(models.conv_sliced_bias()).model)  # input -> Unsqueeze -> conv
    assert first_layers(graph) == {"conv"}
    graph = graph_view(normalize(models.attention_block()).model)
    # The residual connection carries the input past attention to the feed-forward layer.
    assert first_layers(graph) == {"q_matmul", "k_matmul", "v_matmul", "ffn_in_matmul"}


def test_asymmetric_weights_keep_a_128_level_grid() -> None:
    plan = plan_model(models.tiny_cnn(), "CPU", options=PlanOptions(preset="accuracy"))
    assert set(weight_levels(plan).values()) == {(-64, 63)}


def test_the_spec_line_is_the_trail_and_a_user_spec_may_change_the_mode(tmp_path: Path) -> None:
    plan = plan_model(models.conv_bn_relu_chain(), "ANY")
    notes = [d for p in plan.points for d in p.trail if d.source == "saturation_fix"]
    assert len(notes) == 2 and all(d.loc.file.endswith("cpu.yaml") and d.loc.line > 0 for d in notes)
    assert "all by ANY:saturation_fix" in notes[0].detail
    spec = tmp_path / "mine.yaml"
    spec.write_text("name: MINE\nextends: cpu\nsaturation_fix: first_layer\n")
    assert load_spec(spec).saturation_fix == "first_layer"
    assert load_spec(spec).saturation_fix_loc.line == 3


def test_a_wrong_mode_is_reported_at_its_line(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(textwrap.dedent("""\
        name: BAD
        extends: cpu
        saturation_fix: first_layers
        """))
    with pytest.raises(UserErrors) as info:
        load_spec(spec)
    (error,) = info.value.errors
    assert error.loc.line == 3 and "first_layer" in error.message and "did you mean" in error.message
    with pytest.raises(UserError, match="unknown saturation fix"):
        QuantizeOptions(saturation_fix="some")


def test_audit_takes_the_mode_from_the_command_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "chain.onnx"
    onnx.save(models.conv_bn_relu_chain(), path)
    assert main(["audit", str(path), "--target", "CPU", "--saturation-fix", "no"]) == 0
    out = capsys.readouterr().out
    assert "[-127,127]) axis=0" in out and "saturation_fix" not in out
    assert main(["audit", str(path), "--target", "CPU"]) == 0
    out = capsys.readouterr().out
    assert "[-63,63]) axis=0" in out and "config by saturation_fix @ hw_specs/cpu.yaml:" in out
