"""TPE on the damaged LayerNorm block: it finds a configuration within the limit, every trial is in the
report, a seed gives the same search (also with --workers 2), a study file resumes, and bad use is refused."""
from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from rewriter.cli import main

pytest.importorskip("optuna")

METRICS = Path(__file__).resolve().parent / "metric_functions.py"


def _run(paths: dict[str, Path], out: Path, *extra: str) -> tuple[int, dict]:
    report = out.with_suffix(".json")
    code = main(["quantize", str(paths["model"]), "-o", str(out), "--data", str(paths["data"]), "--target",
                 str(paths["target"]), "--subset-size", "16", "--no-guard", "--report", str(report), "--quiet",
                 "--metric", f"{METRICS}:agreement", "--tpe", "--max-drop", "0.3", *extra])
    return code, json.loads(report.read_text()) if report.exists() else {}


@pytest.fixture(scope="module")
def searched(damaged_block, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("tpe") / "q.onnx"
    mp = pytest.MonkeyPatch()
    mp.setenv("REWRITER_TEST_FLOAT_MODEL", str(damaged_block["model"]))
    try:
        code, report = _run(damaged_block, out, "--tpe-trials", "12")
    finally:
        mp.undo()
    assert code == 0
    return {"out": out, "report": report}


def test_it_finds_a_configuration_within_the_limit(searched) -> None:
    search = searched["report"]["search"]
    assert search["algorithm"] == "TPE" and search["met"] is True and search["final_drop"] <= 0.3
    tpe = [t for t in search["trials"] if t["kind"] == "tpe"]
    assert len(tpe) == 12 and search["metric_evaluations"] == 13  # and the float model
    chosen = search["trials"][search["chosen_trial"]]
    assert chosen["feasible"] and chosen["speed_proxy"] == max(t["speed_proxy"] for t in tpe if t["feasible"])
    # Latency was measured (serially, afterwards) for every trial within the limit, and only for those.
    assert all((t["latency_ms"] is not None) == t["feasible"] for t in tpe)
    assert search["latency_ms"] == chosen["latency_ms"] and search["float_latency_ms"] > 0
    assert f"trial {search['chosen_trial']} of {len(search['trials'])} chosen" in search["summary"]


def test_the_chosen_float_nodes_are_plan_decisions(searched, damaged_block, capsys) -> None:
    search, report = searched["report"]["search"], searched["report"]
    floats = set(search["trials"][search["chosen_trial"]]["configuration"]["float_nodes"])
    assert floats and {n["node"] for n in report["nodes"] if n["status"] == "reverted"} == floats
    model = onnx.load(searched["out"])
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    assert not any(set(n.input) & dequantized for n in model.graph.node if n.name in floats)
    assert main(["audit", str(damaged_block["model"]), "--target", str(damaged_block["target"]), "--report",
                 str(searched["out"].with_suffix(".json"))]) == 0
    assert "reverted to float by tpe-search" in capsys.readouterr().out


def test_a_seed_gives_the_same_search_with_one_or_two_workers(searched, damaged_block, tmp_path: Path) -> None:
    code, report = _run(damaged_block, tmp_path / "w2.onnx", "--tpe-trials", "12", "--workers", "2")
    assert code == 0
    assert [t["configuration"] for t in report["search"]["trials"]] == \
        [t["configuration"] for t in searched["report"]["search"]["trials"]]
    assert report["search"]["chosen_trial"] == searched["report"]["search"]["chosen_trial"]
    assert (tmp_path / "w2.onnx").read_bytes() == searched["out"].read_bytes()


def test_a_study_file_resumes_where_it_stopped(searched, damaged_block, tmp_path: Path) -> None:
    study = tmp_path / "study.db"
    code, first = _run(damaged_block, tmp_path / "a.onnx", "--tpe-trials", "4", "--tpe-study", str(study))
    assert code == 0 and study.exists()
    code, resumed = _run(damaged_block, tmp_path / "b.onnx", "--tpe-trials", "8", "--tpe-study", str(study))
    assert code == 0
    trials = [t for t in resumed["search"]["trials"] if t["kind"] == "tpe"]
    assert [t["study_trial"] for t in trials] == list(range(8))
    # The first four came from the file, not evaluated again: the float model and four new trials.
    assert resumed["search"]["metric_evaluations"] == 1 + 4
    assert [t["configuration"] for t in trials[:4]] == \
        [t["configuration"] for t in first["search"]["trials"] if t["kind"] == "tpe"]


def test_bad_use_is_refused(damaged_block, tmp_path: Path, capsys) -> None:
    base = ["quantize", str(damaged_block["model"]), "-o", str(tmp_path / "q.onnx"), "--data",
            str(damaged_block["data"]), "--quiet"]
    assert main([*base, "--tpe"]) == 2
    assert "--tpe needs --metric" in capsys.readouterr().err
    assert main([*base, "--tpe-trials", "3"]) == 2
    assert "add --tpe" in capsys.readouterr().err
    assert main([*base, "--tpe", "--accuracy-aware", "--metric", f"{METRICS}:agreement"]) == 2
    assert "choose one search" in capsys.readouterr().err
    assert main([*base, "--tpe", "--metric", f"{METRICS}:agreement", "--workers", "0"]) == 2
    assert "workers must be at least 1" in capsys.readouterr().err


def test_ray_trials_give_the_same_choice(searched, damaged_block, tmp_path: Path, monkeypatch) -> None:
    """One test on a local Ray instance (started by the run, stopped after): the same search as --workers 1."""
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a throw-away local instance
    try:
        code, report = _run(damaged_block, tmp_path / "ray.onnx", "--tpe-trials", "12", "--ray", "--workers", "2")
    finally:
        ray.shutdown()
    assert code == 0 and report["search"]["ray"] is True
    assert [t["configuration"] for t in report["search"]["trials"]] == \
        [t["configuration"] for t in searched["report"]["search"]["trials"]]
    assert report["search"]["metric_evaluations"] == searched["report"]["search"]["metric_evaluations"]
    assert (tmp_path / "ray.onnx").read_bytes() == searched["out"].read_bytes()


def test_the_api_runs_it_with_a_callable(searched, damaged_block) -> None:
    import rewriter
    from metric_functions import agreement

    result = rewriter.quantize(str(damaged_block["model"]), str(damaged_block["data"]),
                               target=str(damaged_block["target"]), subset_size=16, guard=False, metric=agreement,
                               tpe={"max_trials": 4, "maximal_drop": 0.3})
    trials = [t for t in result.report["search"]["trials"] if t["kind"] == "tpe"]
    # The same seed: the first four trials of the CLI's search.
    assert [t["configuration"] for t in trials] == \
        [t["configuration"] for t in searched["report"]["search"]["trials"] if t["kind"] == "tpe"][:4]
