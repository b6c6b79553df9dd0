"""tools/bench/openvino_formats.py's results in docs/benchmarks.md: read from their own file, rendered with the
baselines named, from fabricated figures."""
from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "tools" / "bench"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))

import report  # noqa: E402


def _results() -> dict:
    labels = [f"{m} {s}" for m in ("float", "qdq", "fakequantize") for s in ("f32 hint", "default")]
    median = {"float": 100.0, "qdq": 50.0, "fakequantize": 40.0}
    return {
        "command": "python tools/bench/openvino_formats.py --out /tmp/x", "date": "2026-12-05 08:40 UTC",
        "entry": "resnet50", "target": "CPU", "subset_size": 300, "threads": 1, "runs": 40, "rounds": 4, "warmup": 5,
        "openvino": "2026.4.1", "cpu_count": 2, "loadavg_before": [3.0, 3.0, 3.0], "loadavg_after": [4.0, 3.5, 3.0],
        "files": {"float": {"bytes": 102_500_000},
                  "qdq": {"bytes": 26_000_000, "quantize_s": 85.0, "self_check": "output SQNR 14.1 dB"},
                  "fakequantize": {"bytes": 25_800_000, "quantize_s": 120.0, "self_check": "output SQNR 14.2 dB"}},
        "precision": {label: "f32" for label in labels},
        "integer_layers": {label: "0/54" if label.startswith("float") else "53/54" for label in labels},
        "latency": {label: {"median_ms": median[label.split()[0]], "p10_ms": 1.0, "p90_ms": 2.0,
                            "cpu_ms_per_run": 9.0 if label.startswith("float") else 3.0, "runs": 40}
                    for label in labels},
        "top1_agreement_openvino_f32": {"float": 1.0, "qdq": 0.75, "fakequantize": 0.78},
    }


def test_the_section_names_the_baseline_and_compares_sizes() -> None:
    text = "\n".join(report.openvino_section(_results()))
    assert "## OpenVINO: the QDQ and the FakeQuantize output" in text
    assert "| qdq | 26.0 | 0.75 | f32 hint → f32 | 53/54 | 50.0 (1.0-2.0) | 2.00× | 3.0 | 3.00× |" in text
    assert "| fakequantize | 25.8 | 0.78 | default → f32 | 53/54 | 40.0 (1.0-2.0) | 2.50× | 3.0 | 3.00× |" in text
    assert "FakeQuantize file / QDQ file: 0.992×" in text
    assert "load average 3.0 before and 4.0 after" in text
    assert "Both settings resolved to f32" in text  # this machine has no bf16: one baseline, said so


def test_the_report_takes_the_results_file_when_there_is_one(tmp_path: Path) -> None:
    (tmp_path / "cnn_digits.json").write_text(json.dumps({"name": "cnn_digits", "tools": {}}))
    path = tmp_path / "docs" / "openvino.json"
    path.parent.mkdir()
    path.write_text(json.dumps(_results()))
    data = report.load(tmp_path, openvino=path)
    assert [m["name"] for m in data["models"]] == ["cnn_digits"]
    assert "## OpenVINO: the QDQ and the FakeQuantize output" in report.markdown(data)
    assert "## OpenVINO" not in report.markdown(report.load(tmp_path, openvino=tmp_path / "absent.json"))
