"""Smoke run of the benchmark harness (tools/bench/run.py) so that it cannot rot.

One tiny model (the bundled example's builder), a handful of samples, every
peer whose package imports here; the project's test env has only rewriter's
dependencies, so NNCF is usually skipped with its reason recorded. The full
benchmark (tools/bench/README.md) is not part of the test suite.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import models

BENCH = Path(__file__).resolve().parents[2] / "tools" / "bench"
sys.path.insert(0, str(BENCH))

import measure  # noqa: E402
import metrics  # noqa: E402
import peers  # noqa: E402
import report  # noqa: E402
import run  # noqa: E402

NAME = "tiny"


def _corpus(root: Path, n_calib: int = 6, n_eval: int = 6) -> Path:
    """A corpus entry in the layout of tools/bench/corpus.py, scored by top-1 agreement with float."""
    d = root / NAME
    (d / "calib").mkdir(parents=True)
    (d / "eval").mkdir()
    model = models.tiny_cnn()
    onnx.save(model, d / "model.onnx")
    rng = np.random.default_rng(0)
    sess = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
    refs = []
    for split, n in (("calib", n_calib), ("eval", n_eval)):
        for i in range(n):
            x = {"input": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)}
            metrics.write_npz(d / split / f"{i:06d}.npz", x)
            if split == "eval":
                refs.append(sess.run(None, x)[0])
    np.save(d / "eval_reference.npy", np.concatenate(refs))
    meta = {"name": NAME, "description": "tests/models.py tiny_cnn, random inputs",
            "metric": {"name": "top1_agreement", "kind": "top1_agreement", "output_index": 0, "float_value": 1.0}}
    (d / "meta.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    cache = _corpus(tmp / "corpus")
    results, docs = tmp / "results", tmp / "docs"
    code = run.main(["--cache", str(cache), "--results", str(results), "--docs", str(docs), "--quick",
                     "--samples", "6", "--runs", "3", "--threads", "1", "--tools", "ours,ort,nncf",
                     "--timeout", "120"])
    assert code == 0
    return {"results": results, "docs": docs, "data": json.loads((results / f"{NAME}.json").read_text())}


def test_every_tool_has_a_result_or_a_reason(smoke):
    tools = smoke["data"]["tools"]
    assert set(tools) == {"ours", "ours_default", "ours_ort", "ours_dq", "ours_ort_dq", "ours_nosat",
                          "ours_ort_nosat", "ort", "nncf", "nncf_default"}
    assert tools["ours_default"]["config"] == {"cli_options": []}
    if tools["ours_default"].get("ok"):
        assert tools["ours_default"]["facts"]["argv"][:2] == ["rewriter", "quantize"]
        assert Path(tools["ours_default"]["rewriter"]["path"], "rewriter").is_dir()
    assert tools["ours_nosat"]["config"] == {**tools["ours"]["config"], "saturation_fix": "no"}
    assert tools["ours_ort_nosat"]["config"] == {**tools["ours_ort"]["config"], "saturation_fix": "no"}
    assert tools["ours_dq"]["config"]["bias_correction"] == "fast" and tools["ours_dq"]["config"]["channel_alignment"]
    for name in ("ours", "ours_ort", "ours_dq", "ort", "nncf"):
        ok, reason = peers.available(name)
        if not ok:
            assert tools[name]["skipped"] == reason
            continue
        assert tools[name]["ok"], tools[name].get("error")
        assert tools[name]["samples"] == 6
        assert tools[name]["peak_rss_mb"] > 10
        assert tools[name]["quantize_s"] > 0


def test_ours_is_scored_measured_and_fused(smoke):
    data = smoke["data"]
    ours = data["tools"]["ours"]
    assert ours["ok"], ours.get("error")
    assert ours["scores"]["top1_agreement"] >= 0.5
    assert ours["dequantize_linear"] > 0 and ours["quantize_linear"] > 0
    assert ours["integer_kernels"].get("QLinearConv", 0) > 0
    # Weights shrink; the whole file of this 11 KB model need not (Q/DQ parameters and per-node provenance).
    assert ours["weight_bytes"] < data["float"]["weight_bytes"]
    assert data["floor"]["floor_s"] > 0 and data["floor"]["samples"] == 6
    assert data["floor"]["peak_rss_mb"] == data["floor"]["vm_hwm_mb"] > 10  # the floor's own peak
    lat = data["latency"]["1"]
    assert lat["float"]["runs"] >= 3 and lat["ours"]["median_ms"] > 0
    check = data["memory_check"]
    assert [r["samples"] for r in check["runs"]] == [2, 6] and all(r["ok"] for r in check["runs"])


def test_report_is_written(smoke):
    md = (smoke["docs"] / "benchmarks.md").read_text()
    assert "## Summary" in md and f"## {NAME}" in md and "rewriter (ours)" in md
    assert "Issue 3's bars" in md and "Against the best peer" in md and "Issue 5: DefaultQuantization" in md
    if importlib.util.find_spec("matplotlib"):
        assert (smoke["docs"] / "benchmarks.png").stat().st_size > 1000
    else:
        assert "chart not drawn" in md
    # The report regenerates from the JSON alone.
    assert report.main(["--results", str(smoke["results"]), "--docs", str(smoke["docs"])]) == 0


def test_a_failing_tool_is_a_failed_cell_not_a_crash(tmp_path, smoke):
    data = json.loads(json.dumps(smoke["data"]))
    data["tools"]["ort"] = {"ok": False, "error": "ValueError: boom", "traceback": "Traceback ...\nValueError: boom",
                            "command": "python tools/bench/peers.py ort ...", "config": {}, "peak_rss_mb": 50.0,
                            "process_wall_s": 1.0}
    (tmp_path / f"{NAME}.json").write_text(json.dumps(data))
    md_path, _ = report.write(tmp_path, tmp_path / "docs")
    md = md_path.read_text()
    assert "**FAILED**: ValueError: boom" in md
    assert "reproduce: `python tools/bench/peers.py ort ...`" in md


def test_child_process_failure_and_timeout_are_reported(tmp_path):
    failed = measure.run_child([sys.executable, "-c", "raise SystemExit(3)"], timeout_s=30,
                               log_path=tmp_path / "a.log")
    assert failed["returncode"] == 3 and not failed["timed_out"] and failed["peak_rss_mb"] > 1
    slow = measure.run_child([sys.executable, "-c", "import time; time.sleep(30)"], timeout_s=0.5)
    assert slow["timed_out"] and slow["wall_s"] < 10


def test_floor_peak_rss_is_the_childs_own(tmp_path: Path) -> None:
    """The floor's process reports its own high-water mark, and run.py prefers it: the parent's view of a
    child (ru_maxrss) starts from the parent's own peak, so a parent grown large would hide the floor's."""
    corpus = _corpus(tmp_path / "corpus", n_calib=2, n_eval=1)
    samples = tmp_path / "samples.txt"
    samples.write_text("\n".join(str(p) for p in sorted((corpus / NAME / "calib").glob("*.npz"))))
    out = tmp_path / "floor.json"
    ballast = bytearray(b"\x01") * (600 << 20)  # 600 MB, every page touched
    try:
        child = measure.run_child([sys.executable, str(BENCH / "measure.py"), "floor",
                                   str(corpus / NAME / "model.onnx"), str(samples), str(out)], timeout_s=120)
    finally:
        del ballast
    assert child["returncode"] == 0, child["log_tail"]
    floor = json.loads(out.read_text())
    assert floor["samples"] == 2
    # The parent's view carries the 600 MB; the floor of an 11 KB model needs about a hundred (onnxruntime).
    assert child["peak_rss_mb"] > 600 and 10 < floor["vm_hwm_mb"] < 400
