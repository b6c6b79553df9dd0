"""The real-model benchmark's logic, without its packages or data: metrics against hand-computed values, the
stateful stream runner, the "Real models" report from a fabricated result, and the runner's tool choice.

These run in the project venv (numpy only for the metrics); the builders' rendering needs the bench venv's
Pillow and is skipped where Pillow is absent.
"""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "tools" / "bench"
# Appended, not put first: tools/bench/models (the builders) must not shadow the tests' own models.py.
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))

import metrics  # noqa: E402
import report  # noqa: E402
import run  # noqa: E402


# ----------------------------------------------------------------------------- text metrics

def test_edit_distance_of_known_pairs():
    assert metrics.edit_distance(list("kitten"), list("sitting")) == 3
    assert metrics.edit_distance([], [1, 2]) == 2
    assert metrics.edit_distance([1, 2, 3], [1, 2, 3]) == 0


def test_ctc_greedy_decode_merges_repeats_and_drops_blanks():
    best = [0, 1, 1, 0, 1, 2, 2, 0]
    scores = np.full((len(best), 3), -1.0)
    scores[np.arange(len(best)), best] = 1.0
    assert metrics.ctc_greedy_decode(scores) == [1, 1, 2]


def test_text_scores_by_hand():
    res = metrics.text_scores([[1, 2, 3], [4]], [[1, 2, 3], [4, 5]])
    assert res["char_accuracy"] == pytest.approx(1 - 1 / 5)
    assert res["exact_match"] == 0.5
    # More edits than characters floors at 0, not below.
    assert metrics.text_scores([[1, 1, 1, 1]], [[2]])["char_accuracy"] == 0.0


def test_ctc_text_entry_with_a_time_major_output(tmp_path):
    (tmp_path / "eval_labels.json").write_text(json.dumps([[1, 2], [2]]))
    classes = 3
    rows = []
    for best in ([1, 0, 2, 2], [2, 2, 0, 0]):
        m = np.zeros((4, classes))
        m[np.arange(4), best] = 5.0
        rows.append(m.ravel())
    outputs = np.stack(rows)
    ref = outputs.copy()
    ref[1] = 0
    ref[1, 1 * classes + 1] = 5.0  # the float model read the second sample as [1]
    np.save(tmp_path / "eval_reference.npy", ref)
    meta = {"metric": {"kind": "ctc_text", "classes": classes, "blank": 0}}
    res = metrics.scores_from_outputs(meta, outputs, tmp_path)
    assert res["char_accuracy"] == 1.0 and res["exact_match"] == 1.0
    assert res["text_agreement"] == 0.5
    noise = float(((outputs - ref) ** 2).sum())
    assert res["sqnr_db"] == pytest.approx(10 * math.log10(float((ref ** 2).sum()) / noise))
    # batch_first moves a (time, batch, classes) output to (batch, time, classes).
    t_major = np.zeros((4, 1, classes))
    assert metrics.batch_first(t_major, {"batch_axis": 1}).shape == (1, 4, classes)
    assert metrics.batch_first(t_major, {}).shape == (4, 1, classes)


# ----------------------------------------------------------------------------- detection metrics

def test_box_iou_by_hand():
    iou = metrics.box_iou(np.array([[0.0, 0, 2, 2]]), np.array([[1.0, 1, 3, 3], [5.0, 5, 6, 6]]))
    assert iou[0, 0] == pytest.approx(1 / 7) and iou[0, 1] == 0.0


def test_yolox_decode_and_nms_by_hand():
    # Input 32 at strides 8, 16, 32: 16 + 4 + 1 rows; row 9 is cell (x=1, y=2) of stride 8.
    rows = np.zeros((21, 6))
    rows[9] = [0.5, 0.5, math.log(2), math.log(4), 0.9, 0.8]  # centre (12, 20), size (16, 32), score 0.72
    rows[10] = [-0.4, 0.5, math.log(2), math.log(4), 0.8, 0.8]  # centre (12.8, 20): IoU 0.905, suppressed
    rows[0] = [0.5, 0.5, 0.0, 0.0, 0.3, 0.2]  # score 0.06, under the threshold
    boxes = metrics.yolox_boxes(rows, 32, [8, 16, 32], score_threshold=0.1, nms_iou=0.45)
    np.testing.assert_allclose(boxes, [[4.0, 4.0, 20.0, 36.0]])


