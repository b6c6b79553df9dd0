"""AccuracyAwareQuantization end to end on the damaged LayerNorm block: reverts go through the plan (the
output, the report and `audit` show them with their measured reason), the stopping conditions are
reported, the config file and the command line set it, and the output is the same run to run."""
from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from rewriter.cli import main

METRICS = Path(__file__).resolve().parent / "metric_functions.py"


def _run(paths: dict[str, Path], out: Path, *extra: str, metric: str = "agreement") -> tuple[int, dict]:
    report = out.with_suffix(".json")
    code = main(["quantize", str(paths["model"]), "-o", str(out), "--data", str(paths["data"]), "--target",
                 str(paths["target"]), "--subset-size", "16", "--no-guard", "--report", str(report), "--quiet",
                 "--metric", f"{METRICS}:{metric}", *extra])
    return code, json.loads(report.read_text()) if report.exists() else {}


@pytest.fixture(scope="module")
def searched(damaged_block, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("aaq") / "q.onnx"
    mp = pytest.MonkeyPatch()
    mp.setenv("REWRITER_TEST_FLOAT_MODEL", str(damaged_block["model"]))
    try:
        code, report = _run(damaged_block, out, "--accuracy-aware", "--max-drop", "0.3")
    finally:
        mp.undo()
    assert code == 0
    return {"out": out, "report": report}


def test_the_drop_is_brought_within_the_limit_by_reverts(searched) -> None:
    search = searched["report"]["search"]
    assert search["algorithm"] == "AccuracyAwareQuantization" and search["met"] is True
    assert search["baseline"] == 1.0 and search["initial"] < 0.7  # DefaultQuantization alone loses more
    assert search["final_drop"] <= 0.3 < 1.0 - search["initial"]
    assert search["reverts"] and all(r["contribution"] > 0 for r in search["reverts"])
    for revert in search["reverts"]:  # the metric before (quantized again alone) and after (reverted)
        assert revert["metric_reverted"] == search["final"]
        assert revert["metric_quantized_again"] == pytest.approx(search["final"] - revert["contribution"])


def test_every_trial_is_in_the_report_and_the_chosen_one_is_the_final_model(searched) -> None:
    search = searched["report"]["search"]
    trials = search["trials"]
    assert [t["trial"] for t in trials] == list(range(len(trials)))
    assert [t["kind"] for t in trials[:2]] == ["float", "base"]
    assert {t["kind"] for t in trials[2:]} <= {"revert", "requantize", "substitute"}
    assert all(t["seconds"] >= 0 and t["metric"] is not None for t in trials)
    assert search["metric_evaluations"] == len(trials)
    chosen = trials[search["chosen_trial"]]
    assert chosen["metric"] == search["final"]
    assert sorted(chosen["configuration"]["reverted"]) == sorted(r["node"] for r in search["reverts"])
    assert f"trial {search['chosen_trial']} of {len(trials)} chosen" in search["summary"]


def test_reverted_nodes_are_plan_decisions_in_the_output_and_the_audit(searched, damaged_block, capsys) -> None:
    report, reverted = searched["report"], {r["node"] for r in searched["report"]["search"]["reverts"]}
    statuses = {n["node"]: n for n in report["nodes"]}
    assert {n for n, entry in statuses.items() if entry["status"] == "reverted"} == reverted
    model = onnx.load(searched["out"])
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    for node in model.graph.node:
        if node.name in reverted:
            assert not set(node.input) & dequantized, f"{node.name} still reads a quantized input"
    report_file = searched["out"].with_suffix(".json")
    assert main(["audit", str(damaged_block["model"]), "--target", str(damaged_block["target"]),
                 "--report", str(report_file)]) == 0
    text = capsys.readouterr().out
    for node in reverted:
        rows = [line for line in text.splitlines() if line.split()[:1] == [node] and " reverted " in line]
        assert len(rows) == 1 and "reverted to float by accuracy-aware-search" in rows[0]
    assert "quantized again alone" in text and "contribution +" in text


def test_a_limit_not_met_within_max_iter_says_so(damaged_block, tmp_path: Path, capsys) -> None:
    code, report = _run(damaged_block, tmp_path / "q.onnx", "--accuracy-aware", "--max-drop", "0.01",
                        "--max-iter", "2")
    assert code == 0
    search = report["search"]
    assert (search["met"], search["stopped"]) == (False, "budget spent")
    assert search["metric_evaluations"] == 2 + 2  # float and quantized, then max_iter_num
    captured = capsys.readouterr()
    assert "NOT within the limit" in captured.out
    assert "warning: the accuracy limit was not met" in captured.err and "max_iter_num (2)" in captured.err


def test_the_config_file_runs_it_and_the_command_line_overrides(damaged_block, tmp_path: Path) -> None:
    config = tmp_path / "aaq.json"
    config.write_text('{"compression": {"algorithms": [{"name": "AccuracyAwareQuantization", "params": '
                      '{"maximal_drop": 0.5, "drop_type": "relative", "max_iter_num": 3}}]}}')
    code, report = _run(damaged_block, tmp_path / "q.onnx", "--config", str(config))
    assert code == 0
    search = report["search"]
    assert (search["maximal_drop"], search["drop_type"], search["max_iter_num"]) == (0.5, "relative", 3)
    assert search["allowed_drop"] == 0.5 * search["baseline"]
    code, report = _run(damaged_block, tmp_path / "q2.onnx", "--config", str(config), "--max-drop", "0.3",
                        "--drop-type", "absolute")
    assert (report["search"]["maximal_drop"], report["search"]["drop_type"]) == (0.3, "absolute")


def test_a_config_entry_without_a_metric_runs_its_base_algorithm_and_warns(damaged_block, tmp_path: Path,
                                                                         capsys) -> None:
    config = tmp_path / "aaq.json"
    config.write_text('{"compression": {"algorithms": [{"name": "AccuracyAwareQuantization"}]}}')
    out = tmp_path / "q.onnx"
    assert main(["quantize", str(damaged_block["model"]), "-o", str(out), "--data", str(damaged_block["data"]),
                 "--config", str(config), "--quiet"]) == 0
    assert "AccuracyAwareQuantization needs an accuracy metric" in capsys.readouterr().err and out.exists()


def test_a_lower_is_better_metric_finds_the_same_reverts(searched, damaged_block, tmp_path: Path) -> None:
    code, report = _run(damaged_block, tmp_path / "q.onnx", "--accuracy-aware", "--max-drop", "0.3",
                        "--metric-lower-is-better", metric="error_rate")
    assert code == 0 and report["search"]["lower_is_better"] is True
    assert report["search"]["final"] == pytest.approx(1.0 - searched["report"]["search"]["final"])
    assert [r["node"] for r in report["search"]["reverts"]] == \
        [r["node"] for r in searched["report"]["search"]["reverts"]]


def test_the_same_run_gives_the_same_bytes(searched, damaged_block, tmp_path: Path) -> None:
    code, report = _run(damaged_block, tmp_path / "again.onnx", "--accuracy-aware", "--max-drop", "0.3")
    assert code == 0
    assert (tmp_path / "again.onnx").read_bytes() == searched["out"].read_bytes()
    assert [t["configuration"] for t in report["search"]["trials"]] == \
        [t["configuration"] for t in searched["report"]["search"]["trials"]]


def test_the_api_takes_any_callable(searched, damaged_block) -> None:
    import rewriter
    from metric_functions import agreement

    result = rewriter.quantize(str(damaged_block["model"]), str(damaged_block["data"]),
                               target=str(damaged_block["target"]), subset_size=16, guard=False,
                               metric=agreement, accuracy_aware={"maximal_drop": 0.3})
    assert result.report["search"]["metric"] == "agreement"
    def measured(report):
        return [(r["node"], r["contribution"]) for r in report["search"]["reverts"]]

    assert measured(result.report) == measured(searched["report"])


def test_convert_to_mixed_preset_measures_the_mixed_preset_first(damaged_block, tmp_path: Path) -> None:
    config = tmp_path / "aaq.json"
    config.write_text('{"compression": {"algorithms": [{"name": "AccuracyAwareQuantization", "params": '
                      '{"maximal_drop": 0.3, "convert_to_mixed_preset": true}}]}}')
    code, report = _run(damaged_block, tmp_path / "q.onnx", "--config", str(config))
    assert code == 0
    trials = report["search"]["trials"]
    assert [t["kind"] for t in trials[:3]] == ["float", "base", "mixed preset"]
    assert [t["configuration"]["preset"] for t in trials[1:3]] == ["performance", "mixed"]
    # The search goes on from the better of the two.
    better = "mixed" if trials[2]["metric"] > trials[1]["metric"] else "performance"
    assert report["search"]["preset"] == better
    assert all(t["configuration"]["preset"] == better for t in trials[3:])
