"""Config-file messages: every error at its file:line:column, all of a file's errors in one run, enums in any
case, the preset rename named for the target it runs on, and model.model used as the model."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rewriter.cli import main
from rewriter.config import load_config, merge_cli
from rewriter.errors import UserError, UserErrors
from rewriter.ir.load import load_model
from rewriter.ir.normalize import normalize
from rewriter.ir.view import graph_view
from rewriter.match.planner import PlanOptions, build_plan
from rewriter.targets import load_plan_inputs

ROOT = Path(__file__).resolve().parents[2]
MODEL, CALIB = ROOT / "examples" / "tiny_cnn.onnx", ROOT / "examples" / "calib"
QUICK = ("--subset-size", "4", "--no-self-check", "--quiet")


def _run(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning: ")]


def _config(tmp_path: Path, params: dict, compression: dict | None = None, **top: object) -> Path:
    path = tmp_path / "pot.json"
    body = {**top, "compression": {**(compression or {}),
                                   "algorithms": [{"name": "DefaultQuantization", "params": params}]}}
    path.write_text(json.dumps(body, indent=1))
    return path


def quoted(text: str) -> str:
    return f'"{text}"'


def _line_col(path: Path, text: str) -> str:
    """file:line:column of the first ``text`` in the file."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return f"{path}:{number}:{line.index(text) + 1}"
    raise AssertionError(f"{text!r} is not in {path}")


# ----------------------------------------------------------------------------- positions


def test_unknown_ignored_scope_nodes_point_at_the_file(capsys, tmp_path: Path) -> None:
    config = _config(tmp_path, {"ignored": {"scope": ["stem_cnv", "stem_relu", "nowhere"]}})
    code, err = _run(capsys, "quantize", str(MODEL), "-o", str(tmp_path / "q.onnx"), "--config", str(config),
                     "--data", str(CALIB), *QUICK)
    assert code == 2
    # Both unknown names at once, each where the file writes it (the old message: "--ignore-scope names ...").
    assert f"error: {_line_col(config, quoted('stem_cnv'))}: ignored.scope names node 'stem_cnv', which the model " \
           "does not have; did you mean stem_conv" in err
    assert f"{_line_col(config, quoted('nowhere'))}: ignored.scope names node 'nowhere'" in err
    assert "--ignore-scope" not in err
    code, err = _run(capsys, "quantize", str(MODEL), "-o", str(tmp_path / "q.onnx"), "--data", str(CALIB),
                     "--ignore-scope", "nowhere", *QUICK)
    assert code == 2 and "error: --ignore-scope names node 'nowhere'" in err


def test_the_trail_of_a_node_the_file_ignores_names_the_file(tmp_path: Path) -> None:
    config = _config(tmp_path, {"ignored": {"scope": ["stem_conv"], "operations": [{"type": "MaxPool"}]}})
    loaded = load_config(config)
    graph = graph_view(normalize(load_model(MODEL)).model)
    options = PlanOptions(ignore_scope=loaded.ignore_scope, ignore_ops=loaded.ignore_ops,
                          ignore_scope_sources=loaded.ignore_scope_sources)
    plan = build_plan(graph, *_spec_and_rules("CPU"), options)
    trails = {n.node: n.trail for n in plan.nodes}
    scope = [d for d in trails["stem_conv"] if d.action == "ignore"]
    assert [(d.source, str(d.loc)) for d in scope] == [("config", _line_col(config, '"stem_conv"'))]
    pool = [d for d in trails["pool"] if d.action == "ignore"]
    assert [(d.source, str(d.loc)) for d in pool] == [("config", _line_col(config, '"MaxPool"'))]


def _spec_and_rules(target: str) -> tuple:
    inputs = load_plan_inputs(target, (), None)
    return inputs.spec, inputs.rules


# ----------------------------------------------------------------------------- all errors at once


