"""`rewriter quantize --config FILE`: the file applies, command-line options override it."""
from __future__ import annotations

import json
from pathlib import Path

from rewriter.cli import main

ROOT = Path(__file__).resolve().parents[2]
MODEL, CALIB = ROOT / "examples" / "tiny_cnn.onnx", ROOT / "examples" / "calib"
SEED = Path(__file__).parent / "data" / "seed_example.json"


def quantize(capsys, tmp_path: Path, *extra: str) -> tuple[int, dict | None, str]:
    out, report = tmp_path / "q.onnx", tmp_path / "report.json"
    code = main(["quantize", str(MODEL), "-o", str(out), "--report", str(report), *extra])
    err = capsys.readouterr().err
    return code, json.loads(report.read_text()) if code == 0 else None, err


def test_seed_config_runs_and_warns_about_what_is_not_run(capsys, tmp_path: Path) -> None:
    code, report, err = quantize(capsys, tmp_path, "--config", str(SEED), "--data", str(CALIB))
    assert code == 0, err
    options = report["options"]
    # The file names no target_device: QDQ output gets the onnxruntime target (docs/config.md).
    assert (options["target"], options["preset"], options["subset_size"], options["estimator_preset"]) == \
        ("ORT", "mixed", 300, "quantile")
    assert report["preset"] == "mixed" and report["calibration"]["samples"] == 32
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert warnings[:2] == [
        f"warning: {SEED}:21:21: '<NODE_NAME>' is the documentation's placeholder, not a node name; ignored",
        f"warning: {SEED}:25:33: '<NODE_TYPE>' is the documentation's placeholder, not an operation type; "
        "this entry is ignored"]
    # What the file asks for and the pipeline does not run yet is named, never dropped silently.
    from rewriter.config import NOT_RUN_YET
    expected = [key for key in ("ActivationChannelAlignment", "FastBiasCorrection", "quantizer_overrides")
                if key in NOT_RUN_YET]
    assert len(warnings) == 2 + len(expected)


def test_a_command_line_flag_overrides_the_files_preset(capsys, tmp_path: Path) -> None:
    code, report, err = quantize(capsys, tmp_path, "--config", str(SEED), "--data", str(CALIB),
                                 "--preset", "performance", "--range-estimator", "default")
    assert code == 0, err
    assert report["preset"] == "performance" and report["options"]["preset"] == "performance"
    assert report["options"]["estimator_preset"] == "default"


def test_target_subset_and_data_come_from_the_file(capsys, tmp_path: Path) -> None:
    config = tmp_path / "pot.json"
    config.write_text(json.dumps({
        "model": {"model_name": "tiny", "model": "tiny.xml", "weights": "tiny.bin"},
        "engine": {"type": "simplified", "data_source": str(CALIB)},
        "compression": {"target_device": "ORT", "algorithms": [
            {"name": "MinMaxQuantization", "params": {"preset": "accuracy", "stat_subset_size": 8, "seed": 1}}]}}))
    code, report, err = quantize(capsys, tmp_path, "--config", str(config))
    assert code == 0, err
    assert (report["target"], report["preset"], report["calibration"]["samples"]) == ("ORT", "accuracy", 8)
    code, report, err = quantize(capsys, tmp_path, "--config", str(config), "--target", "CPU", "--subset-size", "4")
    assert code == 0, err
    assert (report["target"], report["preset"], report["calibration"]["samples"]) == ("CPU", "mixed", 4)


def test_config_errors_exit_2_with_positions(capsys, tmp_path: Path) -> None:
    config = tmp_path / "bad.json"
    config.write_text('{"compression": {"algorithms": [{"name": "DefaultQuantization",\n'
                      '  "params": {"presett": "mixed"}}]}}')
    code, _, err = quantize(capsys, tmp_path, "--config", str(config), "--data", str(CALIB))
    assert code == 2
    assert f"error: {config}:2:14: unknown key 'presett' in compression.algorithms[0].params; " \
           "did you mean 'preset'?" in err


def test_no_data_anywhere_is_an_error(capsys, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("compression:\n  algorithms:\n    - name: MinMaxQuantization\n")
    code, _, err = quantize(capsys, tmp_path, "--config", str(config))
    assert code == 2 and "no calibration data: give --data, or engine.data_source in the config file" in err