def test_match_count_is_one_to_one():
    truth = np.array([[0.0, 0, 10, 10], [20.0, 20, 30, 30]])
    pred = np.array([[0.0, 0, 10, 10], [1.0, 1, 10, 10], [50.0, 50, 60, 60]])
    assert metrics.match_count(pred, truth) == 1
    assert metrics._det_f1([pred], [truth]) == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))


def test_text_region_counts_by_hand():
    prob = np.zeros((10, 10))
    prob[3:5, 3:7] = 0.9  # the inner part of the box [2, 2, 8, 6] (a quarter of its height, 1, off each side)
    prob[9, 8:10] = 0.9  # two positive pixels outside every box
    counts = metrics.text_region_counts(prob, [[2, 2, 8, 6], [0, 7, 4, 9]], 0.3)
    assert counts == {"found": 1.0, "boxes": 2.0, "pos_inside": 8.0, "pos": 10.0}


# ----------------------------------------------------------------------------- streaming (VAD)

def test_stream_outputs_feeds_the_state_back():
    seen = []

    def run_fn(feeds):
        seen.append(feeds["state"].copy())
        state = feeds["state"] + feeds["input"].sum()
        return [state.reshape(1, 1) * 0 + float(state.sum()), state]

    inputs = {"input": np.array([[1.0, 1.0], [2.0, 0.0], [0.5, 0.5]]), "state": np.zeros(1), "sr": np.array(16000)}
    out = metrics.stream_outputs(inputs, run_fn, {"chunks": "input", "state_input": "state", "state_output": 1}, 0)
    np.testing.assert_allclose(out, [[2.0, 4.0, 5.0]])
    np.testing.assert_allclose(np.concatenate(seen), [0.0, 2.0, 4.0])


def test_vad_scores_by_hand(tmp_path):
    np.save(tmp_path / "eval_labels.npy", np.array([[True, True, False, False]]))
    np.save(tmp_path / "eval_reference.npy", np.array([[0.9, 0.6, 0.2, 0.7]]))
    outputs = np.array([[0.9, 0.4, 0.1, 0.7]])
    res = metrics.scores_from_outputs({"metric": {"kind": "vad_frames", "threshold": 0.5}}, outputs, tmp_path)
    assert res["frame_accuracy"] == 0.5  # frames 0 and 2 right, 1 and 3 wrong
    assert res["agreement_with_float"] == 0.75
    assert res["sqnr_db"] == pytest.approx(10 * math.log10((0.81 + 0.36 + 0.04 + 0.49) / (0.04 + 0.01)))


# ----------------------------------------------------------------------------- report

def _fake_real_model() -> dict:
    base = {"ok": True, "quantize_s": 3.0, "peak_rss_mb": 200.0, "process_wall_s": 4.0, "config": {}}
    return {
        "name": "ocr_rec", "real": True, "metric": "char_accuracy", "samples": 100,
        "floor": {"floor_s": 1.5}, "float": {"scores": {"char_accuracy": 0.9}},
        "rewriter": {"path": "/work/main", "commit": "a6d68f3acbf74cfffc8811e4a2d24f3417dc86c8",
                     "local_changes": False},
        "tools": {
            "ours_default": {**base, "eval_error": "Fail: QLinearConv | result zero point must be a scalar"},
            "ours_ort": {**base, "quantize_s": 5.5, "scores": {"char_accuracy": 0.8955, "sqnr_db": 21.0}},
            "ort": {**base, "scores": {"char_accuracy": 0.88, "sqnr_db": 18.0}},
            "nncf": {"ok": False, "error": "RuntimeError: boom", "config": {}},
        },
    }