def test_a_misspelt_algorithm_name_hides_no_other_error(tmp_path: Path) -> None:
    path = tmp_path / "pot.json"
    path.write_text('{"compression": {"algorithms": [\n'
                    '  {"name": "DefaultQuantizaton", "params": {"stat_subset_size": "300",\n'
                    '      "ignored": {"operations": [{"type": "Convolutoin"}]}}},\n'
                    '  {"name": "FastBiasCorrection", "params": {"treshold": 2}}]}}\n')
    with pytest.raises(UserErrors) as caught:
        load_config(path)
    messages = [f"{e.loc}: {e.message}" for e in caught.value.errors]
    assert messages[0] == (f"{path}:2:12: unknown algorithm 'DefaultQuantizaton' in compression.algorithms[0].name; "
                           "did you mean 'DefaultQuantization'?")
    # The old loader stopped at the name: these two errors of its params went unreported.
    assert any(m.startswith(f"{path}:2:65: compression.algorithms[0].params.stat_subset_size must be an integer")
               for m in messages)
    assert any(m.startswith(f"{path}:3:43: unknown operation type 'Convolutoin'") for m in messages)
    assert any(m.startswith(f"{path}:4:45: unknown key 'treshold'") for m in messages)


# ----------------------------------------------------------------------------- enums in any case


def test_enums_take_any_case(tmp_path: Path) -> None:
    config = tmp_path / "pot.json"
    config.write_text(json.dumps({"compression": {"target_device": "cpu", "algorithms": [
        {"name": "defaultQuantization", "params": {
            "preset": "Performance", "saturation_fix": "First_Layer",
            "weights": {"mode": "Symmetric", "granularity": "PerChannel"},
            "activations": {"range_estimator": {"max": {"type": "Quantile", "aggregator": "MEAN"}}}}}]}}))
    loaded = load_config(config)  # the old loader refused 'Performance' though it took 'cpu'
    assert (loaded.target, loaded.preset, loaded.pipeline.saturation_fix) == ("CPU", "performance", "first_layer")
    assert loaded.algorithms[0].name == "DefaultQuantization"
    assert loaded.quantizers.weights.mode == "symmetric" and loaded.quantizers.weights.granularity == "perchannel"
    assert loaded.ranges is not None and loaded.ranges.activations is not None
    assert dict(loaded.ranges.activations["max"]) == {"type": "quantile", "aggregator": "mean"}
    config.write_text(json.dumps({"compression": {"algorithms": [
        {"name": "MinMaxQuantization", "params": {"preset": "Asymmetric"}}]}}))
    assert load_config(config).preset_written == "accuracy"


# ----------------------------------------------------------------------------- the preset rename


def test_the_preset_warning_names_the_target_it_runs_on(capsys, tmp_path: Path) -> None:
    args = ("quantize", str(MODEL), "-o", str(tmp_path / "q.onnx"), "--data", str(CALIB), *QUICK, "--config")
    accuracy_on_cpu = _config(tmp_path, {"preset": "accuracy"}, {"target_device": "CPU"})
    code, err = _run(capsys, *args, str(accuracy_on_cpu))
    assert code == 0, err
    assert _warnings(err) == [f"warning: {_line_col(accuracy_on_cpu, quoted('accuracy'))}: preset 'accuracy' runs as "
                              "'mixed' on CPU, as in the original tool"]
    # ORT keeps accuracy: the old warning still said it ran as mixed on CPU.
    code, err = _run(capsys, *args, str(accuracy_on_cpu), "--target", "ORT")
    assert code == 0 and not [w for w in _warnings(err) if "preset" in w], err
    # GNA runs mixed as accuracy: the old loader had warned for the file's CPU, where mixed stays mixed.
    mixed_on_cpu = _config(tmp_path, {"preset": "mixed"}, {"target_device": "CPU"})
    code, err = _run(capsys, *args, str(mixed_on_cpu), "--target", "GNA")
    assert code == 0, err
    assert [w for w in _warnings(err) if "preset" in w] == [
        f"warning: {_line_col(mixed_on_cpu, quoted('mixed'))}: preset 'mixed' runs as 'accuracy' on GNA, as in the "
        "original tool"]
    # No target_device: renamed as the original tool's default device did, for the target that runs.
    no_device = _config(tmp_path, {"preset": "accuracy"})
    code, err = _run(capsys, *args, str(no_device))
    assert code == 0, err
    assert [w for w in _warnings(err) if "preset" in w] == [
        f"warning: {_line_col(no_device, quoted('accuracy'))}: preset 'accuracy' runs as 'mixed' for target ORT: the "
        "original tool renamed it so for a file without target_device (its default device ANY); set "
        "target_device, or --preset, to choose"]


