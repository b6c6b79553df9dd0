"""docs/report-schema.md against real quantize reports: every field a report holds is documented, and every
field documented as `always` is in every report (under each parent that holds it)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import control_flow_models
import fake_timing
import models
import rewriter
from rewriter.report.plan_report import plan_dict
from rewriter.report.quantize_report import REPORT_SCHEMA

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "report-schema.md"
_ROW = re.compile(r"^\| `([^`]+)` \|[^|]+\|([^|]+)\|")
MAP_PARENTS = {"timings_s"}  # objects whose keys are names, written `<stage>` in the table


def documented() -> dict[str, str]:
    """Field pattern -> its *when* column."""
    rows = {}
    for line in DOC.read_text().splitlines():
        match = _ROW.match(line)
        if match:
            rows[match.group(1)] = match.group(2).strip()
    return rows


def patterns(value: Any, prefix: str = "") -> dict[str, list[Any]]:
    """Every object in ``value`` by the pattern of its path (``[]`` for list items, ``<stage>`` for names)."""
    found: dict[str, list[Any]] = {}

    def walk(item: Any, path: str) -> None:
        if isinstance(item, dict):
            found.setdefault(path, []).append(item)
            for key, child in item.items():
                name = "<stage>" if path in MAP_PARENTS else key
                walk(child, f"{path}.{name}" if path else name)
        elif isinstance(item, list):
            for child in item:
                walk(child, f"{path}[]")

    walk(value, prefix)
    return found


def field_paths(value: Any) -> set[str]:
    paths = set()
    for parent, objects in patterns(value).items():
        for obj in objects:
            paths |= {f"{parent}.{'<stage>' if parent in MAP_PARENTS else k}" if parent else k for k in obj}
    return paths


def _parent(path: str) -> str:
    head = path.rsplit(".", 1)[0] if "." in path else ""
    return head


def _smoothing_model() -> tuple[Any, list[dict[str, np.ndarray]]]:
    """Two MatMuls: one input has an outlier channel (smoothed), the other none (skipped)."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array((rng.standard_normal((16, 12)) * 0.3).astype(np.float32), name)
               for name in ("w", "v")]
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"),
                               helper.make_node("MatMul", ["z", "v"], ["u"], name="plain")], "smooth",
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 16]) for n in ("x", "z")],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 12]) for n in ("y", "u")],
                              weights)
    samples = []
    for _ in range(16):
        x = rng.standard_normal((1, 16)).astype(np.float32)
        x[:, 3] *= 40.0
        samples.append({"x": x, "z": rng.standard_normal((1, 16)).astype(np.float32)})
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), samples


@pytest.fixture(scope="module")
def results() -> list[Any]:
    model = models.depthwise_after_conv()
    smoothing_model, smoothing_samples = _smoothing_model()
    return [
        # Every pass; a threshold no output meets, so that the guard runs and reports (the speed guard off: it
        # runs first, and may return this tiny model to float whole, leaving the fidelity guard nothing to do).
        rewriter.quantize(model, data=models.random_inputs(model, 8), subset_size=4, smoothing=0.5,
                          channel_alignment=True, bias_correction="fast", layerwise_tuning=True,
                          guard_threshold=999.0, guard_budget=2, speed_guard=False),
        rewriter.quantize(smoothing_model, data=smoothing_samples, smoothing=0.8, bias_correction="full",
                          self_check=False),
        # An If the samples all send one way (control_flow); below the threshold with the guard off.
        rewriter.quantize(control_flow_models.if_on_sample_rate(), data=control_flow_models.rate_samples(6),
                          guard=False, guard_threshold=999.0),
        # FakeQuantize output: no scales stored; the self-check is skipped without OpenVINO.
        rewriter.quantize(models.tiny_cnn(), data=models.random_inputs(models.tiny_cnn(), 4),
                          output_format="fakequantize"),
        _speed_guard_reverting(),
    ]


def _speed_guard_reverting() -> Any:
    """A run whose speed guard measures and reverts a group: made-up timings (the depthwise group slower
    quantized) and a clock that never moves, so the section is the same on any machine and load."""
    with pytest.MonkeyPatch.context() as mp:
        fake_timing.install(mp, fake_timing.priced({"dw_conv": 300.0, "pw_conv": 50.0}))
        fake_timing.steady_clock(mp)
        model = models.depthwise_conv()
        result = rewriter.quantize(model, data=models.random_inputs(model, 12, seed=1), subset_size=8,
                                   check_samples=4, speed_cache=False)
    assert result.report["speed"]["reverts"] and result.report["speed"]["measurements"]
    return result


def test_the_table_parses_and_names_the_schema() -> None:
    rows = documented()
    assert len(rows) > 100 and "schema" in rows
    assert f"`\"{REPORT_SCHEMA}\"`" in DOC.read_text()


def test_every_field_of_a_real_report_is_documented(results: list[Any]) -> None:
    rows = documented()
    for result in results:
        plan_fields = field_paths(plan_dict(result.plan))
        undocumented = field_paths(result.report) - plan_fields - set(rows)
        assert not undocumented, sorted(undocumented)


def test_every_field_documented_as_always_is_there(results: list[Any]) -> None:
    always = [path for path, when in documented().items() if when == "always"]
    seen_parents = set()
    for result in results:
        objects = patterns(result.report)
        for path in always:
            parent, key = _parent(path), path.rsplit(".", 1)[-1]
            for obj in objects.get(parent, []):
                seen_parents.add(parent)
                if key == "<stage>":
                    continue
                assert key in obj, f"{path} is documented as always there, missing in {sorted(obj)}"
    # The reports above reach most of the table: a parent never met would leave its rows unchecked.
    # Channel alignment skips a pair only when its statistics are not finite, which no small model gives.
    unchecked = {_parent(p) for p in always} - seen_parents
    assert unchecked <= {"passes.channel_alignment.skipped[]"}, unchecked


def test_the_stage_names_are_the_documented_ones(results: list[Any]) -> None:
    text = documented()["timings_s.<stage>"]
    line = next(line for line in DOC.read_text().splitlines() if line.startswith("| `timings_s.<stage>`"))
    named = set(re.findall(r"`(\w+)`", line)) - {"timings_s"}
    assert text == "always" and named
    for result in results:
        assert set(result.report["timings_s"]) <= named, set(result.report["timings_s"]) - named


def test_the_report_is_the_expanded_plan_plus_the_documented_fields(results: list[Any]) -> None:
    for result in results:
        report, plan = result.report, plan_dict(result.plan)
        assert report["schema"] == REPORT_SCHEMA and plan["schema"] == "rewriter.plan/1"
        assert {k: v for k, v in report.items() if k in plan and k not in ("schema", "fakequantize")} == \
            {k: v for k, v in plan.items() if k not in ("schema", "fakequantize")}