def test_real_figures_apply_the_bar():
    model = _fake_real_model()
    ours = report.real_figures(model, "ours_ort")
    assert ours["runs_in_ort"] and ours["change_pct"] == pytest.approx(-0.5)
    assert ours["time_bar_s"] == 5.0 and ours["time_ok"] is False and ours["bar_ok"] is False  # 5.5 s > 2*1.5+2
    assert ours["x_floor"] == pytest.approx(5.5 / 1.5)
    peer = report.real_figures(model, "ort")
    assert peer["change_pct"] == pytest.approx((0.88 - 0.9) / 0.9 * 100) and peer["bar_ok"] is False
    refused = report.real_figures(model, "ours_default")
    assert refused["runs_in_ort"] is False and refused["bar_ok"] is False
    model["tools"]["ours_ort"]["quantize_s"] = 4.9
    assert report.real_figures(model, "ours_ort")["bar_ok"] is True
    # A model left float passes, and the table says why.
    model["tools"]["ours_ort"].update({"quantize_linear": 0, "dequantize_linear": 0})
    assert "pass (nothing quantized)" in "\n".join(report.real_section([model]))


def test_real_section_records_failures_in_their_cells():
    text = "\n".join(report.real_section([_fake_real_model()]))
    assert "## Real models" in text and "`/work/main` at commit `a6d68f3acbf7`" in text
    assert "**no**: Fail: QLinearConv / result zero point" in text  # the pipe cannot break the table
    assert "**FAILED**: RuntimeError: boom" in text
    assert "| ocr_rec | char_accuracy | rewriter, target ORT | yes | 0.9000 → 0.8955 | -0.50 | **fail** |" in text
    plain = report.real_summary_text({"models": [_fake_real_model()]})
    assert "NO" in plain and "FAIL" in plain
    # Real models stay out of issue 3's table (its speed-up bar needs latency runs), and others out of this one.
    assert not any("ocr_rec" in line for line in report._issue3_section([_fake_real_model()]))
    # Models that are not real stay out of the section.
    assert report.real_section([{"name": "cnn_digits", "tools": {}}]) == []


# ----------------------------------------------------------------------------- runner

def test_tool_families_expand_and_single_tools_run_alone():
    assert run.expand_tools(["ours_default", "ort"]) == ["ours_default", "ort"]
    assert run.expand_tools(["ours"])[:2] == ["ours", "ours_default"]
    assert run.expand_tools(["nncf", "nncf_default"]) == ["nncf", "nncf_default"]


def test_rewriter_checkout_goes_first_on_the_tools_path(tmp_path):
    args = run.parse_args(["--rewriter", str(tmp_path), "--no-latency"])
    settings = run.Settings(args)
    env = settings.tool_env()
    assert env["PYTHONPATH"].split(":")[0] == str(tmp_path.resolve())
    assert settings.as_dict()["latency"] is False
    with pytest.raises(SystemExit, match="no rewriter/__init__.py"):
        run.main(["--rewriter", str(tmp_path), "--real", "--cache", str(tmp_path / "none")])


@pytest.mark.skipif(importlib.util.find_spec("PIL") is None, reason="Pillow is a bench-venv package")
def test_line_input_pads_on_the_right_like_rapidocr():
    spec = importlib.util.spec_from_file_location("bench_ocr_builder", BENCH / "models" / "ocr.py")
    assert spec is not None and spec.loader is not None
    ocr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ocr)
    arr = np.full((24, 48, 3), 255, np.uint8)  # aspect 2: 96 of 192 columns at height 48
    x, width = ocr.line_input(arr, 48, 192)
    assert x.shape == (1, 3, 48, 192) and width == 96
    assert np.allclose(x[..., :96], 1.0) and np.all(x[..., 96:] == 0.0)