# ----------------------------------------------------------------------------- model.model


def test_model_model_is_the_model_when_the_command_line_names_none(capsys, tmp_path: Path) -> None:
    config = _config(tmp_path, {"stat_subset_size": 4}, model={"model_name": "tiny", "model": str(MODEL)},
                     engine={"data_source": str(CALIB)})
    out = tmp_path / "q.onnx"
    code, err = _run(capsys, "quantize", "--config", str(config), "-o", str(out), "--no-self-check", "--quiet")
    assert code == 0, err  # the old parser required MODEL
    assert out.is_file()


def test_model_model_that_is_not_onnx_or_missing_is_exit_2(capsys, tmp_path: Path) -> None:
    ir = _config(tmp_path, {}, model={"model": "tiny.xml", "weights": "tiny.bin"}, engine={"data_source": str(CALIB)})
    code, err = _run(capsys, "quantize", "--config", str(ir), "-o", str(tmp_path / "q.onnx"))
    assert code == 2
    assert f"error: {_line_col(ir, quoted('tiny.xml'))}: model.model names 'tiny.xml', not an .onnx file" in err
    # A positional model wins: the file's OpenVINO IR is the original tool's, not an error then.
    code, err = _run(capsys, "quantize", str(MODEL), "--config", str(ir), "-o", str(tmp_path / "q.onnx"), *QUICK)
    assert code == 0, err
    code, err = _run(capsys, "quantize", "-o", str(tmp_path / "q.onnx"), "--data", str(CALIB))
    assert code == 2
    assert "error: no model to quantize: give MODEL, or model.model (an .onnx path) in the --config file" in err


def test_a_missing_data_source_points_at_the_file(capsys, tmp_path: Path) -> None:
    config = _config(tmp_path, {}, engine={"data_source": "no_such_calibration_folder"})
    code, err = _run(capsys, "quantize", str(MODEL), "--config", str(config), "-o", str(tmp_path / "q.onnx"))
    assert code == 2
    assert f"error: {_line_col(config, quoted('no_such_calibration_folder'))}: engine.data_source names " \
           "'no_such_calibration_folder', which does not exist" in err
    code, err = _run(capsys, "quantize", str(MODEL), "--config", str(config), "-o", str(tmp_path / "q.onnx"),
                     "--data", str(CALIB), *QUICK)
    assert code == 0, err  # --data replaces it


def test_a_model_type_the_target_has_no_rules_for_points_at_the_file(tmp_path: Path) -> None:
    bare = tmp_path / "bare.yaml"
    bare.write_text("name: BARE\n")
    config = _config(tmp_path, {}, {"model_type": "transformer"})
    loaded = load_config(config)
    with pytest.raises(UserError) as caught:  # the old merge passed it on, and the plan said so without a position
        merge_cli(loaded, {"target": str(bare)})
    assert str(caught.value.loc) == _line_col(config, quoted("transformer"))
    assert caught.value.message.startswith("compression.model_type 'transformer': target BARE gives no rules for it "
                                           "(targets that do: ")
    assert merge_cli(loaded, {"target": "CPU"}).model_type == "transformer"


def test_a_bad_model_model_and_data_source_are_reported_together(capsys, tmp_path: Path) -> None:
    config = _config(tmp_path, {}, model={"model": "tiny.xml"}, engine={"data_source": "no_such_folder"})
    code, err = _run(capsys, "quantize", "--config", str(config), "-o", str(tmp_path / "q.onnx"))
    assert code == 2
    assert f"{_line_col(config, quoted('tiny.xml'))}: model.model names 'tiny.xml'" in err
    assert f"{_line_col(config, quoted('no_such_folder'))}: engine.data_source names 'no_such_folder'" in err
